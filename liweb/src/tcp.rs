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

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, Stream, StreamExt};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
};
use tokio_util::codec::{Decoder, Encoder, FramedRead, FramedWrite, LengthDelimitedCodec};

use crate::{
    codec::CodecKind,
    conn::{ConnMeta, Transport},
    event::Events,
    protocol::CloseCode,
    server::Server,
    transport::{Inbound, InboundFrame, Outbound, Refused},
};

/// The frame kinds and the codec of the TCP wire format, shared with the
/// Rust client.
pub(crate) mod wire {
    use super::*;

    pub(crate) const HELLO: u8 = 1;
    pub(crate) const MESSAGE: u8 = 2;
    pub(crate) const PING: u8 = 3;
    pub(crate) const PONG: u8 = 4;
    pub(crate) const CLOSE: u8 = 5;

    /// Close code for a refusal at the connection limit: "try again later".
    pub(crate) const TRY_AGAIN_LATER: u16 = 1013;

    /// One decoded frame.
    #[derive(Debug)]
    pub(crate) enum WireFrame {
        Hello(Bytes),
        Message(Bytes),
        Ping,
        Pong,
        Close(Option<(u16, String)>),
    }

    /// Why a frame could not be read.
    #[derive(Debug)]
    pub(crate) enum FrameError {
        /// The length prefix is over the maximum; nothing of the frame was read.
        TooLarge(usize),
        /// The stream ended inside a frame.
        Truncated,
        /// An empty frame, or an unknown kind.
        Malformed(String),
        /// The socket failed.
        Io(io::Error),
    }

    impl From<io::Error> for FrameError {
        fn from(err: io::Error) -> Self {
            Self::Io(err)
        }
    }

    /// One item to write.
    #[derive(Debug)]
    pub(crate) enum WireOut<'a> {
        Hello(&'a str),
        Message(&'a [u8]),
        Ping,
        /// Only clients answer pings.
        #[cfg_attr(not(feature = "client"), allow(dead_code))]
        Pong,
        Close(u16, &'a str),
    }

    /// Length-prefixed frames with a kind byte; `max` is the largest
    /// message body it reads.
    #[derive(Debug)]
    pub(crate) struct WireCodec {
        lengths: LengthDelimitedCodec,
        max: usize,
        /// Whether a length has been read whose frame has not: the inner
        /// codec consumes the 4 length bytes first, so an input that ends
        /// there leaves nothing behind to show it was cut.
        in_frame: bool,
    }

    impl WireCodec {
        pub(crate) fn new(max: usize) -> Self {
            let lengths = LengthDelimitedCodec::builder()
                .length_field_length(4)
                .max_frame_length(max.saturating_add(1))
                .new_codec();
            Self {
                lengths,
                max,
                in_frame: false,
            }
        }

        pub(crate) fn write(&self, item: WireOut<'_>, dst: &mut BytesMut) -> io::Result<()> {
            let (kind, head, body): (u8, Option<u16>, &[u8]) = match item {
                WireOut::Hello(name) => (HELLO, None, name.as_bytes()),
                WireOut::Message(bytes) => (MESSAGE, None, bytes),
                WireOut::Ping => (PING, None, &[]),
                WireOut::Pong => (PONG, None, &[]),
                WireOut::Close(code, reason) => (CLOSE, Some(code), reason.as_bytes()),
            };
            let len = 1 + head.map_or(0, |_| 2) + body.len();
            let len = u32::try_from(len).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, "frame longer than 4 GiB")
            })?;
            dst.reserve(4 + len as usize);
            dst.put_u32(len);
            dst.put_u8(kind);
            if let Some(code) = head {
                dst.put_u16(code);
            }
            dst.extend_from_slice(body);
            Ok(())
        }
    }

    impl Decoder for WireCodec {
        type Item = WireFrame;
        type Error = FrameError;

        fn decode(&mut self, src: &mut BytesMut) -> Result<Option<WireFrame>, FrameError> {
            let before = src.len();
            let frame = match self.lengths.decode(src) {
                Ok(Some(frame)) => {
                    self.in_frame = false;
                    frame
                }
                Ok(None) => {
                    self.in_frame |= src.len() < before;
                    return Ok(None);
                }
                Err(err)
                    if err.get_ref().is_some_and(|inner| {
                        inner.is::<tokio_util::codec::LengthDelimitedCodecError>()
                    }) =>
                {
                    return Err(FrameError::TooLarge(self.max));
                }
                Err(err) => return Err(FrameError::Io(err)),
            };
            let mut frame = frame.freeze();
            if frame.is_empty() {
                return Err(FrameError::Malformed("empty frame".to_owned()));
            }
            let kind = frame.get_u8();
            // Bodies the format does not allow are refused rather than
            // dropped: a peer that sends them does not speak this protocol.
            Ok(Some(match kind {
                HELLO => WireFrame::Hello(frame),
                MESSAGE => WireFrame::Message(frame),
                PING | PONG if !frame.is_empty() => {
                    let name = if kind == PING { "PING" } else { "PONG" };
                    return Err(FrameError::Malformed(format!("a {name} frame has no body")));
                }
                PING => WireFrame::Ping,
                PONG => WireFrame::Pong,
                CLOSE if frame.len() >= 2 => {
                    let code = frame.get_u16();
                    WireFrame::Close(Some((code, String::from_utf8_lossy(&frame).into_owned())))
                }
                CLOSE if frame.is_empty() => WireFrame::Close(None),
                CLOSE => {
                    return Err(FrameError::Malformed(
                        "a CLOSE body is a 2-byte code and a reason".to_owned(),
                    ));
                }
                other => {
                    return Err(FrameError::Malformed(format!(
                        "unknown frame kind {other:#04x}"
                    )));
                }
            }))
        }

        fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<WireFrame>, FrameError> {
            match self.decode(src)? {
                Some(frame) => Ok(Some(frame)),
                None if src.is_empty() && !self.in_frame => Ok(None),
                None => Err(FrameError::Truncated),
            }
        }
    }
}

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
    /// own. Runs until dropped (it does not end by itself; accept errors
    /// are logged and retried); connections already accepted keep running
    /// after that, until they end or [`Server::shutdown`] closes them.
    pub async fn serve(self, listener: TcpListener) -> io::Result<()> {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: wait, then
                    // carry on, rather than spin or stop serving.
                    tracing::warn!(%err, "accepting a TCP connection failed");
                    if !is_connection_error(&err) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            };
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
        let _ = tokio::time::timeout(LINGER, drain(reader.frames.get_mut())).await;
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
/// and reads (and drops) what the peer still sends until it closes too, for
/// at most a second: a socket closed with unread input is reset, and a
/// reset can destroy the `CLOSE` before the peer reads it.
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
            return;
        }
        let _ = SinkExt::<Outbound>::close(&mut writer).await;
        drain(reader.get_mut()).await;
    };
    let _ = tokio::time::timeout(LINGER, closing).await;
}

/// How long a connection that is done lingers to read the rest of what its
/// peer sends.
const LINGER: Duration = Duration::from_secs(1);

/// Reads and drops input until the peer closes or the read fails.
async fn drain<R: AsyncRead + Unpin>(half: &mut R) {
    let mut scratch = [0u8; 1024];
    loop {
        let mut buf = tokio::io::ReadBuf::new(&mut scratch);
        let read = std::future::poll_fn(|cx| Pin::new(&mut *half).poll_read(cx, &mut buf)).await;
        if read.is_err() || buf.filled().is_empty() {
            return;
        }
    }
}

/// The codec a `HELLO` names; an empty name is JSON.
fn codec_named(name: &[u8]) -> Option<CodecKind> {
    if name.is_empty() {
        return Some(CodecKind::Json);
    }
    CodecKind::from_subprotocol(std::str::from_utf8(name).ok()?)
}

fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
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

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use tokio_util::codec::Decoder;

    use super::wire::{FrameError, WireCodec, WireFrame, WireOut};

    fn written(item: WireOut<'_>) -> BytesMut {
        let mut buf = BytesMut::new();
        WireCodec::new(16).write(item, &mut buf).unwrap();
        buf
    }

    #[test]
    fn frames_are_a_length_a_kind_and_a_body() {
        assert_eq!(&written(WireOut::Ping)[..], [0, 0, 0, 1, 3]);
        assert_eq!(
            &written(WireOut::Message(b"hi"))[..],
            [0, 0, 0, 3, 2, b'h', b'i']
        );
        assert_eq!(
            &written(WireOut::Close(1009, "big"))[..],
            [0, 0, 0, 6, 5, 0x03, 0xf1, b'b', b'i', b'g']
        );
        let mut codec = WireCodec::new(16);
        let mut buf = written(WireOut::Hello("liweb.json"));
        buf.extend_from_slice(&written(WireOut::Close(4006, "ping timeout")));
        buf.extend_from_slice(&written(WireOut::Pong));
        assert!(
            matches!(codec.decode(&mut buf), Ok(Some(WireFrame::Hello(name))) if name == "liweb.json")
        );
        assert!(matches!(
            codec.decode(&mut buf),
            Ok(Some(WireFrame::Close(Some((4006, reason))))) if reason == "ping timeout"
        ));
        assert!(matches!(codec.decode(&mut buf), Ok(Some(WireFrame::Pong))));
        assert!(matches!(codec.decode(&mut buf), Ok(None)));
    }

    #[test]
    fn the_limit_is_checked_from_the_length_alone() {
        let mut codec = WireCodec::new(16);
        // 16 bytes of message and the kind byte: the largest frame.
        let mut buf = written(WireOut::Message(&[b'x'; 16]));
        assert!(matches!(codec.decode(&mut buf), Ok(Some(WireFrame::Message(m))) if m.len() == 16));
        let mut buf = BytesMut::from(&18u32.to_be_bytes()[..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(FrameError::TooLarge(16))
        ));
    }

    #[test]
    fn a_frame_cut_by_the_end_of_the_stream_is_truncated() {
        let mut codec = WireCodec::new(16);
        let mut buf = BytesMut::from(&[0, 0, 0, 5, 2, b'{'][..]);
        assert!(matches!(codec.decode(&mut buf), Ok(None)));
        assert!(matches!(
            codec.decode_eof(&mut buf),
            Err(FrameError::Truncated)
        ));
        // Between frames, the end of the stream is a clean end.
        let mut codec = WireCodec::new(16);
        assert!(matches!(codec.decode_eof(&mut BytesMut::new()), Ok(None)));
        let mut buf = written(WireOut::Ping);
        assert!(matches!(
            codec.decode_eof(&mut buf),
            Ok(Some(WireFrame::Ping))
        ));
        assert!(matches!(codec.decode_eof(&mut buf), Ok(None)));
        // Inside one, even right after its length, it is not.
        let mut buf = BytesMut::from(&[0, 0, 0, 5][..]);
        assert!(matches!(codec.decode(&mut buf), Ok(None)));
        assert!(buf.is_empty());
        assert!(matches!(
            codec.decode_eof(&mut buf),
            Err(FrameError::Truncated)
        ));
    }

    #[test]
    fn empty_frames_and_unknown_kinds_are_malformed() {
        let mut codec = WireCodec::new(16);
        let mut buf = BytesMut::from(&[0, 0, 0, 0][..]);
        assert!(
            matches!(codec.decode(&mut buf), Err(FrameError::Malformed(m)) if m == "empty frame")
        );
        let mut buf = BytesMut::from(&[0, 0, 0, 1, 0x7f][..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(FrameError::Malformed(m)) if m == "unknown frame kind 0x7f"
        ));
    }
}
