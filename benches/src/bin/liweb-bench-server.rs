//! The liweb server the load generator (`loadgen`) measures: the chat-like
//! handler (receive an event, emit it to the room), served on
//! `/ws` with liweb's defaults (4 KiB read buffer, 1 MiB outbound queue).
//!
//! ```text
//! liweb-bench-server [ADDR]        # or LIWEB_ADDR=...; default 127.0.0.1:0
//! ```
//!
//! Prints `listening on ADDR` on stdout once bound. Wire contract (the raw
//! baseline, `raw-bench-server`, speaks the same one):
//! - `join {"room"}`: joins the room, replies `joined {"room", "size"}`;
//! - `publish {"room", "ts", "seq", "pad"?}`: emits `msg` with the same
//!   payload to every member of the room; the publisher gets it only if it
//!   is a member itself (the load generator's publisher is not);
//! - `echo {"ts", "seq"}`, sent as a request with an ack id
//!   (`{"event":"echo","payload":..,"ack":17}`): the handler's return value
//!   goes back as `{"event":"__ack","ack":17,"payload":{"ts","seq"}}`.

use liweb::prelude::*;
use serde::{Deserialize, Serialize};

const CHANNEL: &str = "bench";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RoomName {
    room: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Publish {
    room: String,
    ts: u64,
    seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pad: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Echo {
    ts: u64,
    seq: u64,
}

#[derive(Debug, Events)]
enum BenchIn {
    Join(RoomName),
    Publish(Publish),
    Echo(Echo),
}

#[derive(Debug, Events)]
enum BenchOut {
    Joined { room: String, size: usize },
    Msg(Publish),
}

type BenchServer = Server<BenchIn, BenchOut>;

#[liweb::handler(BenchIn::Join)]
async fn on_join(conn: Conn<BenchOut>, server: BenchServer, join: RoomName) {
    let room = server.channel(CHANNEL).room(&join.room);
    let _ = room.join(&conn).await;
    let _ = conn.emit(BenchOut::Joined {
        room: join.room,
        size: room.size(),
    });
}

#[liweb::handler(BenchIn::Publish)]
async fn on_publish(
    _conn: Conn<BenchOut>,
    server: BenchServer,
    publish: Publish,
) -> Result<(), liweb::EncodeError> {
    if let Some(room) = server.channel(CHANNEL).get(&publish.room) {
        room.emit(BenchOut::Msg(publish))?;
    }
    Ok(())
}

/// Answers the request with its own payload: the reply goes back as
/// `{"event":"__ack","ack":id,"payload":..}`.
#[liweb::handler(BenchIn::Echo, out = BenchOut)]
async fn on_echo(echo: Echo) -> Result<Echo, std::convert::Infallible> {
    Ok(echo)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    liweb_benches::raise_open_file_limit();
    let addr = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("LIWEB_ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let server = BenchServer::builder()
        .handlers(liweb::handlers![exhaustive BenchIn => on_join, on_publish, on_echo])
        // A load generator is one hostile-looking client: lift the defaults
        // a public server runs with.
        .max_events_per_second(None)
        .max_connections(None)
        .build();
    let app = axum::Router::new().route("/ws", server.ws_route());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;
    println!("listening on {local}");
    // What users run: `liweb::serve` (like the baselines' servers it sets
    // TCP_NODELAY on every connection), with its socket cap lifted: the idle
    // scenario alone opens 10,000 connections, the default cap.
    liweb::serve(listener, app).max_connections(1_000_000).await
}
