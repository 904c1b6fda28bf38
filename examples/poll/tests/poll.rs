//! The poll example over real sockets, as an outside tool sees it: a real TCP
//! server per test, raw WebSocket JSON frames via `tokio-tungstenite`,
//! payloads read as `serde_json::Value`. Every wait is bounded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The bound on every single wait.
const WAIT: Duration = Duration::from_secs(5);
/// The options the example serves, in order.
const OPTIONS: [&str; 4] = ["red", "green", "blue", "yellow"];

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Serves `poll::app()` on an ephemeral port and returns its address.
async fn spawn_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        liweb::serve(listener, poll::app()).await.expect("serve");
    });
    addr
}

/// One connected client and what its first events said.
struct Client {
    ws: Ws,
    id: String,
    /// The `presence` records of the `presence:snapshot` it got on joining.
    presence: Vec<Value>,
    /// The `state` of the `state:snapshot` it got on joining.
    snapshot: Value,
}

/// Connects, and reads `welcome`, `presence:snapshot` and `state:snapshot`,
/// in that order.
async fn join(addr: SocketAddr) -> Client {
    let (mut ws, response) = timeout(
        WAIT,
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws")),
    )
    .await
    .expect("timed out connecting")
    .expect("websocket handshake");
    assert_eq!(response.status().as_u16(), 101, "upgrade status");

    let welcome = expect_event(&mut ws, "welcome").await;
    let id = welcome["id"]
        .as_str()
        .unwrap_or_else(|| panic!("welcome id is not a string: {welcome}"))
        .to_owned();
    assert_eq!(welcome["options"], json!(OPTIONS), "welcome options");
    assert!(
        welcome["question"].is_string(),
        "welcome question: {welcome}"
    );

    let presence = expect_event(&mut ws, "presence:snapshot").await;
    assert_eq!(presence["channel"], "poll", "presence snapshot channel");
    assert_eq!(presence["room"], "main", "presence snapshot room");
    let presence = presence["presence"]
        .as_array()
        .unwrap_or_else(|| panic!("presence is not an array: {presence}"))
        .clone();
    let snapshot = expect_event(&mut ws, "state:snapshot").await;
    assert_eq!(snapshot["channel"], "poll", "snapshot channel");
    assert_eq!(snapshot["room"], "main", "snapshot room");
    Client {
        ws,
        id,
        presence,
        snapshot: snapshot["state"].clone(),
    }
}

/// The records of a presence snapshot that are online.
fn online(presence: &[Value]) -> Vec<&Value> {
    presence.iter().filter(|p| p["online"] == true).collect()
}

/// The record of `key` in a presence snapshot.
fn record<'a>(presence: &'a [Value], key: &str) -> &'a Value {
    presence
        .iter()
        .find(|p| p["key"] == key)
        .unwrap_or_else(|| panic!("no record of {key} in {presence:?}"))
}

/// The next event frame, as `(event, payload)`; skips ping/pong, fails on
/// anything else that is not a JSON text frame.
async fn next_event(ws: &mut Ws) -> (String, Value) {
    loop {
        let frame = timeout(WAIT, ws.next())
            .await
            .expect("timed out waiting for a frame")
            .expect("socket ended while waiting for a frame")
            .expect("websocket error");
        match frame {
            Message::Text(text) => {
                let value: Value = serde_json::from_str(text.as_str())
                    .unwrap_or_else(|err| panic!("frame is not JSON ({err}): {text}"));
                let event = value["event"]
                    .as_str()
                    .unwrap_or_else(|| panic!("frame has no string `event`: {value}"))
                    .to_owned();
                return (event, value["payload"].clone());
            }
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// The next event, which must be `name`; returns its payload.
async fn expect_event(ws: &mut Ws, name: &str) -> Value {
    let (event, payload) = next_event(ws).await;
    assert_eq!(event, name, "unexpected event, payload {payload}");
    payload
}

/// Reads events until one named `name` whose payload `accept` takes arrives
/// (within `WAIT` in all); returns it and the events skipped before it.
async fn wait_for(
    ws: &mut Ws,
    name: &str,
    accept: impl Fn(&Value) -> bool,
) -> (Value, Vec<(String, Value)>) {
    let deadline = Instant::now() + WAIT;
    let mut skipped = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok((event, payload)) = timeout(left, next_event(ws)).await else {
            panic!("no `{name}` event accepted within {WAIT:?}; skipped {skipped:?}");
        };
        if event == name && accept(&payload) {
            return (payload, skipped);
        }
        skipped.push((event, payload));
    }
}

/// Sends `{"event": event, "payload": payload}` as a text frame.
async fn send_event(ws: &mut Ws, event: &str, payload: Value) {
    send_text(
        ws,
        json!({ "event": event, "payload": payload }).to_string(),
    )
    .await;
}

async fn send_text(ws: &mut Ws, text: String) {
    timeout(WAIT, ws.send(Message::text(text)))
        .await
        .expect("timed out sending")
        .expect("send");
}

/// Votes and reads the voter's events up to its `voted` confirmation, which
/// must name `option`; returns the `state:patch` payloads before it.
async fn vote(ws: &mut Ws, option: &str) -> Vec<Value> {
    send_event(ws, "vote", json!({ "option": option })).await;
    let mut patches = Vec::new();
    loop {
        let (event, payload) = next_event(ws).await;
        match event.as_str() {
            "state:patch" => patches.push(payload),
            "voted" => {
                assert_eq!(payload, json!({ "option": option }), "voted");
                return patches;
            }
            // Others may come and go while we vote.
            "presence:join" | "presence:leave" | "presence:update" => {}
            other => panic!("unexpected `{other}` while voting: {payload}"),
        }
    }
}

/// A `state:patch` payload for tally `option` = `n`.
fn tally(option: &str, n: u64) -> Value {
    json!({ "channel": "poll", "room": "main", "op": "set", "key": format!("votes:{option}"), "value": n })
}

/// Reads `state:patch` events (skipping presence events) until tally
/// `option` is `n`.
async fn wait_tally(ws: &mut Ws, option: &str, n: u64) {
    let want = tally(option, n);
    let (_, skipped) = wait_for(ws, "state:patch", |patch| *patch == want).await;
    for (event, payload) in skipped {
        assert!(
            event == "state:patch" || event.starts_with("presence:"),
            "unexpected `{event}` while waiting for a tally: {payload}"
        );
    }
}

/// Every tally of a state snapshot, 0 for an option without a key; checks
/// it holds nothing but tallies of the options.
fn tallies(state: &Value) -> BTreeMap<String, u64> {
    let map = state
        .as_object()
        .unwrap_or_else(|| panic!("state is not an object: {state}"));
    let mut tallies = counts(&[]);
    for (key, value) in map {
        let option = key
            .strip_prefix("votes:")
            .filter(|option| OPTIONS.contains(option))
            .unwrap_or_else(|| panic!("unexpected state key `{key}`"));
        let n = value
            .as_u64()
            .unwrap_or_else(|| panic!("tally `{key}` is not a count: {value}"));
        tallies.insert(option.to_owned(), n);
    }
    tallies
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    OPTIONS
        .iter()
        .map(|&option| {
            let n = pairs
                .iter()
                .find(|(name, _)| *name == option)
                .map_or(0, |(_, n)| *n);
            (option.to_owned(), n)
        })
        .collect()
}

/// The tallies a new client sees in its snapshot; it disconnects again.
async fn observed(addr: SocketAddr) -> BTreeMap<String, u64> {
    let client = join(addr).await;
    let seen = tallies(&client.snapshot);
    close(client.ws).await;
    seen
}

/// Sends the close frame and waits for the server to end the connection.
async fn close(mut ws: Ws) {
    timeout(WAIT, ws.close(None))
        .await
        .expect("timed out closing")
        .expect("close");
    timeout(WAIT, async { while let Some(Ok(_)) = ws.next().await {} })
        .await
        .expect("timed out waiting for the server to finish closing");
}

/// `GET path` over plain HTTP/1.1; returns the status line, headers and body.
async fn http_get(addr: SocketAddr, path: &str) -> String {
    timeout(WAIT, async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.expect("read");
        String::from_utf8(response).expect("utf-8 response")
    })
    .await
    .expect("timed out on HTTP")
}

#[tokio::test]
async fn page_and_client_script_are_served() {
    let addr = spawn_server().await;
    let page = http_get(addr, "/").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.contains(r#"from "/liweb.js""#),
        "the page imports liweb.js"
    );
    assert!(page.contains(r#"id="options""#) && page.contains(r#"id="people""#));
    let script = http_get(addr, "/liweb.js").await;
    assert!(script.starts_with("HTTP/1.1 200"), "{script}");
    assert!(script.contains("export class LiwebClient"));
}

#[tokio::test]
async fn joiner_gets_a_snapshot_of_the_people_and_the_tallies() {
    let addr = spawn_server().await;
    let mut a = join(addr).await;
    assert_eq!(a.snapshot, json!({}), "no tally before the first vote");
    assert_eq!(tallies(&a.snapshot), counts(&[]), "every tally starts at 0");
    assert_eq!(a.presence.len(), 1, "only A is here: {:?}", a.presence);
    let me = &a.presence[0];
    assert_eq!(me["key"], a.id.as_str());
    assert_eq!(me["online"], true);
    assert_eq!(me["activity"], Value::Null, "no name yet");
    assert!(me["joined_at"].is_u64() && me["last_seen"].is_u64(), "{me}");

    vote(&mut a.ws, "blue").await;
    send_event(&mut a.ws, "name", json!({ "name": "  Ada  " })).await;
    assert_eq!(
        expect_event(&mut a.ws, "named").await,
        json!({ "name": "Ada" })
    );

    let b = join(addr).await;
    assert_eq!(tallies(&b.snapshot), counts(&[("blue", 1)]));
    assert_eq!(b.presence.len(), 2, "A and B are here: {:?}", b.presence);
    assert_eq!(online(&b.presence).len(), 2, "{:?}", b.presence);
    assert_eq!(
        record(&b.presence, &a.id)["activity"],
        "Ada",
        "names travel in the presence snapshot"
    );
    assert_eq!(record(&b.presence, &b.id)["activity"], Value::Null);

    // A hears about B.
    let join = expect_event(&mut a.ws, "presence:join").await;
    assert_eq!(join["channel"], "poll");
    assert_eq!(join["room"], "main");
    assert_eq!(join["presence"]["key"], b.id.as_str());
    assert_eq!(join["presence"]["online"], true);
}

#[tokio::test]
async fn a_vote_is_patched_to_every_member() {
    let addr = spawn_server().await;
    let mut a = join(addr).await;
    let mut b = join(addr).await;
    let join_b = expect_event(&mut a.ws, "presence:join").await;
    assert_eq!(join_b["presence"]["key"], b.id.as_str());

    let patches = vote(&mut a.ws, "red").await;
    assert_eq!(patches, vec![tally("red", 1)], "the voter's patches");
    assert_eq!(
        expect_event(&mut b.ws, "state:patch").await,
        tally("red", 1)
    );

    let patches = vote(&mut b.ws, "red").await;
    assert_eq!(patches, vec![tally("red", 2)]);
    assert_eq!(
        expect_event(&mut a.ws, "state:patch").await,
        tally("red", 2)
    );
    assert_eq!(observed(addr).await, counts(&[("red", 2)]));
}

#[tokio::test]
async fn changing_a_vote_moves_it() {
    let addr = spawn_server().await;
    let mut a = join(addr).await;
    let mut b = join(addr).await;
    expect_event(&mut a.ws, "presence:join").await;

    vote(&mut a.ws, "red").await;
    expect_event(&mut b.ws, "state:patch").await;

    // Moving: the new option goes up, the old one down; B sees both.
    let patches = vote(&mut a.ws, "green").await;
    assert_eq!(patches, vec![tally("green", 1), tally("red", 0)]);
    assert_eq!(
        expect_event(&mut b.ws, "state:patch").await,
        tally("green", 1)
    );
    assert_eq!(
        expect_event(&mut b.ws, "state:patch").await,
        tally("red", 0)
    );

    // The same option again changes nothing: no patch before `voted`.
    let patches = vote(&mut a.ws, "green").await;
    assert!(patches.is_empty(), "voting twice patched {patches:?}");
    assert_eq!(observed(addr).await, counts(&[("green", 1)]));
}

#[tokio::test]
async fn a_disconnect_takes_the_vote_back() {
    let addr = spawn_server().await;
    let mut a = join(addr).await;
    let mut b = join(addr).await;
    expect_event(&mut a.ws, "presence:join").await;

    vote(&mut a.ws, "yellow").await;
    vote(&mut b.ws, "yellow").await;
    assert_eq!(observed(addr).await, counts(&[("yellow", 2)]));
    // The observer came and went.
    let (_, _) = wait_for(&mut b.ws, "presence:leave", |_| true).await;

    let a_id = a.id.clone();
    close(a.ws).await;
    // B hears that A left, and A's vote is gone.
    let (leave, _) = wait_for(&mut b.ws, "presence:leave", |p| {
        p["presence"]["key"] == a_id.as_str()
    })
    .await;
    assert_eq!(leave["presence"]["online"], false);
    wait_tally(&mut b.ws, "yellow", 1).await;
    assert_eq!(observed(addr).await, counts(&[("yellow", 1)]));

    // A client that never voted takes nothing back. Its presence snapshot
    // still lists A, offline, among the recent leavers.
    let c = join(addr).await;
    let a_record = record(&c.presence, &a_id);
    assert_eq!(a_record["online"], false, "{a_record}");
    assert_eq!(a_record["connections"], 0, "{a_record}");
    let here: Vec<&str> = online(&c.presence)
        .iter()
        .filter_map(|p| p["key"].as_str())
        .collect();
    assert_eq!(here.len(), 2, "B and C are online: {:?}", c.presence);
    assert!(here.contains(&b.id.as_str()) && here.contains(&c.id.as_str()));
    close(c.ws).await;
    assert_eq!(observed(addr).await, counts(&[("yellow", 1)]));
}

/// Runs `step` for every client at once (each waits on a barrier before
/// sending) and gives the clients back in order.
async fn all_at_once<F, Fut>(clients: Vec<Client>, step: F) -> Vec<Client>
where
    F: Fn(usize, Client) -> Fut,
    Fut: std::future::Future<Output = Client> + Send + 'static,
{
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(clients.len()));
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            let barrier = std::sync::Arc::clone(&barrier);
            let step = step(i, client);
            tokio::spawn(async move {
                barrier.wait().await;
                step.await
            })
        })
        .collect();
    let mut clients = Vec::new();
    for task in tasks {
        clients.push(timeout(WAIT * 4, task).await.expect("client hung").unwrap());
    }
    clients
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_votes_from_20_clients_tally_exactly() {
    let addr = spawn_server().await;
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(join(addr).await);
    }

    // All 20 vote for red at once: 20 increments of one key race.
    let clients = all_at_once(clients, |_, mut client| async move {
        vote(&mut client.ws, "red").await;
        client
    })
    .await;
    assert_eq!(observed(addr).await, counts(&[("red", 20)]));

    // All move at once (15 decrements of red race 15 increments elsewhere),
    // then the odd ones move again.
    let mut clients = all_at_once(clients, |i, mut client| async move {
        vote(&mut client.ws, OPTIONS[i % 4]).await;
        if i % 2 == 1 {
            vote(&mut client.ws, OPTIONS[(i + 1) % 4]).await;
        }
        client
    })
    .await;
    // i % 4: 0 → red (5); 1 → green → blue (5); 2 → blue (5); 3 → yellow → red (5).
    assert_eq!(observed(addr).await, counts(&[("red", 10), ("blue", 10)]));

    // Half of them leave at once; their votes go with them.
    let leaving: Vec<Client> = clients.drain(..10).collect();
    let closers: Vec<_> = leaving
        .into_iter()
        .map(|client| tokio::spawn(close(client.ws)))
        .collect();
    for closer in closers {
        timeout(WAIT * 2, closer)
            .await
            .expect("close hung")
            .unwrap();
    }
    // Clients 10..20 stay: 10,14,18 red; 12,16 blue; 11,15,19 blue; 13,17 red.
    let expected = counts(&[("red", 5), ("blue", 5)]);
    let deadline = Instant::now() + WAIT;
    loop {
        let seen = observed(addr).await;
        if seen == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tallies after the disconnects: {seen:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn reset_clears_the_votes_for_good() {
    let addr = spawn_server().await;
    let mut a = join(addr).await;
    let mut b = join(addr).await;
    expect_event(&mut a.ws, "presence:join").await;

    vote(&mut a.ws, "red").await;
    vote(&mut b.ws, "green").await;
    send_event(&mut b.ws, "reset", Value::Null).await;
    let (reset, _) = wait_for(&mut a.ws, "reset", |_| true).await;
    assert_eq!(reset, json!({ "by": b.id }));
    wait_for(&mut b.ws, "reset", |_| true).await;
    assert_eq!(observed(addr).await, counts(&[]));

    // A's old vote no longer counts: voting red again counts once, and
    // moving it does not take anything from red's earlier voters.
    vote(&mut a.ws, "red").await;
    vote(&mut b.ws, "red").await;
    vote(&mut a.ws, "blue").await;
    assert_eq!(observed(addr).await, counts(&[("red", 1), ("blue", 1)]));

    // B leaves: its post-reset vote goes; a reset without payload works too.
    close(b.ws).await;
    wait_tally(&mut a.ws, "red", 0).await;
    send_text(&mut a.ws, r#"{"event": "reset"}"#.to_owned()).await;
    wait_for(&mut a.ws, "reset", |_| true).await;
    assert_eq!(observed(addr).await, counts(&[]));
    close(a.ws).await;
    // A's disconnect after the reset takes nothing: no negative tallies.
    assert_eq!(observed(addr).await, counts(&[]));
}

#[tokio::test]
async fn names_reach_the_others_as_presence_updates() {
    let addr = spawn_server().await;
    let mut a = join(addr).await;
    let mut b = join(addr).await;
    expect_event(&mut a.ws, "presence:join").await;

    send_event(&mut b.ws, "name", json!({ "name": "Bob" })).await;
    assert_eq!(
        expect_event(&mut b.ws, "named").await,
        json!({ "name": "Bob" })
    );
    let update = expect_event(&mut a.ws, "presence:update").await;
    assert_eq!(update["presence"]["key"], b.id.as_str());
    assert_eq!(update["presence"]["activity"], "Bob");

    // Exactly 32 characters is fine (multi-byte ones count once).
    let long = "é".repeat(32);
    send_event(&mut b.ws, "name", json!({ "name": long })).await;
    assert_eq!(
        expect_event(&mut b.ws, "named").await,
        json!({ "name": long })
    );
}

#[tokio::test]
async fn bad_input_is_refused_without_a_crash() {
    let addr = spawn_server().await;
    let mut a = join(addr).await;
    let mut b = join(addr).await;
    expect_event(&mut a.ws, "presence:join").await;

    let refused = [
        ("vote", json!({ "option": "purple" })),
        ("vote", json!({ "option": "" })),
        ("vote", json!({ "option": "RED" })),
        ("vote", json!({ "option": "x".repeat(10_000) })),
        ("name", json!({ "name": "" })),
        ("name", json!({ "name": "   " })),
        ("name", json!({ "name": "n".repeat(33) })),
        ("name", json!({ "name": "bell\u{7}" })),
    ];
    for (event, payload) in refused {
        send_event(&mut a.ws, event, payload.clone()).await;
        let invalid = expect_event(&mut a.ws, "invalid").await;
        assert_eq!(invalid["event"], event, "for {payload}");
        let message = invalid["message"].as_str().expect("message");
        assert!(
            !message.is_empty() && message.len() < 200,
            "message: {message}"
        );
    }

    // What liweb itself cannot decode gets its `error` event.
    let undecodable = [
        (
            json!({ "event": "vote", "payload": { "option": 5 } }).to_string(),
            "bad_payload",
        ),
        (
            json!({ "event": "vote", "payload": null }).to_string(),
            "bad_payload",
        ),
        (json!({ "event": "vote" }).to_string(), "bad_payload"),
        (
            json!({ "event": "name", "payload": [] }).to_string(),
            "bad_payload",
        ),
        (
            json!({ "event": "reset", "payload": { "all": true } }).to_string(),
            "bad_payload",
        ),
        (
            json!({ "event": "tally", "payload": {} }).to_string(),
            "unknown_event",
        ),
        ("not json".to_owned(), "bad_frame"),
        ("[1, 2]".to_owned(), "bad_frame"),
    ];
    for (frame, code) in undecodable {
        send_text(&mut a.ws, frame.clone()).await;
        let error = expect_event(&mut a.ws, "error").await;
        assert_eq!(error["code"], code, "for {frame}: {error}");
    }

    // Nothing changed, nobody heard anything, and both still work.
    assert_eq!(observed(addr).await, counts(&[]));
    let patches = vote(&mut a.ws, "red").await;
    assert_eq!(patches, vec![tally("red", 1)]);
    // B's first events: the observer's join and leave, then A's vote.
    wait_tally(&mut b.ws, "red", 1).await;
    vote(&mut b.ws, "red").await;
    assert_eq!(observed(addr).await, counts(&[("red", 2)]));
}
