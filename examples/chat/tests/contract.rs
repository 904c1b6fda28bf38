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
        axum::serve(
            listener,
            chat::app().into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("serve");
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

    // The next chat:message on both sides is the real one.
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
