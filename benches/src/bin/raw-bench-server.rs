//! The raw baseline for the load generator (`loadgen`): a hand-written,
//! minimal axum WebSocket server speaking liweb-bench-server's wire format
//! (`{"event", "payload"}`; `join`, `publish` → `msg`, `echo` → `echoed`,
//! see that binary's docs) and liweb's ack replies (an `echo` request with
//! `"ack":17` is answered `{"event":"__ack","ack":17,"payload":..}` with the
//! request's payload instead of `echoed`), and the practical limit of this
//! stack:
//!
//! - rooms are a map of room → members, each member the sending side of its
//!   connection's unbounded queue of shared frames ([`Utf8Bytes`], a `Bytes`);
//! - serialize once: a `publish` frame's payload is kept as raw JSON and
//!   re-wrapped once as the outgoing `msg` frame, which every member's queue
//!   gets a reference-counted clone of;
//! - each connection has one reader task and one writer task; the writer
//!   feeds every queued frame and flushes once;
//! - a 4 KiB read buffer (`WebSocketUpgrade::read_buffer_size(4096)`), as
//!   liweb's default.
//!
//! ```text
//! raw-bench-server [ADDR]          # or LIWEB_ADDR=...; default 127.0.0.1:0
//! ```
//!
//! Prints `listening on ADDR` on stdout once bound.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use axum::serve::ListenerExt;
use axum::{
    Router,
    extract::{
        State,
        ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade},
    },
    response::Response,
    routing::get,
};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

type Tx = mpsc::UnboundedSender<Utf8Bytes>;

#[derive(Default)]
struct Hub {
    next_id: AtomicU64,
    rooms: Mutex<HashMap<String, HashMap<u64, Tx>>>,
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(borrow)]
    event: &'a str,
    #[serde(borrow)]
    payload: &'a RawValue,
    #[serde(default)]
    ack: Option<u64>,
}

#[derive(Deserialize)]
struct RoomField {
    room: String,
}

async fn ws(upgrade: WebSocketUpgrade, State(hub): State<Arc<Hub>>) -> Response {
    upgrade
        .read_buffer_size(4096)
        .max_message_size(64 * 1024)
        .max_frame_size(64 * 1024)
        .on_upgrade(move |socket| run(hub, socket))
}

async fn run(hub: Arc<Hub>, socket: WebSocket) {
    let id = hub.next_id.fetch_add(1, Ordering::Relaxed);
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Utf8Bytes>();
    let writer = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            if sink.feed(Message::Text(first)).await.is_err() {
                return;
            }
            while let Ok(next) = rx.try_recv() {
                if sink.feed(Message::Text(next)).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    let mut joined: Vec<String> = Vec::new();
    while let Some(Ok(message)) = stream.next().await {
        let Message::Text(text) = message else {
            if matches!(message, Message::Close(_)) {
                break;
            }
            continue;
        };
        let Ok(frame) = serde_json::from_str::<Frame<'_>>(text.as_str()) else {
            continue;
        };
        match frame.event {
            "join" => {
                let Ok(RoomField { room }) = serde_json::from_str(frame.payload.get()) else {
                    continue;
                };
                let size = {
                    let mut rooms = hub.rooms.lock().unwrap_or_else(|e| e.into_inner());
                    let members = rooms.entry(room.clone()).or_default();
                    members.insert(id, tx.clone());
                    members.len()
                };
                if !joined.contains(&room) {
                    joined.push(room.clone());
                }
                let reply = format!(
                    r#"{{"event":"joined","payload":{{"room":{},"size":{size}}}}}"#,
                    serde_json::to_string(&room).unwrap_or_default()
                );
                let _ = tx.send(Utf8Bytes::from(reply));
            }
            "publish" => {
                let Ok(RoomField { room }) = serde_json::from_str(frame.payload.get()) else {
                    continue;
                };
                // Serialized once; every member gets a clone of the same bytes.
                let out = Utf8Bytes::from(format!(
                    r#"{{"event":"msg","payload":{}}}"#,
                    frame.payload.get()
                ));
                let rooms = hub.rooms.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(members) = rooms.get(&room) {
                    for member in members.values() {
                        let _ = member.send(out.clone());
                    }
                }
            }
            "echo" => {
                let payload = frame.payload.get();
                let out = match frame.ack {
                    Some(ack) => format!(r#"{{"event":"__ack","ack":{ack},"payload":{payload}}}"#),
                    None => format!(r#"{{"event":"echoed","payload":{payload}}}"#),
                };
                let _ = tx.send(Utf8Bytes::from(out));
            }
            _ => {}
        }
    }
    {
        let mut rooms = hub.rooms.lock().unwrap_or_else(|e| e.into_inner());
        for room in &joined {
            if let Some(members) = rooms.get_mut(room) {
                members.remove(&id);
                if members.is_empty() {
                    rooms.remove(room);
                }
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    liweb_benches::raise_open_file_limit();
    let addr = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("LIWEB_ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let app = Router::new()
        .route("/ws", get(ws))
        .with_state(Arc::new(Hub::default()));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;
    // All benchmark servers disable Nagle's algorithm on every connection,
    // so small frames are not held back waiting for an ACK.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    println!("listening on {local}");
    axum::serve(listener, app).await
}
