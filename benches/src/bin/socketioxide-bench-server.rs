//! The socketioxide server the load generator (`loadgen`) compares liweb
//! with: the same chat-like handlers as `liweb-bench-server`, written the
//! way socketioxide's documentation writes them, served by socketioxide's
//! tower layer on axum, on the default namespace `/` at `/socket.io/`
//! (socket.io v5 over engine.io v4; the load generator uses the WebSocket
//! transport directly, without HTTP long-polling first).
//!
//! ```text
//! socketioxide-bench-server [ADDR] # or LIWEB_ADDR=...; default 127.0.0.1:0
//! ```
//!
//! Prints `listening on ADDR` on stdout once bound. Events (socket.io
//! frames, `42["event",data]`):
//! - `join {"room"}`: joins the room, replies `joined {"room", "size"}`;
//! - `publish {"room", "ts", "seq", "pad"?}`: emits `msg` with the same
//!   payload to every member of the room (`io.to(room).emit`, which encodes
//!   the packet once); the publisher is not a member;
//! - `echo {"ts", "seq"}`: answers the request's ack with the same payload
//!   (`43<id>[{"ts","seq"}]`, [`AckSender`]); a request without an ack id
//!   gets no reply.
//!
//! The handlers are registered in a connect middleware (see
//! [`register_handlers`] for why). Configuration differs from
//! socketioxide's defaults in one place: the
//! per-connection packet buffer holds 16,384 packets instead of 128, so a
//! burst of a few hundred messages queues up as it does in liweb (1 MiB per
//! connection, about 13,000 such frames) and in the raw server (unbounded)
//! instead of being dropped with `InternalChannelFull`. The buffer is a
//! tokio channel, whose blocks are allocated as they fill, so an idle
//! connection does not pay for the larger bound. The WebSocket read buffer
//! is socketioxide's default, 4 KiB, as in the other two servers.

use std::convert::Infallible;

use axum::serve::ListenerExt;
use serde::{Deserialize, Serialize};
use socketioxide::{
    SocketIo,
    extract::{AckSender, Data, SocketRef},
    handler::ConnectHandler,
};

/// Packets one connection may have queued before emits to it fail.
const MAX_BUFFERED_PACKETS: usize = 16_384;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RoomName {
    room: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Joined {
    room: String,
    size: usize,
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

/// Registers the event handlers. This runs as a connect middleware, not in
/// the connect handler as socketioxide's examples do: socketioxide sends the
/// namespace CONNECT reply (`40{"sid":..}`) first and then spawns the
/// connect handler as a task, so a client that emits as soon as it is
/// connected (here, `join`) can arrive before the handlers exist, and the
/// event is dropped without a trace. Under load (1,000 clients joining at
/// once) that happened to a few clients in most runs. Middlewares are
/// awaited before the CONNECT reply.
async fn register_handlers(socket: SocketRef) -> Result<(), Infallible> {
    socket.on("join", on_join);
    socket.on("publish", on_publish);
    socket.on("echo", on_echo);
    Ok(())
}

async fn on_connect() {}

async fn on_join(socket: SocketRef, Data(join): Data<RoomName>) {
    socket.join(join.room.clone());
    let size = socket.within(join.room.clone()).sockets().len();
    let _ = socket.emit(
        "joined",
        &Joined {
            room: join.room,
            size,
        },
    );
}

async fn on_publish(io: SocketIo, Data(publish): Data<Publish>) {
    let _ = io.to(publish.room.clone()).emit("msg", &publish).await;
}

async fn on_echo(Data(echo): Data<Echo>, ack: AckSender) {
    let _ = ack.send(&echo);
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    liweb_benches::raise_open_file_limit();
    let addr = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("LIWEB_ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let (layer, io) = SocketIo::builder()
        .max_buffer_size(MAX_BUFFERED_PACKETS)
        .build_layer();
    io.ns("/", on_connect.with(register_handlers));
    let app = axum::Router::new().layer(layer);
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
