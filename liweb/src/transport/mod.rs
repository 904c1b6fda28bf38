//! The seam between a transport and liweb's connections, for writing a
//! transport of your own.
//!
//! A transport moves bytes; liweb does everything else. liweb ships two
//! transports built on this seam: WebSocket ([`Server::ws_route`], feature
//! `ws`) and length-prefixed TCP ([`Server::serve_tcp`], feature `tcp`). A
//! third one (QUIC, a Unix socket, an in-process pipe) does the same four
//! steps:
//!
//! 1. **Admit.** [`Server::admit`] takes a place among the server's
//!    connections, or refuses during [`Server::shutdown`] and at
//!    [`Config::max_connections`](crate::Config::max_connections). Refuse
//!    the peer the way your protocol can (an HTTP status, a close frame).
//! 2. **Describe.** Build the connection's [`ConnMeta`] with
//!    [`ConnMeta::builder`]: its [`Transport`](crate::Transport), its
//!    codec (negotiated however your protocol likes; JSON when in doubt),
//!    and what is known of the peer (address, headers, path, query).
//!    [`Server::check_upgrade`] runs the application's
//!    [`on_upgrade`](crate::ServerBuilder::on_upgrade) hook on it.
//! 3. **Adapt.** Turn what the peer sends into a
//!    `Stream<Item = `[`Inbound`]`>` and what liweb sends into a
//!    `Sink<`[`Outbound`]`>`. Each data frame holds exactly one message in
//!    the connection's codec: text for JSON, binary for MessagePack and
//!    bincode.
//! 4. **Run.** [`Admission::run`] runs the connection to its end:
//!    authentication, `on_connect`, dispatch in arrival order, the outbound
//!    queue, heartbeats, timeouts, and `on_disconnect` once. It gives the
//!    place back when it returns.
//!
//! What the two halves must do:
//!
//! | the peer sends                           | the stream yields |
//! |------------------------------------------|-------------------|
//! | a message                                | [`Inbound::Frame`] with [`InboundFrame::text`] or [`InboundFrame::binary`] |
//! | the answer to a heartbeat ping           | [`Inbound::Pong`] |
//! | a close, with its code and reason        | [`Inbound::Close`]; then the stream may end |
//! | bytes that break the protocol            | [`Inbound::Error`] with the close code to answer with; nothing more is read |
//! | nothing more (reset, I/O error)          | [`Inbound::Reset`], or the end of the stream |
//!
//! | liweb sends            | the sink writes |
//! |------------------------|-----------------|
//! | [`Outbound::Frame`]    | one message: [`Frame::as_bytes`], text when [`Frame::is_text`] |
//! | [`Outbound::Ping`]     | a heartbeat ping the peer answers with a pong |
//! | [`Outbound::Close`]    | a close with the code and reason; it is the last item |
//!
//! liweb feeds the sink several items and then flushes once, so buffer in
//! `start_send` and write in `poll_flush`. Dropping the sink and the stream
//! must close the underlying connection.
//!
//! The two built-in transports take exactly these steps, in this order:
//! WebSocket admits before it checks the `Origin` and negotiates the codec
//! subprotocol (refusals are `403`, `400`, `503` or the hook's status), TCP
//! admits before it reads `HELLO` (refusals are a `CLOSE` frame). The Rust
//! client speaks the same items from the other side: it reads what a
//! server's sink is given and writes what a server's stream yields.
//!
//! ```no_run
//! # use liweb::prelude::*;
//! # use liweb::transport::{Inbound, Outbound};
//! # #[derive(Events)] enum In { Ping }
//! # #[derive(Events)] enum Out { Pong }
//! # async fn serve(
//! #     server: Server<In, Out>,
//! #     reader: impl futures_util::Stream<Item = Inbound> + Unpin + Send,
//! #     writer: impl futures_util::Sink<Outbound> + Unpin + Send + 'static,
//! # ) {
//! let Ok(admission) = server.admit() else {
//!     return; // shutting down or full: refuse the peer
//! };
//! let meta = ConnMeta::builder(liweb::Transport::Other("pipe"), liweb::CodecKind::Json).build();
//! if server.check_upgrade(&meta).await.is_err() {
//!     return; // the application's hook refused
//! }
//! admission.run(meta, reader, writer).await;
//! # }
//! ```

use std::fmt;

use futures_util::{Sink, Stream};

pub use self::item::{Frame, Inbound, InboundFrame, Outbound};
use crate::{
    conn::meta::ConnMeta,
    event::Events,
    server::{Server, live::LiveSlot},
    session,
};

#[cfg(any(feature = "ws", feature = "tcp"))]
mod accept;
pub(crate) mod item;
#[cfg(feature = "ws")]
pub(crate) mod serve;
#[cfg(feature = "tcp")]
pub mod tcp;
#[cfg(feature = "ws")]
pub(crate) mod ws;

/// How long a connection the server ended before its peer's close lingers,
/// reading what the peer still sends.
#[cfg(any(feature = "ws", feature = "tcp"))]
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// The most bytes a lingering connection reads (and drops): more than the
/// kernel's socket buffers can hold in flight between the two ends (a few
/// MiB each way on Linux), so a flooding peer's backlog does not stop the
/// linger short and reset the close away. Reading costs no memory.
#[cfg(any(feature = "ws", feature = "tcp"))]
const LINGER_BYTES: usize = 16 * 1024 * 1024;

/// Reads and drops what the peer still sends until it closes too, for at
/// most [`LINGER`] and [`LINGER_BYTES`]. A socket closed with input unread
/// is reset, and a reset can destroy the close frame just written before
/// the peer reads it: a client that pipelined a frame too large after its
/// last good one would see a reset instead of the close code.
#[cfg(any(feature = "ws", feature = "tcp"))]
pub(crate) async fn linger<R: tokio::io::AsyncRead + Unpin>(half: &mut R) {
    let drain = async {
        let mut scratch = [0u8; 4096];
        let mut left = LINGER_BYTES;
        while left > 0 {
            let mut buf = tokio::io::ReadBuf::new(&mut scratch);
            let read =
                std::future::poll_fn(|cx| std::pin::Pin::new(&mut *half).poll_read(cx, &mut buf))
                    .await;
            if read.is_err() || buf.filled().is_empty() {
                return;
            }
            left = left.saturating_sub(buf.filled().len());
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// Why [`Server::admit`] refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refused {
    /// [`Server::shutdown`] has begun. WebSocket answers `503`; TCP closes
    /// with [`CloseCode::GoingAway`](crate::CloseCode::GoingAway).
    #[error("the server is shutting down")]
    ShuttingDown,
    /// [`Config::max_connections`](crate::Config::max_connections) are
    /// open. WebSocket answers `503`; TCP closes with code 1013 (try again
    /// later).
    #[error("too many connections")]
    Full,
}

/// A place among a server's connections, taken by [`Server::admit`]; the
/// place is given back when it is dropped or when [`Admission::run`] ends.
#[must_use = "an admission holds a place until it runs or is dropped"]
pub struct Admission<In, Out> {
    server: Server<In, Out>,
    slot: LiveSlot,
}

impl<In, Out> fmt::Debug for Admission<In, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission").finish_non_exhaustive()
    }
}

impl<In: Events, Out: Events> Admission<In, Out> {
    /// Runs the connection to its end (see the [module docs](self)), then
    /// gives its place back.
    pub async fn run<R, W>(self, meta: ConnMeta, reader: R, writer: W)
    where
        R: Stream<Item = Inbound> + Unpin + Send,
        W: Sink<Outbound> + Unpin + Send + 'static,
    {
        let Self { server, slot } = self;
        session::run(server, meta, reader, writer).await;
        drop(slot);
    }
}

impl<In: Events, Out: Events> Server<In, Out> {
    /// Takes a place for a new connection of any transport: refused during
    /// [`Server::shutdown`] and at
    /// [`Config::max_connections`](crate::Config::max_connections) (each
    /// counted in [`Server::stats`]). See the [`transport`](self) module.
    pub fn admit(&self) -> Result<Admission<In, Out>, Refused> {
        let stats = &self.inner.stats;
        if self.is_shutting_down() {
            stats
                .rejected_shutdown
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(Refused::ShuttingDown);
        }
        let Some(slot) = self.inner.live.acquire(self.config().max_connections) else {
            stats
                .rejected_full
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!("connection refused: connection limit reached");
            return Err(Refused::Full);
        };
        Ok(Admission {
            server: self.clone(),
            slot,
        })
    }

    /// Runs the application's
    /// [`on_upgrade`](crate::ServerBuilder::on_upgrade) hook on a new
    /// connection's metadata: `Ok` when there is no hook or it accepts; a
    /// hook that panics refuses with `500`. Refusals are counted in
    /// [`Server::stats`].
    pub async fn check_upgrade(&self, meta: &ConnMeta) -> Result<(), crate::UpgradeRejection> {
        match self.run_upgrade_hook(meta).await {
            Some(rejection) => Err(rejection),
            None => Ok(()),
        }
    }
}
