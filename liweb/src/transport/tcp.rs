//! The TCP transport (feature `tcp`): length-prefixed frames over a plain
//! TCP connection, for clients that are not browsers.
//!
//! ```no_run
//! # use liweb::prelude::*;
//! # #[derive(Events)] enum In { Ping }
//! # #[derive(Events)] enum Out { Pong }
//! # async fn run(server: Server<In, Out>) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:4000").await?;
//! // The same server can serve WebSocket clients at the same time.
//! server.serve_tcp(listener).await
//! # }
//! ```
//!
//! Every frame is a 4-byte big-endian length, then that many bytes: one
//! byte naming the frame's kind and the kind's body.
//!
//! | kind | name      | body |
//! |------|-----------|------|
//! | `1`  | `HELLO`   | a codec name: `liweb.json`, `liweb.msgpack`, `liweb.bincode` (empty: JSON) |
//! | `2`  | `MESSAGE` | one message in the connection's codec, as in a WebSocket frame |
//! | `3`  | `PING`    | empty; answered with `PONG` |
//! | `4`  | `PONG`    | empty |
//! | `5`  | `CLOSE`   | a 2-byte big-endian close code, then a UTF-8 reason |
//!
//! The client opens with `HELLO` naming its codec; the server answers
//! `HELLO` with the same name and the connection is open, or `CLOSE` when
//! it refuses (see the protocol document for the codes). The length counts
//! the kind byte, so a message may be at most
//! [`Config::max_frame_size`](crate::Config::max_frame_size) bytes; a
//! longer length closes the connection with
//! [`CloseCode::TooLarge`] before the frame is read. The full description,
//! with the close handshake and every close code, is in `docs/PROTOCOL.md`.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::BytesMut;
use futures_util::{SinkExt, Stream, StreamExt};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
};
use tokio_util::codec::{Encoder, FramedRead, FramedWrite};

use crate::{
    codec::CodecKind,
    conn::meta::{ConnMeta, Transport},
    event::Events,
    protocol::CloseCode,
    server::Server,
    transport::{
        Refused,
        accept::{Backoff, is_connection_error},
        item::{Inbound, InboundFrame, Outbound},
        linger,
    },
};

pub(crate) mod wire;
use wire::{FrameError, WireCodec, WireFrame, WireOut};

impl Encoder<Outbound> for WireCodec {
    type Error = io::Error;

    fn encode(&mut self, item: Outbound, dst: &mut BytesMut) -> io::Result<()> {
        match &item {
            Outbound::Frame(frame) => self.write(WireOut::Message(frame.as_bytes()), dst),
            Outbound::Ping => self.write(WireOut::Ping, dst),
            Outbound::Close(code, reason) => self.write(WireOut::Close(code.as_u16(), reason), dst),
        }
    }
}

/// Serves a [`Server`] over TCP; [`Server::serve_tcp`] is the short way.
///
/// ```no_run
/// # use liweb::prelude::*;
/// # use std::time::Duration;
/// # #[derive(Events)] enum In { Ping }
/// # #[derive(Events)] enum Out { Pong }
/// # async fn run(server: Server<In, Out>) -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:4000").await?;
/// liweb::tcp::TcpTransport::new(server)
///     .handshake_timeout(Duration::from_secs(2))
///     .serve(listener)
///     .await
/// # }
/// ```
pub struct TcpTransport<In, Out> {
    server: Server<In, Out>,
    handshake_timeout: Duration,
}

impl<In, Out> std::fmt::Debug for TcpTransport<In, Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpTransport")
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl<In, Out> Clone for TcpTransport<In, Out> {
    fn clone(&self) -> Self {
        Self {
            server: self.server.clone(),
            handshake_timeout: self.handshake_timeout,
        }
    }
}

impl<In: Events, Out: Events> TcpTransport<In, Out> {
    /// The TCP transport of `server`.
    pub fn new(server: Server<In, Out>) -> Self {
        Self {
            server,
            handshake_timeout: Duration::from_secs(10),
        }
    }

    /// How long a new connection may take to send its `HELLO` (default
    /// 10 s); after it the connection is dropped.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Accepts connections from `listener` and runs each in a task of its
    /// own. Runs until dropped (it does not end by itself; when `accept`
    /// fails, out of file descriptors for one, the error is logged, at most
    /// a line per 5 s, and retried after a wait of 5 ms doubling up to
    /// 250 ms, and the recovery is logged); connections already accepted
    /// keep running after that, until they end or [`Server::shutdown`]
    /// closes them.
    pub async fn serve(self, listener: TcpListener) -> io::Result<()> {
        let mut backoff = Backoff::default();
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) if is_connection_error(&err) => continue,
                Err(err) => {
                    // Out of file descriptors and the like: wait, then
                    // carry on, rather than spin or stop serving.
                    tokio::time::sleep(backoff.failed(&err)).await;
                    continue;
                }
            };
            backoff.recovered();
            let transport = self.clone();
            tokio::spawn(async move { transport.serve_connection(stream, peer).await });
        }
    }

    /// Runs one accepted TCP connection to its end: the handshake, then the
    /// connection. For listeners of your own (a socket from systemd, a
    /// listener with its own accept policy).
    pub async fn serve_connection(&self, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        self.serve_halves(read, write, Some(peer)).await;
    }

    /// Runs one connection over any byte stream to its end, with the same
    /// frames as over TCP: a TLS stream (`tokio-rustls`' `TlsStream`), a
    /// Unix socket, an in-memory pipe. `peer` becomes the connection's
    /// [`remote_addr`](crate::ConnMeta::remote_addr) when there is one.
    ///
    /// ```no_run
    /// # use liweb::{prelude::*, tcp::TcpTransport};
    /// # #[derive(Events)] enum In { Ping }
    /// # #[derive(Events)] enum Out { Pong }
    /// # async fn run(server: Server<In, Out>) -> std::io::Result<()> {
    /// let transport = TcpTransport::new(server);
    /// let listener = tokio::net::UnixListener::bind("/run/app/liweb.sock")?;
    /// loop {
    ///     let (stream, _) = listener.accept().await?;
    ///     let transport = transport.clone();
    ///     tokio::spawn(async move { transport.serve_stream(stream, None).await });
    /// }
    /// # }
    /// ```
    pub async fn serve_stream<S>(&self, stream: S, peer: Option<SocketAddr>)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read, write) = tokio::io::split(stream);
        self.serve_halves(read, write, peer).await;
    }

    async fn serve_halves<R, W>(&self, read: R, write: W, peer: Option<SocketAddr>)
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let config = self.server.config();
        let mut reader = FramedRead::with_capacity(
            read,
            WireCodec::new(config.max_frame_size),
            config.read_buffer_size.max(64),
        );
        let mut writer = FramedWrite::new(write, WireCodec::new(config.max_frame_size));

        let admission = match self.server.admit() {
            Ok(admission) => admission,
            Err(refused) => {
                let code = match refused {
                    Refused::ShuttingDown => CloseCode::GoingAway.as_u16(),
                    _ => wire::TRY_AGAIN_LATER,
                };
                refuse(&mut reader, writer, code, &refused.to_string()).await;
                return;
            }
        };
        // Every refusal below gives the connection's slot back before it
        // lingers for the peer's close: a refused connection is not live.
        let hello = tokio::time::timeout(self.handshake_timeout, reader.next()).await;
        let codec = match hello {
            Ok(Some(Ok(WireFrame::Hello(name)))) => match codec_named(&name) {
                Some(codec) => codec,
                None => {
                    let asked = String::from_utf8_lossy(&name);
                    let message = format!("unsupported codec: {asked}");
                    self.server
                        .inner
                        .stats
                        .rejected_subprotocol
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    drop(admission);

                    refuse(
                        &mut reader,
                        writer,
                        CloseCode::Unsupported.as_u16(),
                        &message,
                    )
                    .await;
                    return;
                }
            },
            Ok(Some(Ok(_))) => {
                let message = "the first frame must be HELLO";
                drop(admission);

                refuse(
                    &mut reader,
                    writer,
                    CloseCode::ProtocolError.as_u16(),
                    message,
                )
                .await;
                return;
            }
            Ok(Some(Err(FrameError::TooLarge(_)))) => {
                drop(admission);

                refuse(
                    &mut reader,
                    writer,
                    CloseCode::TooLarge.as_u16(),
                    "frame too large",
                )
                .await;
                return;
            }
            Ok(Some(Err(FrameError::Malformed(message)))) => {
                drop(admission);

                refuse(
                    &mut reader,
                    writer,
                    CloseCode::ProtocolError.as_u16(),
                    &message,
                )
                .await;
                return;
            }
            // Gone, broken or silent: there is no one to answer.
            Ok(Some(Err(_)) | None) | Err(_) => return,
        };
        let mut meta = ConnMeta::builder(Transport::Tcp, codec);
        if let Some(peer) = peer {
            meta = meta.remote_addr(peer);
        }
        let meta = meta.build();
        if let Err(rejection) = self.server.check_upgrade(&meta).await {
            let code = CloseCode::PolicyViolation.as_u16();
            drop(admission);

            refuse(&mut reader, writer, code, &rejection.message).await;
            return;
        }
        if send_wire(&mut writer, WireOut::Hello(codec.subprotocol()))
            .await
            .is_err()
        {
            return;
        }
        let mut reader = Reader {
            frames: reader,
            text: codec.is_text(),
            done: false,
        };
        admission.run(meta, &mut reader, writer).await;
        // The writing direction is closed by now. Input left unread would
        // make closing the socket a reset, which can destroy the `CLOSE`
        // just written before the peer reads it.
        linger(reader.frames.get_mut()).await;
    }
}

type Writer<W> = FramedWrite<W, WireCodec>;

/// Writes one frame of the handshake and flushes it.
async fn send_wire<W: AsyncWrite + Unpin>(
    writer: &mut Writer<W>,
    item: WireOut<'_>,
) -> io::Result<()> {
    let mut buf = BytesMut::new();
    writer.encoder().write(item, &mut buf)?;
    writer.write_buffer_mut().extend_from_slice(&buf);
    SinkExt::<Outbound>::flush(writer).await
}

/// Sends `CLOSE` with `code` and `reason`, ends the writing direction,
/// and lingers (see [`linger`]).
async fn refuse<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    reader: &mut FramedRead<R, WireCodec>,
    mut writer: Writer<W>,
    code: u16,
    reason: &str,
) {
    tracing::debug!(code, reason, "TCP connection refused");
    let closing = async {
        if send_wire(&mut writer, WireOut::Close(code, reason))
            .await
            .is_err()
        {
            return false;
        }
        let _ = SinkExt::<Outbound>::close(&mut writer).await;
        true
    };
    if let Ok(true) = tokio::time::timeout(CLOSE_WRITE, closing).await {
        linger(reader.get_mut()).await;
    }
}

/// How long writing a refusal's `CLOSE` may take.
const CLOSE_WRITE: Duration = Duration::from_secs(1);

/// The codec a `HELLO` names; an empty name is JSON.
fn codec_named(name: &[u8]) -> Option<CodecKind> {
    if name.is_empty() {
        return Some(CodecKind::Json);
    }
    CodecKind::from_subprotocol(std::str::from_utf8(name).ok()?)
}

/// The reading half as [`Inbound`] items.
struct Reader<R> {
    frames: FramedRead<R, WireCodec>,
    /// Whether messages are text (JSON) and so must be UTF-8.
    text: bool,
    /// Set after a close or an error: nothing more is read.
    done: bool,
}

impl<R: AsyncRead + Unpin> Stream for Reader<R> {
    type Item = Inbound;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Inbound>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            let Some(item) = std::task::ready!(self.frames.poll_next_unpin(cx)) else {
                return Poll::Ready(None);
            };
            let inbound = match item {
                Ok(WireFrame::Message(bytes)) if self.text => {
                    match InboundFrame::text_from_utf8(bytes) {
                        Some(frame) => Inbound::Frame(frame),
                        None => Inbound::Error(
                            CloseCode::BadFrame,
                            "message is not valid UTF-8".to_owned(),
                        ),
                    }
                }
                Ok(WireFrame::Message(bytes)) => Inbound::Frame(InboundFrame::binary(bytes)),
                // The server pings; a client's ping needs no answer.
                Ok(WireFrame::Ping) => continue,
                Ok(WireFrame::Pong) => Inbound::Pong,
                Ok(WireFrame::Close(close)) => {
                    // The peer is done: the connection ends once what it
                    // sent before is handled.
                    self.done = true;
                    Inbound::Close(close.map(|(code, reason)| (CloseCode::from(code), reason)))
                }
                Ok(WireFrame::Hello(_)) => Inbound::Error(
                    CloseCode::ProtocolError,
                    "HELLO after the handshake".to_owned(),
                ),
                Err(FrameError::TooLarge(max)) => Inbound::Error(
                    CloseCode::TooLarge,
                    format!("frame larger than {max} bytes"),
                ),
                Err(FrameError::Truncated) => Inbound::Error(
                    CloseCode::ProtocolError,
                    "the stream ended inside a frame".to_owned(),
                ),
                Err(FrameError::Malformed(message)) => {
                    Inbound::Error(CloseCode::ProtocolError, message)
                }
                Err(FrameError::Io(err)) => Inbound::Reset(err.to_string()),
            };
            if matches!(inbound, Inbound::Error(..) | Inbound::Reset(_)) {
                self.done = true;
            }
            return Poll::Ready(Some(inbound));
        }
    }
}

impl<In: Events, Out: Events> Server<In, Out> {
    /// Serves this server's connections over TCP on `listener` (feature
    /// `tcp`); see [`tcp`](crate::tcp) for the wire format and
    /// [`TcpTransport`] for the settings. Runs until dropped. The same
    /// server can serve WebSocket clients at the same time, and one room
    /// can hold clients of both.
    pub async fn serve_tcp(&self, listener: TcpListener) -> io::Result<()> {
        TcpTransport::new(self.clone()).serve(listener).await
    }
}
