//! The chat example's wire contract as an outside tool sees it: a real TCP
//! server, raw WebSocket JSON frames via `tokio-tungstenite`, payloads read as
//! `serde_json::Value` (never the example's Rust types), and plain HTTP/1.1
//! for the page and the client script.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The bound on every wait.
const WAIT: Duration = Duration::from_secs(5);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Serves `chat::app()` on an ephemeral port and returns its address.
async fn spawn_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        liweb::serve(listener, chat::app()).await.expect("serve");
    });
    addr
}

/// Opens a WebSocket to `/ws`.
async fn connect(addr: SocketAddr) -> Ws {
    let (ws, response) = timeout(
        WAIT,
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws")),
    )
    .await
    .expect("timed out connecting")
    .expect("websocket handshake");
    assert_eq!(response.status().as_u16(), 101, "upgrade status");
    ws
}

/// Opens a WebSocket and reads its `welcome`; returns the socket, its id and
/// the online count the server announced.
async fn join(addr: SocketAddr) -> (Ws, String, u64) {
    let mut ws = connect(addr).await;
    let payload = expect_event(&mut ws, "welcome").await;
    let id = payload["id"]
        .as_str()
        .unwrap_or_else(|| panic!("welcome id is not a string: {payload}"))
        .to_owned();
    let online = payload["online"]
        .as_u64()
        .unwrap_or_else(|| panic!("welcome online is not a number: {payload}"));
    (ws, id, online)
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

/// Sends `{"event": event, "payload": payload}` as a text frame.
async fn send_event(ws: &mut Ws, event: &str, payload: Value) {
    let frame = json!({ "event": event, "payload": payload }).to_string();
    timeout(WAIT, ws.send(Message::text(frame)))
        .await
        .expect("timed out sending")
        .expect("send");
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

fn now_ms() -> u64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    u64::try_from(elapsed.as_millis()).expect("ms fit in u64")
}

/// A hyphenated UUID: 8-4-4-4-12 hex digits.
fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Checks a `chat:message` payload: sender id, text, and a ts in `[from, to]`
/// give or take a couple of seconds of clock slack.
fn assert_chat_message(payload: &Value, id: &str, text: &str, from: u64, to: u64) {
    assert_eq!(payload["id"], json!(id), "sender id in {payload}");
    assert_eq!(payload["text"], json!(text), "text in {payload}");
    let ts = payload["ts"]
        .as_u64()
        .unwrap_or_else(|| panic!("ts is not an unsigned integer: {payload}"));
    assert!(
        from.saturating_sub(2_000) <= ts && ts <= to + 2_000,
        "ts {ts} not within [{from}, {to}] ± 2 s"
    );
}

/// A minimal HTTP/1.1 GET: returns the status, the headers (names lower
/// cased) and the body.
async fn http_get(addr: SocketAddr, path: &str) -> (u16, Vec<(String, String)>, String) {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("tcp connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("write request");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("read response");
        raw
    };
    let raw = timeout(WAIT, exchange)
        .await
        .expect("timed out on HTTP GET");
    let raw = String::from_utf8(raw).expect("response is UTF-8");
    let (head, body) = raw.split_once("\r\n\r\n").expect("response has a head");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn welcome_carries_a_uuid_connection_id_and_the_online_count() {
    let addr = spawn_server().await;

    let (_a, a_id, a_online) = join(addr).await;
    assert!(is_uuid(&a_id), "welcome id {a_id:?} is not a uuid");
    assert_eq!(a_online, 1, "first client sees itself online");

    let (_b, b_id, b_online) = join(addr).await;
    assert!(is_uuid(&b_id), "welcome id {b_id:?} is not a uuid");
    assert_ne!(a_id, b_id, "connection ids are unique");
    assert_eq!(b_online, 2, "second client counts both");
}

#[tokio::test]
async fn user_joined_goes_to_the_others_not_to_the_newcomer() {
    let addr = spawn_server().await;
    let (mut a, _a_id, _) = join(addr).await;
    let (mut b, b_id, _) = join(addr).await;

    let joined = expect_event(&mut a, "user:joined").await;
    assert_eq!(joined["id"], json!(b_id), "joined id in {joined}");
    assert_eq!(joined["online"], json!(2), "joined online in {joined}");

    // Fence: B's next event after its welcome is its own message, so it got
    // no user:joined about itself.
    let from = now_ms();
    send_event(&mut b, "chat:message", json!({ "text": "fence" })).await;
    let fence = expect_event(&mut b, "chat:message").await;
    assert_chat_message(&fence, &b_id, "fence", from, now_ms());
}

#[tokio::test]
async fn chat_message_reaches_every_client_including_the_sender() {
    let addr = spawn_server().await;
    let (mut a, a_id, _) = join(addr).await;
    let (mut b, _b_id, _) = join(addr).await;
    expect_event(&mut a, "user:joined").await;

    let from = now_ms();
    send_event(&mut a, "chat:message", json!({ "text": "hello, world" })).await;

    let to_sender = expect_event(&mut a, "chat:message").await;
    let to_other = expect_event(&mut b, "chat:message").await;
    let to = now_ms();
    assert_chat_message(&to_sender, &a_id, "hello, world", from, to);
    assert_chat_message(&to_other, &a_id, "hello, world", from, to);
    assert_eq!(to_sender["ts"], to_other["ts"], "one message, one ts");
}

#[tokio::test]
async fn user_left_names_the_leaver_and_the_new_online_count() {
    let addr = spawn_server().await;
    let (mut a, _a_id, _) = join(addr).await;
    let (mut b, _b_id, _) = join(addr).await;
    let (c, c_id, c_online) = join(addr).await;
    assert_eq!(c_online, 3);
    expect_event(&mut a, "user:joined").await; // b
    let joined = expect_event(&mut a, "user:joined").await;
    assert_eq!(joined["id"], json!(c_id));
    let joined = expect_event(&mut b, "user:joined").await;
    assert_eq!(joined["id"], json!(c_id));

    close(c).await;

    for ws in [&mut a, &mut b] {
        let left = expect_event(ws, "user:left").await;
        assert_eq!(left["id"], json!(c_id), "left id in {left}");
        assert_eq!(left["online"], json!(2), "left online in {left}");
    }
}

#[tokio::test]
async fn user_left_is_sent_when_a_client_drops_without_a_close_frame() {
    let addr = spawn_server().await;
    let (mut a, _a_id, _) = join(addr).await;
    let (b, b_id, _) = join(addr).await;
    expect_event(&mut a, "user:joined").await;

    drop(b);

    let left = expect_event(&mut a, "user:left").await;
    assert_eq!(left["id"], json!(b_id), "left id in {left}");
    assert_eq!(left["online"], json!(1), "left online in {left}");
}

#[tokio::test]
async fn whitespace_only_text_is_not_broadcast() {
    let addr = spawn_server().await;
    let (mut a, a_id, _) = join(addr).await;
    let (mut b, _b_id, _) = join(addr).await;
    expect_event(&mut a, "user:joined").await;

    let from = now_ms();
    send_event(&mut a, "chat:message", json!({ "text": "" })).await;
    send_event(&mut a, "chat:message", json!({ "text": "  \t\n  " })).await;
    send_event(&mut a, "chat:message", json!({ "text": "real" })).await;

    // The sender hears each refusal; the next chat:message on both sides is
    // the real one.
    for _ in 0..2 {
        expect_refused(&mut a, "chat:message", "empty message").await;
    }
    for ws in [&mut a, &mut b] {
        let message = expect_event(ws, "chat:message").await;
        assert_chat_message(&message, &a_id, "real", from, now_ms());
    }
}

#[tokio::test]
async fn get_root_serves_the_html_page_that_loads_liweb_js() {
    let addr = spawn_server().await;
    let (status, headers, body) = http_get(addr, "/").await;
    assert_eq!(status, 200);
    let content_type = header(&headers, "content-type").expect("content-type header");
    assert!(
        content_type.starts_with("text/html"),
        "content-type {content_type:?}"
    );
    assert!(body.contains("<html"), "body is not an HTML page");
    assert!(body.contains("/liweb.js"), "page does not load /liweb.js");
}

#[tokio::test]
async fn get_liweb_js_has_a_javascript_content_type() {
    let addr = spawn_server().await;
    let (status, headers, body) = http_get(addr, "/liweb.js").await;
    assert_eq!(status, 200);
    let content_type = header(&headers, "content-type").expect("content-type header");
    assert!(
        content_type.starts_with("text/javascript")
            || content_type.starts_with("application/javascript"),
        "content-type {content_type:?}"
    );
    assert!(
        body.contains("export class LiwebClient"),
        "body is not the liweb client module"
    );
}

// ---------------------------------------------------------------------------
// Rooms: `join`, `leave`, `typing`, `chat:message` with a room, history.
//
// Ordering argument used by the fences below: each handler queues its emits
// for every recipient before it returns, a connection's queue is delivered
// in order, and a connection's own events are handled in arrival order. So
// once one recipient of an emit has seen it, any copy meant for another
// connection is already queued there, and a fence (that connection's own
// `general` message, echoed back) arrives after it.
// ---------------------------------------------------------------------------

/// Connects `n` clients in order and reads every `user:joined` the general
/// room sends about the later ones, so each socket starts with nothing
/// pending. Returns the sockets and their ids.
async fn clients(addr: SocketAddr, n: usize) -> Vec<(Ws, String)> {
    let mut all: Vec<(Ws, String)> = Vec::with_capacity(n);
    for _ in 0..n {
        let (ws, id, _) = join(addr).await;
        for (earlier, _) in &mut all {
            let joined = expect_event(earlier, "user:joined").await;
            assert_eq!(joined["id"], json!(id), "user:joined id in {joined}");
            assert_eq!(
                joined["room"],
                json!("general"),
                "user:joined room in {joined}"
            );
        }
        all.push((ws, id));
    }
    all
}

/// Sends `join {"room"}` and reads the `joined` reply, which must name the room.
async fn join_room(ws: &mut Ws, room: &str) -> Value {
    send_event(ws, "join", json!({ "room": room })).await;
    let joined = expect_event(ws, "joined").await;
    assert_eq!(joined["room"], json!(room), "joined room in {joined}");
    assert!(joined["history"].is_array(), "joined history in {joined}");
    joined
}

/// Sends `chat:message {"text", "room"}` (no `room` when `None`).
async fn say(ws: &mut Ws, text: &str, room: Option<&str>) {
    let payload = match room {
        Some(room) => json!({ "text": text, "room": room }),
        None => json!({ "text": text }),
    };
    send_event(ws, "chat:message", payload).await;
}

/// The next event must be the `chat:message` `text` from `id` in `room`.
async fn expect_message(ws: &mut Ws, id: &str, text: &str, room: &str) -> Value {
    let message = expect_event(ws, "chat:message").await;
    assert_eq!(message["id"], json!(id), "sender id in {message}");
    assert_eq!(message["text"], json!(text), "text in {message}");
    assert_eq!(message["room"], json!(room), "room in {message}");
    message
}

/// The next event must be the `error` of code `refused` the chat answers
/// refused input with, about `event`, saying `message`.
async fn expect_refused(ws: &mut Ws, event: &str, message: &str) {
    let error = expect_event(ws, "error").await;
    assert_eq!(
        error,
        json!({ "code": "refused", "message": message, "event": event }),
        "the refusal of {event}"
    );
}

/// A fence: `ws` says `text` in `general` and its next event must be that
/// message, so nothing else was queued for it before.
async fn fence(ws: &mut Ws, id: &str, text: &str) {
    say(ws, text, None).await;
    expect_message(ws, id, text, "general").await;
}

#[tokio::test]
async fn join_replies_joined_to_the_joiner_and_user_joined_to_the_room_only() {
    let addr = spawn_server().await;
    let mut all = clients(addr, 3).await;
    let (mut c, c_id) = all.pop().expect("c");
    let (mut b, b_id) = all.pop().expect("b");
    let (mut a, a_id) = all.pop().expect("a");

    // A joins an empty room: `joined` with itself online and no history.
    let joined = join_room(&mut a, "dev").await;
    assert_eq!(joined["online"], json!(1), "joined online in {joined}");
    assert_eq!(joined["history"], json!([]), "joined history in {joined}");
    let keys: Vec<&str> = joined
        .as_object()
        .expect("joined is an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 3, "joined has room, online, history: {joined}");

    // B joins: its first event is `joined` (no `user:joined` about itself,
    // which would be queued before it); A, the other member, gets `user:joined`.
    let joined = join_room(&mut b, "dev").await;
    assert_eq!(joined["online"], json!(2), "joined online in {joined}");
    let user_joined = expect_event(&mut a, "user:joined").await;
    assert_eq!(user_joined["room"], json!("dev"), "room in {user_joined}");
    assert_eq!(user_joined["id"], json!(b_id), "id in {user_joined}");
    assert_eq!(user_joined["online"], json!(2), "online in {user_joined}");

    // C, in `general` only, got no `user:joined` for `dev`. A and B see the
    // fence in `general` too.
    fence(&mut c, &c_id, "c fence").await;
    for ws in [&mut a, &mut b] {
        expect_message(ws, &c_id, "c fence", "general").await;
    }
    // And B got nothing else either.
    fence(&mut b, &b_id, "b fence").await;
    expect_message(&mut a, &b_id, "b fence", "general").await;
    fence(&mut a, &a_id, "a fence").await;
}

#[tokio::test]
async fn joining_general_again_replies_joined_with_history_and_no_user_joined() {
    let addr = spawn_server().await;
    let mut all = clients(addr, 2).await;
    let (mut b, b_id) = all.pop().expect("b");
    let (mut a, a_id) = all.pop().expect("a");

    say(&mut a, "first", None).await;
    for ws in [&mut a, &mut b] {
        expect_message(ws, &a_id, "first", "general").await;
    }

    let joined = join_room(&mut b, "general").await;
    assert_eq!(joined["online"], json!(2), "joined online in {joined}");
    let history = joined["history"].as_array().expect("history array");
    assert_eq!(history.len(), 1, "history in {joined}");
    assert_eq!(history[0]["text"], json!("first"), "history in {joined}");
    assert_eq!(history[0]["id"], json!(a_id), "history in {joined}");
    assert_eq!(history[0]["room"], json!("general"), "history in {joined}");

    // No `user:joined` reached A: B was already a member.
    fence(&mut a, &a_id, "a fence").await;
    expect_message(&mut b, &a_id, "a fence", "general").await;
    fence(&mut b, &b_id, "b fence").await;
}

#[tokio::test]
async fn chat_message_to_a_room_reaches_its_members_only_and_names_the_room() {
    let addr = spawn_server().await;
    let mut all = clients(addr, 3).await;
    let (mut c, c_id) = all.pop().expect("c");
    let (mut b, _b_id) = all.pop().expect("b");
    let (mut a, a_id) = all.pop().expect("a");
    join_room(&mut a, "dev").await;
    join_room(&mut b, "dev").await;
    expect_event(&mut a, "user:joined").await;

    let from = now_ms();
    say(&mut a, "hi dev", Some("dev")).await;
    let to_sender = expect_message(&mut a, &a_id, "hi dev", "dev").await;
    let to_member = expect_message(&mut b, &a_id, "hi dev", "dev").await;
    assert_chat_message(&to_sender, &a_id, "hi dev", from, now_ms());
    assert_eq!(to_sender, to_member, "one message, the same payload");

    // C is in `general` only: the `dev` message did not reach it.
    fence(&mut c, &c_id, "c fence").await;
}

#[tokio::test]
async fn chat_message_without_a_room_goes_to_general() {
    let addr = spawn_server().await;
    let mut all = clients(addr, 2).await;
    let (mut b, _b_id) = all.pop().expect("b");
    let (mut a, a_id) = all.pop().expect("a");

    let from = now_ms();
    say(&mut a, "no room", None).await;
    for ws in [&mut a, &mut b] {
        let message = expect_message(ws, &a_id, "no room", "general").await;
        assert_chat_message(&message, &a_id, "no room", from, now_ms());
    }
}

#[tokio::test]
async fn history_keeps_the_last_50_messages_in_order() {
    let addr = spawn_server().await;
    let (mut a, a_id, _) = join(addr).await;
    for i in 1..=55 {
        say(&mut a, &format!("m{i}"), None).await;
    }
    // Every message was kept (or dropped from the history) before its echo.
    for i in 1..=55 {
        expect_message(&mut a, &a_id, &format!("m{i}"), "general").await;
    }

    let (mut c, _c_id, _) = join(addr).await;
    let joined = join_room(&mut c, "general").await;
    let history = joined["history"].as_array().expect("history array");
    assert_eq!(history.len(), 50, "history keeps the last 50");
    for (item, i) in history.iter().zip(6..=55) {
        assert_eq!(item["seq"], json!(i), "history item {item}");
        assert_eq!(item["text"], json!(format!("m{i}")), "history item {item}");
        assert_eq!(item["id"], json!(a_id), "history item {item}");
        assert_eq!(item["room"], json!("general"), "history item {item}");
    }
    assert_eq!(history[0]["seq"], json!(6), "oldest kept is seq 6");
}

#[tokio::test]
async fn leave_sends_user_left_to_the_others_and_stops_the_rooms_messages() {
    let addr = spawn_server().await;
    let mut all = clients(addr, 3).await;
    let (mut c, c_id) = all.pop().expect("c");
    let (mut b, b_id) = all.pop().expect("b");
    let (mut a, a_id) = all.pop().expect("a");
    join_room(&mut a, "dev").await;
    join_room(&mut b, "dev").await;
    expect_event(&mut a, "user:joined").await;
    join_room(&mut c, "dev").await;
    expect_event(&mut a, "user:joined").await;
    expect_event(&mut b, "user:joined").await;

    send_event(&mut b, "leave", json!({ "room": "dev" })).await;
    for ws in [&mut a, &mut c] {
        let left = expect_event(ws, "user:left").await;
        assert_eq!(left["room"], json!("dev"), "left room in {left}");
        assert_eq!(left["id"], json!(b_id), "left id in {left}");
        assert_eq!(left["online"], json!(2), "left online in {left}");
    }

    say(&mut a, "after leave", Some("dev")).await;
    expect_message(&mut a, &a_id, "after leave", "dev").await;
    expect_message(&mut c, &a_id, "after leave", "dev").await;

    // B got neither its own `user:left` nor the `dev` message.
    fence(&mut b, &b_id, "b fence").await;
    // And B can no longer speak in `dev`.
    say(&mut b, "not a member", Some("dev")).await;
    expect_refused(&mut b, "chat:message", "not a member of this room").await;
    fence(&mut b, &b_id, "b fence 2").await;
    for ws in [&mut a, &mut c] {
        expect_message(ws, &b_id, "b fence", "general").await;
        expect_message(ws, &b_id, "b fence 2", "general").await;
    }
    fence(&mut c, &c_id, "c fence").await;
}

#[tokio::test]
async fn typing_reaches_the_other_members_of_the_room_not_the_sender() {
    let addr = spawn_server().await;
    let mut all = clients(addr, 3).await;
    let (mut c, c_id) = all.pop().expect("c");
    let (mut b, _b_id) = all.pop().expect("b");
    let (mut a, a_id) = all.pop().expect("a");
    join_room(&mut a, "dev").await;
    join_room(&mut b, "dev").await;
    expect_event(&mut a, "user:joined").await;

    send_event(&mut a, "typing", json!({ "room": "dev" })).await;
    let typing = expect_event(&mut b, "typing").await;
    let a_name = format!("guest-{}", &a_id.replace('-', "")[..8]);
    assert_eq!(
        typing,
        json!({ "room": "dev", "id": a_id, "name": a_name }),
        "typing payload"
    );

    // Not to the sender, not to C outside the room.
    fence(&mut a, &a_id, "a fence").await;
    expect_message(&mut c, &a_id, "a fence", "general").await;
    fence(&mut c, &c_id, "c fence").await;
}

#[tokio::test]
async fn chat_message_to_a_room_the_sender_is_not_in_is_dropped() {
    let addr = spawn_server().await;
    let mut all = clients(addr, 2).await;
    let (mut b, _b_id) = all.pop().expect("b");
    let (mut a, a_id) = all.pop().expect("a");
    join_room(&mut b, "dev").await;

    say(&mut a, "intruder", Some("dev")).await;
    expect_refused(&mut a, "chat:message", "not a member of this room").await;
    // A's events are handled in order: had the `dev` message gone out, B
    // would get it before A's fence, and A would get its echo first.
    fence(&mut a, &a_id, "a fence").await;
    expect_message(&mut b, &a_id, "a fence", "general").await;

    // Nor did it join the room's history.
    let joined = join_room(&mut b, "dev").await;
    assert_eq!(joined["history"], json!([]), "dev history in {joined}");
}

#[tokio::test]
async fn bad_room_names_are_ignored_and_the_connection_stays_usable() {
    let addr = spawn_server().await;
    let mut all = clients(addr, 2).await;
    let (mut b, _b_id) = all.pop().expect("b");
    let (mut a, a_id) = all.pop().expect("a");
    let too_long = "x".repeat(65);

    for room in ["", "   ", too_long.as_str()] {
        send_event(&mut a, "join", json!({ "room": room })).await;
        send_event(&mut a, "typing", json!({ "room": room })).await;
        send_event(&mut a, "leave", json!({ "room": room })).await;
        say(&mut a, "bad room", Some(room)).await;
        for event in ["join", "typing", "leave", "chat:message"] {
            expect_refused(&mut a, event, "room names are 1 to 64 bytes").await;
        }
    }
    // Nothing to B; the connection still works.
    fence(&mut a, &a_id, "a fence").await;
    expect_message(&mut b, &a_id, "a fence", "general").await;

    // 64 bytes is the longest name accepted.
    let longest = "y".repeat(64);
    let joined = join_room(&mut a, &longest).await;
    assert_eq!(joined["online"], json!(1), "joined online in {joined}");
}

/// Serves the chat with a shared secret on an ephemeral port.
async fn spawn_secret_server(secret: &str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let app = chat::app_with(chat::Options::secret(secret));
    tokio::spawn(async move {
        liweb::serve(listener, app).await.expect("serve");
    });
    addr
}

/// Reads frames until the close frame; returns its code and reason.
async fn expect_close(ws: &mut Ws) -> (u16, String) {
    loop {
        match timeout(WAIT, ws.next())
            .await
            .expect("timed out waiting for a close")
        {
            Some(Ok(Message::Close(Some(frame)))) => {
                return (u16::from(frame.code), frame.reason.to_string());
            }
            Some(Ok(Message::Close(None))) | None | Some(Err(_)) => {
                panic!("the connection ended without a close code")
            }
            Some(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn config_json_says_whether_a_secret_is_needed() {
    let open = spawn_server().await;
    let (status, _, body) = http_get(open, "/config.json").await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"auth": "none"})
    );
    let closed = spawn_secret_server("s3cret").await;
    let (_, _, body) = http_get(closed, "/config.json").await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"auth": "secret"})
    );
}

#[tokio::test]
async fn with_a_secret_a_wrong_secret_is_refused_and_closed_with_4001() {
    let addr = spawn_secret_server("s3cret").await;
    let mut ws = connect(addr).await;
    send_event(&mut ws, "__auth", json!({"secret": "guess"})).await;
    let error = expect_event(&mut ws, "auth:error").await;
    assert_eq!(error, json!({"reason": "invalid secret"}));
    assert_eq!(
        expect_close(&mut ws).await,
        (4001, "invalid secret".to_owned())
    );
}

#[tokio::test]
async fn with_a_secret_events_before_auth_are_refused_and_nothing_is_received() {
    let addr = spawn_secret_server("s3cret").await;
    let mut ws = connect(addr).await;
    send_event(&mut ws, "chat:message", json!({"text": "sneaky"})).await;
    let error = expect_event(&mut ws, "auth:error").await;
    assert_eq!(error, json!({"reason": "not authenticated"}));
    // The first thing after authenticating is `auth:success`, then `welcome`:
    // no `chat:message` was delivered or kept.
    send_event(&mut ws, "__auth", json!({"secret": "s3cret"})).await;
    let (event, _) = next_event(&mut ws).await;
    assert_eq!(event, "auth:success");
    let (event, _) = next_event(&mut ws).await;
    assert_eq!(event, "welcome");
}

#[tokio::test]
async fn with_a_secret_messages_carry_the_server_issued_user_name() {
    let addr = spawn_secret_server("s3cret").await;
    let mut ws = connect(addr).await;
    send_event(&mut ws, "__auth", json!({"secret": "s3cret"})).await;
    let success = expect_event(&mut ws, "auth:success").await;
    let name = success["user"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("auth:success user id is not a string: {success}"))
        .to_owned();
    assert!(
        name.len() == 14 && name.starts_with("guest-"),
        "a server-issued name: {name}"
    );
    let welcome = expect_event(&mut ws, "welcome").await;
    assert_eq!(welcome["name"], json!(name));
    let id = welcome["id"].as_str().unwrap().to_owned();
    send_event(
        &mut ws,
        "chat:message",
        json!({"text": "hi", "name": "admin"}),
    )
    .await;
    let message = expect_event(&mut ws, "chat:message").await;
    assert_eq!(message["id"], json!(id));
    // A `name` in the client's payload is ignored: the server issues names.
    assert_eq!(message["name"], json!(name));
}

#[tokio::test]
async fn without_a_secret_every_client_still_gets_a_server_issued_name() {
    let addr = spawn_server().await;
    let (mut ws, id, _) = join(addr).await;
    send_event(&mut ws, "chat:message", json!({"text": "named"})).await;
    let message = expect_event(&mut ws, "chat:message").await;
    assert_eq!(
        message["name"],
        json!(format!("guest-{}", &id.replace('-', "")[..8]))
    );
}

// ---------------------------------------------------------------------------
// Refusals and amplification: every refused input is answered, and no
// input makes the server send much more than it received.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_join_past_16_rooms_is_refused_and_creates_no_room() {
    let addr = spawn_server().await;
    let mut all = clients(addr, 2).await;
    let (mut b, _b_id) = all.pop().expect("b");
    let (mut a, a_id) = all.pop().expect("a");
    // `general` is the first of A's 16.
    for n in 1..16 {
        join_room(&mut a, &format!("room-{n}")).await;
    }
    send_event(&mut a, "join", json!({ "room": "one-too-many" })).await;
    expect_refused(&mut a, "join", "at most 16 rooms per connection").await;
    // A room A is already in still answers with its history.
    join_room(&mut a, "room-1").await;
    fence(&mut a, &a_id, "a fence").await;
    expect_message(&mut b, &a_id, "a fence", "general").await;

    // The refused room was not made: B, joining it, is alone there.
    let joined = join_room(&mut b, "one-too-many").await;
    assert_eq!(joined["online"], json!(1), "joined online in {joined}");
}

#[tokio::test]
async fn joins_past_the_burst_are_refused_so_history_cannot_be_amplified() {
    let addr = spawn_server().await;
    let (mut a, a_id, _) = join(addr).await;
    for n in 0..10 {
        say(&mut a, &format!("m{n}"), None).await;
        expect_message(&mut a, &a_id, &format!("m{n}"), "general").await;
    }
    // Each `join` of `general` answers with its history: 20 at once are
    // answered, then refusals until the budget refills (2 a second).
    for _ in 0..25 {
        send_event(&mut a, "join", json!({ "room": "general" })).await;
    }
    let mut joined = 0;
    let mut refused = 0;
    for _ in 0..25 {
        let (event, payload) = next_event(&mut a).await;
        match event.as_str() {
            "joined" => joined += 1,
            "error" => {
                assert_eq!(payload["code"], json!("refused"), "{payload}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {payload}"),
        }
    }
    // The budget refills while the 25 are handled; at most a few more than
    // the burst get through, never all 25.
    assert!((20..25).contains(&joined), "{joined} joins answered");
    assert_eq!(joined + refused, 25);
}

#[tokio::test]
async fn two_concurrent_senders_never_grow_the_history_past_50() {
    let addr = spawn_server().await;
    let mut all = clients(addr, 3).await;
    let (mut c, _c_id) = all.pop().expect("c");
    let (mut b, b_id) = all.pop().expect("b");
    let (mut a, a_id) = all.pop().expect("a");
    // Both send 60 without waiting, so their history updates interleave.
    for i in 0..60 {
        say(&mut a, &format!("a{i}"), None).await;
        say(&mut b, &format!("b{i}"), None).await;
    }
    // C reads all 120, then asks for the history.
    let mut seen = 0;
    while seen < 120 {
        let (event, payload) = next_event(&mut c).await;
        assert_eq!(event, "chat:message", "{payload}");
        seen += 1;
    }
    let joined = join_room(&mut c, "general").await;
    let history = joined["history"].as_array().expect("history array");
    assert_eq!(history.len(), 50, "history keeps exactly the last 50");
    let seqs: Vec<i64> = history
        .iter()
        .map(|item| item["seq"].as_i64().expect("seq"))
        .collect();
    assert_eq!(
        seqs,
        (71..=120).collect::<Vec<_>>(),
        "the last 50, in order"
    );
    for item in history {
        assert!(
            item["id"] == json!(a_id) || item["id"] == json!(b_id),
            "{item}"
        );
    }
}

#[tokio::test]
async fn a_disconnect_is_told_to_the_members_of_general_only() {
    let addr = spawn_server().await;
    let mut all = clients(addr, 3).await;
    let (c, c_id) = all.pop().expect("c");
    let (mut b, b_id) = all.pop().expect("b");
    let (mut a, a_id) = all.pop().expect("a");
    // B leaves general: it no longer hears of general's departures.
    send_event(&mut b, "leave", json!({ "room": "general" })).await;
    let left = expect_event(&mut a, "user:left").await;
    assert_eq!(left["id"], json!(b_id), "{left}");

    close(c).await;
    let left = expect_event(&mut a, "user:left").await;
    assert_eq!(left["id"], json!(c_id), "{left}");
    assert_eq!(
        left["online"],
        json!(2),
        "the server's connections in {left}"
    );

    // B heard nothing: its next event is the answer to its own join.
    let joined = join_room(&mut b, "general").await;
    assert_eq!(joined["online"], json!(2), "{joined}");
    let user_joined = expect_event(&mut a, "user:joined").await;
    assert_eq!(user_joined["id"], json!(b_id), "{user_joined}");
    fence(&mut a, &a_id, "a fence").await;
}

#[tokio::test]
async fn user_joined_notices_of_a_big_general_are_coalesced_and_end_with_the_latest() {
    let addr = spawn_server().await;
    let (mut a, _a_id, _) = join(addr).await;
    // 120 more clients arrive as fast as they can: past 100 members, the
    // others hear at most one `user:joined` every 250 ms.
    let mut others = Vec::new();
    for _ in 0..120 {
        others.push(connect(addr).await);
    }
    let mut notices = 0;
    loop {
        let joined = expect_event(&mut a, "user:joined").await;
        notices += 1;
        if joined["online"] == json!(121) {
            break;
        }
    }
    // Every arrival up to 100 members, then a few coalesced ones.
    assert!(
        (100..120).contains(&notices),
        "{notices} notices for 120 arrivals"
    );
    drop(others);
}
