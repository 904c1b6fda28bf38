//! The WebSocket transport: an axum route that upgrades and runs connections.
//!
//! axum checks the upgrade request; liweb answers it and runs the upgraded
//! socket itself, on tungstenite, so that it can bound what the socket
//! holds for a peer that does not read (pongs included) and read what a peer
//! still sends after the server closed it (see [`linger`]).

use std::{
    collections::VecDeque,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll, ready},
};

use axum::{
    body::Body,
    extract::{ConnectInfo, FromRequestParts, Request, WebSocketUpgrade},
    response::{IntoResponse, Response},
    routing::MethodRouter,
};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use http::{HeaderValue, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        self, Message,
        handshake::derive_accept_key,
        protocol::{
            CloseFrame, Role, WebSocketConfig,
            frame::{
                Frame as WsFrame,
                coding::{Data, OpCode},
            },
        },
    },
};

use crate::{
    codec::{CodecKind, Frame, FrameData, InFrame},
    conn::meta::{ConnMeta, Transport},
    event::Events,
    protocol::CloseCode,
    server::{Server, config::Config},
    transport::{
        item::{Inbound, InboundFrame, Outbound},
        linger,
    },
};

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, message.to_owned()).into_response()
}

impl<In: Events, Out: Events> Server<In, Out> {
    /// An axum route that upgrades `GET` requests to WebSocket connections of
    /// this server. Mount it at any path of any router:
    ///
    /// ```no_run
    /// # use liweb::prelude::*;
    /// # #[derive(Events)] enum In { Ping }
    /// # #[derive(Events)] enum Out { Pong }
    /// # async fn run(server: Server<In, Out>) -> std::io::Result<()> {
    /// let app = axum::Router::new().route("/ws", server.ws_route());
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    /// // The remote address reaches `ConnMeta`; see `liweb::serve` for the rest.
    /// liweb::serve(listener, app).await
    /// # }
    /// ```
    ///
    /// A request that is not a WebSocket upgrade gets axum's rejection
    /// (`400`/`405`/`426`). Upgrades are refused with `403` for an `Origin`
    /// not on [`Config::allowed_origins`](crate::Config::allowed_origins),
    /// `503` at [`Config::max_connections`](crate::Config::max_connections)
    /// or during [`Server::shutdown`], and with the hook's status when
    /// [`ServerBuilder::on_upgrade`](crate::ServerBuilder::on_upgrade) refuses.
    pub fn ws_route<S: Clone + Send + Sync + 'static>(&self) -> MethodRouter<S> {
        let server = self.clone();
        axum::routing::get(move |request: Request| {
            let server = server.clone();
            async move { server.upgrade(request).await }
        })
    }

    async fn upgrade(self, request: Request) -> Response {
        let (mut parts, _body) = request.into_parts();
        // A handle on the upgrade, kept before axum's extractor takes its own:
        // liweb answers the request and runs the socket itself.
        let on_upgrade = parts.extensions.get::<hyper::upgrade::OnUpgrade>().cloned();
        // axum checks the request (method, headers, version) and answers
        // a bad one; its own upgrade is not used.
        if let Err(rejection) = WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            return rejection.into_response();
        }
        let (Some(on_upgrade), Some(key)) = (
            on_upgrade,
            parts.headers.get(header::SEC_WEBSOCKET_KEY).cloned(),
        ) else {
            return refuse(StatusCode::UPGRADE_REQUIRED, "not a WebSocket upgrade");
        };
        // The place is taken first, as TCP does, and given back when the
        // connection ends or when the upgrade never completes.
        let admission = match self.admit() {
            Ok(admission) => admission,
            Err(refused) => return refuse(StatusCode::SERVICE_UNAVAILABLE, &refused.to_string()),
        };
        let stats = &self.inner.stats;
        if let (Some(allowed), Some(origin)) = (
            &self.config().allowed_origins,
            parts.headers.get(header::ORIGIN),
        ) && !allowed
            .iter()
            .any(|allowed| allowed.as_bytes() == origin.as_bytes())
        {
            stats.rejected_origin.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(?origin, "upgrade refused: origin not allowed");
            return refuse(StatusCode::FORBIDDEN, "origin not allowed");
        }
        let codec = match negotiate(&parts.headers) {
            Ok(codec) => codec,
            Err(asked) => {
                stats.rejected_subprotocol.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%asked, "upgrade refused: no supported codec subprotocol");
                return refuse(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "unsupported codec subprotocol: {asked}; this server speaks {}",
                        supported()
                    ),
                );
            }
        };
        let remote_addr = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0);
        let meta = ConnMeta::new(
            &parts.headers,
            remote_addr,
            parts.uri.path().to_owned(),
            parts.uri.query().map(str::to_owned),
            Transport::WebSocket,
            codec.unwrap_or_default(),
        );
        if let Err(rejection) = self.check_upgrade(&meta).await {
            return refuse(rejection.status, &rejection.message);
        }
        let config = self.config();
        let limits = SocketLimits::new(config);
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let owed = Arc::new(AtomicUsize::new(0));
            let io = Io {
                inner: TokioIo::new(upgraded),
                owed: Arc::clone(&owed),
            };
            let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(limits.ws)).await;
            let socket = Arc::new(Mutex::new(socket));
            let mut reader = Reader {
                socket: Arc::clone(&socket),
                owed,
                max_owed: limits.max_owed,
                done: false,
                clean: false,
            };
            let writer = Writer {
                socket,
                held: VecDeque::new(),
                chunk: limits.chunk,
            };
            admission.run(meta, &mut reader, writer).await;
            if reader.clean {
                return;
            }
            // The server ended the connection before the peer's close: read
            // what it still sends, so closing the socket with input unread
            // does not reset it and destroy the close frame before the peer
            // reads it.
            if let Ok(socket) = Arc::try_unwrap(reader.socket) {
                let socket = socket
                    .into_inner()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                linger(&mut socket.into_inner()).await;
            }
        });
        // Answering with the chosen subprotocol; a client that asked for
        // none gets none, as before codecs could be chosen.
        let mut response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, HeaderValue::from_static("upgrade"))
            .header(header::UPGRADE, HeaderValue::from_static("websocket"))
            .header(
                header::SEC_WEBSOCKET_ACCEPT,
                derive_accept_key(key.as_bytes()),
            );
        if let Some(codec) = codec {
            response = response.header(header::SEC_WEBSOCKET_PROTOCOL, codec.subprotocol());
        }
        response
            .body(Body::empty())
            .unwrap_or_else(|_| refuse(StatusCode::INTERNAL_SERVER_ERROR, "upgrade failed"))
    }
}

/// What one WebSocket may hold for its peer, from the server's limits.
#[derive(Clone, Copy)]
struct SocketLimits {
    ws: WebSocketConfig,
    /// The most pong bytes owed to a peer that takes nothing written to it
    /// before it is closed as a slow consumer.
    max_owed: usize,
    /// The fragment size of a message larger than the whole write buffer.
    chunk: usize,
}

/// tungstenite's write buffer before it writes to the socket (its default).
const WRITE_BUFFER: usize = 128 * 1024;

impl SocketLimits {
    fn new(config: &Config) -> Self {
        // Beyond liweb's queue, tungstenite holds at most one connection's
        // queue limit more (pongs to a peer that does not read, the frames
        // of a batch): unbounded, a ping flood grew it for as long as the
        // peer liked. Past it, tungstenite keeps one pending pong and
        // replaces it with the next (RFC 6455 §5.5.3).
        let extra = config.max_queue_bytes.max(4096);
        let ws = WebSocketConfig::default()
            .read_buffer_size(config.read_buffer_size)
            .max_message_size(Some(config.max_frame_size))
            .max_frame_size(Some(config.max_frame_size))
            .write_buffer_size(WRITE_BUFFER)
            .max_write_buffer_size(WRITE_BUFFER + extra);
        Self {
            ws,
            max_owed: config.max_queue_bytes,
            // Room for a frame's header beside a chunk.
            chunk: extra - 16,
        }
    }
}

/// The codec the `Sec-WebSocket-Protocol` header asks for: the first
/// `liweb.*` subprotocol of the client's list this server supports, `None`
/// when the list names no `liweb.*` subprotocol (JSON), and `Err` with the
/// list when it names only `liweb.*` subprotocols this server lacks.
fn negotiate(headers: &http::HeaderMap) -> Result<Option<CodecKind>, String> {
    let asked = headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|name| name.starts_with("liweb."));
    let mut unsupported = Vec::new();
    for name in asked {
        match CodecKind::from_subprotocol(name) {
            Some(codec) => return Ok(Some(codec)),
            None => unsupported.push(name),
        }
    }
    if unsupported.is_empty() {
        Ok(None)
    } else {
        Err(unsupported.join(", "))
    }
}

fn supported() -> String {
    CodecKind::ALL
        .iter()
        .map(|codec| codec.subprotocol())
        .collect::<Vec<_>>()
        .join(", ")
}

type Socket = WebSocketStream<Io>;

fn lock(socket: &Mutex<Socket>) -> MutexGuard<'_, Socket> {
    socket
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The upgraded connection's bytes. A write the peer's side takes clears
/// the pong bytes owed: a peer that reads gets its pongs.
struct Io {
    inner: TokioIo<hyper::upgrade::Upgraded>,
    /// Bytes of pongs asked for since the socket last took a write.
    owed: Arc<AtomicUsize>,
}

impl Io {
    fn took(&self, written: Poll<std::io::Result<usize>>) -> Poll<std::io::Result<usize>> {
        if let Poll::Ready(Ok(n)) = &written
            && *n > 0
        {
            self.owed.store(0, Ordering::Relaxed);
        }
        written
    }
}

impl AsyncRead for Io {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.took(written)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.took(written)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The socket's receiving half, as liweb's inbound items.
struct Reader {
    socket: Arc<Mutex<Socket>>,
    owed: Arc<AtomicUsize>,
    max_owed: usize,
    /// Set once nothing more is to be read.
    done: bool,
    /// Set when the socket ended by itself: the close handshake finished,
    /// or the peer is gone. Otherwise it lingers after the connection.
    clean: bool,
}

impl Stream for Reader {
    type Item = Inbound;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Inbound>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            let item = ready!(lock(&self.socket).poll_next_unpin(cx));
            let inbound = match item {
                None => {
                    self.done = true;
                    self.clean = true;
                    return Poll::Ready(None);
                }
                // tungstenite answers pings itself, on its next read or
                // write; the pong is owed until the peer takes a write.
                Some(Ok(Message::Ping(data))) => {
                    let pong = data.len() + 2;
                    let owed = self.owed.fetch_add(pong, Ordering::Relaxed) + pong;
                    if owed <= self.max_owed {
                        continue;
                    }
                    Inbound::Error(
                        CloseCode::SlowConsumer,
                        "pings sent without reading the pongs".to_owned(),
                    )
                }
                Some(Ok(message)) => match inbound(message) {
                    Some(inbound) => inbound,
                    None => continue,
                },
                Some(Err(err)) => classify(err),
            };
            match &inbound {
                Inbound::Error(..) => self.done = true,
                Inbound::Reset(_) => {
                    self.done = true;
                    self.clean = true;
                }
                _ => {}
            }
            return Poll::Ready(Some(inbound));
        }
    }
}

/// The socket's sending half, taking liweb's outbound items.
struct Writer {
    socket: Arc<Mutex<Socket>>,
    /// Messages that did not fit beside what tungstenite already holds;
    /// they go out, in order, once it has written that.
    held: VecDeque<Message>,
    chunk: usize,
}

impl Writer {
    /// Sends what is held, each after writing out what tungstenite holds.
    fn poll_held(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), tungstenite::Error>> {
        while let Some(message) = self.held.pop_front() {
            let mut socket = lock(&self.socket);
            match socket.poll_flush_unpin(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => {
                    drop(socket);
                    self.held.push_front(message);
                    return Poll::Pending;
                }
            }
            match socket.start_send_unpin(message) {
                Ok(()) => {}
                // It does not fit even in the empty buffer: a message larger
                // than the buffer goes out in fragments that do.
                Err(tungstenite::Error::WriteBufferFull(message)) => {
                    match fragments(*message, self.chunk) {
                        Some(fragments) => {
                            for fragment in fragments.into_iter().rev() {
                                self.held.push_front(fragment);
                            }
                        }
                        None => {
                            return Poll::Ready(Err(tungstenite::Error::Protocol(
                                tungstenite::error::ProtocolError::SendAfterClosing,
                            )));
                        }
                    }
                }
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl Sink<Outbound> for Writer {
    type Error = tungstenite::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        ready!(self.poll_held(cx))?;
        lock(&self.socket).poll_ready_unpin(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Outbound) -> Result<(), Self::Error> {
        if matches!(item, Outbound::Close(..)) {
            // After what the socket holds is written: tungstenite refuses a
            // close frame that does not fit and then sends nothing more.
            self.held.push_back(message(item));
            return Ok(());
        }
        let sent = lock(&self.socket).start_send_unpin(message(item));
        match sent {
            // Pongs the peer does not read fill the buffer: hold the message
            // until they are written (or the peer is closed as a slow consumer).
            Err(tungstenite::Error::WriteBufferFull(message)) => {
                self.held.push_back(*message);
                Ok(())
            }
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        ready!(self.poll_held(cx))?;
        lock(&self.socket).poll_flush_unpin(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        ready!(self.poll_held(cx))?;
        lock(&self.socket).poll_close_unpin(cx)
    }
}

/// A data frame cut into fragments of at most `chunk` bytes; `None` for
/// a frame that is not data (control frames are small).
fn fragments(message: Message, chunk: usize) -> Option<Vec<Message>> {
    let Message::Frame(frame) = message else {
        return None;
    };
    let opcode = frame.header().opcode;
    if !matches!(opcode, OpCode::Data(Data::Text | Data::Binary)) {
        return None;
    }
    let mut payload = frame.into_payload();
    let mut fragments = Vec::with_capacity(payload.len() / chunk + 1);
    let mut first = true;
    while !payload.is_empty() {
        let part = payload.split_to(payload.len().min(chunk));
        let code = if first {
            opcode
        } else {
            OpCode::Data(Data::Continue)
        };
        first = false;
        fragments.push(Message::Frame(WsFrame::message(
            part,
            code,
            payload.is_empty(),
        )));
    }
    Some(fragments)
}

/// The item a message becomes; `None` for what liweb does not see (pings,
/// which tungstenite answers; raw frames, which reading never yields).
fn inbound(message: Message) -> Option<Inbound> {
    match message {
        Message::Text(text) => Some(Inbound::Frame(InboundFrame(InFrame::Text(text)))),
        Message::Binary(bytes) => Some(Inbound::Frame(InboundFrame(InFrame::Binary(bytes)))),
        Message::Pong(_) => Some(Inbound::Pong),
        Message::Close(frame) => Some(Inbound::Close(frame.map(|frame| {
            (
                CloseCode::from(u16::from(frame.code)),
                frame.reason.as_str().to_owned(),
            )
        }))),
        Message::Ping(_) | Message::Frame(_) => None,
    }
}

fn classify(err: tungstenite::Error) -> Inbound {
    match err {
        tungstenite::Error::Capacity(reason) => {
            Inbound::Error(CloseCode::TooLarge, format!("frame too large: {reason}"))
        }
        tungstenite::Error::Utf8(_) => Inbound::Error(
            CloseCode::BadFrame,
            "text frame is not valid UTF-8".to_owned(),
        ),
        // Reading never reports a full write buffer (tungstenite keeps the
        // pong it could not buffer and replaces it with the next); should
        // it, the peer is not reading what it asked for.
        tungstenite::Error::WriteBufferFull(_) => Inbound::Error(
            CloseCode::SlowConsumer,
            "pings sent without reading the pongs".to_owned(),
        ),
        // The peer vanished; there is no one left to close with.
        tungstenite::Error::Protocol(
            tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        ) => Inbound::Reset("connection reset without a closing handshake".to_owned()),
        tungstenite::Error::Protocol(reason) => {
            Inbound::Error(CloseCode::ProtocolError, reason.to_string())
        }
        err => Inbound::Reset(err.to_string()),
    }
}

fn message(out: Outbound) -> Message {
    match out {
        Outbound::Frame(Frame {
            data: FrameData::Text(text),
        }) => Message::Text(text),
        Outbound::Frame(Frame {
            data: FrameData::Binary(bytes),
        }) => Message::Binary(bytes),
        Outbound::Ping => Message::Ping(bytes::Bytes::new()),
        Outbound::Close(code, reason) => Message::Close(Some(CloseFrame {
            code: code.as_u16().into(),
            reason: reason.into(),
        })),
    }
}
