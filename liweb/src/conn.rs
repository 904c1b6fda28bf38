//! Connections: identity, metadata, the outbound queue, and the task that
//! runs one connection whatever its transport.

use std::{
    fmt,
    net::SocketAddr,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use futures_util::{
    FutureExt, Sink, SinkExt, Stream, StreamExt,
    future::{Fuse, FusedFuture},
};
use http::HeaderMap;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    codec::{CodecKind, Frame, InFrame},
    error::EmitError,
    event::Events,
    protocol::{CloseCode, ERROR_EVENT, ErrorCode, ErrorPayload},
    server::Server,
    state::RoomKey,
};

/// The id of a connection: a random (v4) UUID, serialized as its string form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConnId(Uuid);

impl ConnId {
    pub(crate) fn new() -> Self {
        Self(Uuid::new_v4())
    }

    /// The UUID.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl From<Uuid> for ConnId {
    fn from(uuid: Uuid) -> Self {
        Self(uuid)
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnId({})", self.0)
    }
}

/// The transport a connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// WebSocket (the axum route).
    WebSocket,
}

/// What is known about a connection from its opening request: headers,
/// remote address, query string, transport and codec. Cheap to clone.
#[derive(Clone)]
pub struct ConnMeta(Arc<MetaInner>);

struct MetaInner {
    headers: HeaderMap,
    remote_addr: Option<SocketAddr>,
    path: String,
    query: Option<String>,
    transport: Transport,
    codec: CodecKind,
}

impl ConnMeta {
    pub(crate) fn new(
        headers: HeaderMap,
        remote_addr: Option<SocketAddr>,
        path: String,
        query: Option<String>,
        transport: Transport,
        codec: CodecKind,
    ) -> Self {
        Self(Arc::new(MetaInner {
            headers,
            remote_addr,
            path,
            query,
            transport,
            codec,
        }))
    }

    /// The headers of the upgrade request, as sent.
    pub fn headers(&self) -> &HeaderMap {
        &self.0.headers
    }

    /// The peer's address. For the axum route this needs the router served
    /// with `into_make_service_with_connect_info::<SocketAddr>()`; without it
    /// the address is unknown (`None`).
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.0.remote_addr
    }

    /// The request path the connection was opened on.
    pub fn path(&self) -> &str {
        &self.0.path
    }

    /// The raw query string (without `?`), if the request had one.
    pub fn query(&self) -> Option<&str> {
        self.0.query.as_deref()
    }

    /// The first value of a query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query()?
            .split('&')
            .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
            .find(|(key, _)| percent_decode(key) == name)
            .map(|(_, value)| percent_decode(value))
    }

    /// The transport the connection uses.
    pub fn transport(&self) -> Transport {
        self.0.transport
    }

    /// The codec the connection speaks.
    pub fn codec(&self) -> CodecKind {
        self.0.codec
    }
}

impl fmt::Debug for ConnMeta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnMeta")
            .field("remote_addr", &self.0.remote_addr)
            .field("path", &self.0.path)
            .field("query", &self.0.query)
            .field("transport", &self.0.transport)
            .field("codec", &self.0.codec)
            .finish_non_exhaustive()
    }
}

fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|d| d as u8)
}

/// What the writer of a connection is asked to do.
#[doc(hidden)]
#[derive(Debug)]
pub enum Outbound {
    Frame(Frame),
    Close(CloseCode, String),
}

pub(crate) struct ConnInner {
    id: ConnId,
    meta: ConnMeta,
    tx: mpsc::UnboundedSender<Outbound>,
    /// Bytes queued and not yet handed to the transport.
    queued: AtomicUsize,
    max_queue: usize,
    closing: AtomicBool,
    /// The code of the close the server started, if it did.
    close_code: std::sync::OnceLock<CloseCode>,
    /// Cancelled when a close was requested, so the connection task can bound
    /// how long it waits for the peer to answer it.
    close_requested: CancellationToken,
    data: RwLock<http::Extensions>,
    /// The rooms this connection is in: the other half of each room's
    /// member index, so a connection that ends leaves them all at once.
    rooms: std::sync::Mutex<Vec<RoomKey>>,
}

impl ConnInner {
    pub(crate) fn rooms(&self) -> std::sync::MutexGuard<'_, Vec<RoomKey>> {
        self.rooms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn send_frame(&self, frame: Frame) -> Result<(), EmitError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(EmitError::Closed);
        }
        let len = frame.len();
        let before = self.queued.fetch_add(len, Ordering::AcqRel);
        // A frame larger than the whole limit still goes out when the queue
        // is empty; the limit bounds a backlog, not one message.
        if before > 0 && before + len > self.max_queue {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            self.close(CloseCode::SlowConsumer, "outbound queue full");
            return Err(EmitError::SlowConsumer);
        }
        self.tx.send(Outbound::Frame(frame)).map_err(|_| {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            EmitError::Closed
        })
    }

    fn close(&self, code: CloseCode, reason: &str) -> bool {
        if self.closing.swap(true, Ordering::AcqRel) {
            return false;
        }
        let _ = self.close_code.set(code);
        // WebSocket close reasons are at most 123 bytes; cut on a char boundary.
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let _ = self
            .tx
            .send(Outbound::Close(code, reason[..end].to_owned()));
        self.close_requested.cancel();
        true
    }
}

/// A handle to one connection, typed by the events the server sends.
///
/// Cheap to clone; every clone refers to the same connection. Sending to a
/// connection that has closed returns [`EmitError::Closed`] and does nothing.
pub struct Conn<Out> {
    pub(crate) inner: Arc<ConnInner>,
    _out: std::marker::PhantomData<fn(Out)>,
}

impl<Out> Clone for Conn<Out> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            _out: std::marker::PhantomData,
        }
    }
}

impl<Out> fmt::Debug for Conn<Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("id", &self.inner.id)
            .field("meta", &self.inner.meta)
            .field("closing", &self.inner.closing.load(Ordering::Relaxed))
            .finish()
    }
}

impl<Out: Events> Conn<Out> {
    /// The connection's id.
    pub fn id(&self) -> ConnId {
        self.inner.id
    }

    /// The connection's metadata.
    pub fn meta(&self) -> &ConnMeta {
        &self.inner.meta
    }

    /// Sends one event to this connection.
    ///
    /// The event is queued for the connection's writer; an error means it was
    /// not queued: the connection is closed, its queue is over the limit (it
    /// is then closed as a slow consumer), or the event cannot be serialized.
    pub fn emit(&self, event: Out) -> Result<(), EmitError> {
        let frame = self.inner.meta.codec().encode(&event)?;
        self.inner.send_frame(frame)
    }

    pub(crate) fn send_encoded(&self, frame: Frame) -> Result<(), EmitError> {
        self.inner.send_frame(frame)
    }

    /// Closes the connection with a code and a reason (at most 123 bytes;
    /// longer reasons are cut). Events already queued are sent first.
    ///
    /// Returns `false` when the connection was already closing.
    pub fn close(&self, code: CloseCode, reason: &str) -> bool {
        self.inner.close(code, reason)
    }

    /// Whether the connection is closed or closing.
    pub fn is_closed(&self) -> bool {
        self.inner.closing.load(Ordering::Acquire)
    }

    /// The rooms this connection is in.
    pub fn rooms(&self) -> Vec<RoomKey> {
        self.inner.rooms().clone()
    }

    /// How many rooms this connection is in.
    pub fn room_count(&self) -> usize {
        self.inner.rooms().len()
    }

    /// Bytes queued for this connection and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.inner.queued.load(Ordering::Acquire)
    }

    /// Stores a value in the connection's typed data (one value per type),
    /// returning the previous one. Read it back with [`Conn::data`], for
    /// example in a [`Server::broadcast_filter`] predicate.
    pub fn set_data<T: Clone + Send + Sync + 'static>(&self, value: T) -> Option<T> {
        self.inner
            .data
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(value)
    }

    /// Removes and returns the connection's data of type `T`.
    pub fn remove_data<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.inner
            .data
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove::<T>()
    }

    /// A copy of the connection's data of type `T`, if set.
    pub fn data<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.inner
            .data
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get::<T>()
            .cloned()
    }

    /// Sends the reserved `error` event.
    pub(crate) fn send_error(&self, code: ErrorCode, message: String, event: Option<&str>) {
        let payload = ErrorPayload {
            code,
            message,
            event: event.map(str::to_owned),
        };
        match self.inner.meta.codec().encode_parts(ERROR_EVENT, &payload) {
            Ok(frame) => {
                let _ = self.inner.send_frame(frame);
            }
            Err(err) => tracing::error!(%err, "cannot encode an error event"),
        }
    }
}

/// Why a connection ended; given to the `on_disconnect` hook.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The client closed, with the code and reason of its close frame if it sent one.
    ClientClosed(Option<(CloseCode, String)>),
    /// The server closed it (application, limit or policy) with this code.
    ServerClosed(CloseCode),
    /// The transport failed (reset, broken pipe, protocol error).
    TransportError(String),
}

/// One inbound item from a transport, already reduced to what liweb needs.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A data frame.
    Frame(InFrame),
    /// The peer's close frame.
    Close(Option<(CloseCode, String)>),
    /// A protocol violation; the connection is closed with this code.
    Error(CloseCode, String),
    /// The transport broke (reset, I/O error); nothing more can be sent.
    Reset(String),
}

/// How many received frames may wait while a handler runs before the
/// connection stops reading (and TCP pushes back on the client).
const MAX_PENDING: usize = 32;

/// How many queued frames the writer feeds before flushing once.
const WRITE_BATCH: usize = 64;

impl<Out: Events> Conn<Out> {
    /// A connection with no transport behind it, for benchmarks and tests of
    /// dispatch: what it is sent is queued on the returned receiver.
    #[doc(hidden)]
    pub fn detached(codec: CodecKind) -> (Self, mpsc::UnboundedReceiver<Outbound>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let meta = ConnMeta::new(
            HeaderMap::new(),
            None,
            String::new(),
            None,
            Transport::WebSocket,
            codec,
        );
        (Self::new(meta, tx, usize::MAX), rx)
    }

    fn new(meta: ConnMeta, tx: mpsc::UnboundedSender<Outbound>, max_queue: usize) -> Self {
        Conn {
            inner: Arc::new(ConnInner {
                id: ConnId::new(),
                meta,
                tx,
                queued: AtomicUsize::new(0),
                max_queue,
                closing: AtomicBool::new(false),
                close_code: std::sync::OnceLock::new(),
                close_requested: CancellationToken::new(),
                data: RwLock::new(http::Extensions::new()),
                rooms: std::sync::Mutex::new(Vec::new()),
            }),
            _out: std::marker::PhantomData,
        }
    }
}

/// Runs a connection to its end: registers it, fires `on_connect`, reads and
/// dispatches frames in arrival order, writes the outbound queue in batches,
/// then unregisters it and fires `on_disconnect` once.
pub(crate) async fn run<In, Out, R, W>(
    server: Server<In, Out>,
    meta: ConnMeta,
    mut reader: R,
    writer: W,
) where
    In: Events,
    Out: Events,
    R: Stream<Item = Inbound> + Unpin + Send,
    W: Sink<Outbound> + Unpin + Send + 'static,
{
    let config = server.config();
    let (tx, rx) = mpsc::unbounded_channel();
    let conn = Conn::<Out>::new(meta, tx, config.max_queue_bytes);
    let kill = CancellationToken::new();
    let mut writer = tokio::spawn(write_loop(
        writer,
        rx,
        Arc::clone(&conn.inner),
        kill.clone(),
    ));

    server.register(&conn);
    server.fire_connect(&conn).await;

    let codec = conn.meta().codec();
    let close_timeout = config.close_timeout;
    let mut reason: Option<DisconnectReason> = None;
    let mut reading = true;
    let mut writer_done = false;
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut pending = std::collections::VecDeque::new();
    let inflight = Fuse::terminated();
    tokio::pin!(inflight);

    loop {
        let close_wait = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = conn.inner.close_requested.cancelled(), if deadline.is_none() => {
                deadline = Some(tokio::time::Instant::now() + close_timeout);
            }
            () = close_wait => break,
            _ = &mut writer, if !writer_done => {
                writer_done = true;
                // The writer ends after sending a close frame or on a write
                // error; without a close in progress there is nothing to wait for.
                if !conn.is_closed() {
                    reason.get_or_insert(DisconnectReason::TransportError("write failed".into()));
                    break;
                }
                // After a protocol error nothing more is read, so the peer's
                // half of the close handshake cannot arrive: done.
                if !reading {
                    break;
                }
            }
            () = &mut inflight, if !inflight.is_terminated() => {
                if let Some(frame) = pending.pop_front() {
                    inflight.set(server.dispatch(&conn, codec, frame).fuse());
                }
            }
            item = reader.next(), if reading && pending.len() < MAX_PENDING => match item {
                Some(Inbound::Frame(frame)) => {
                    if inflight.is_terminated() {
                        inflight.set(server.dispatch(&conn, codec, frame).fuse());
                    } else {
                        pending.push_back(frame);
                    }
                }
                Some(Inbound::Close(frame)) => {
                    reason.get_or_insert(DisconnectReason::ClientClosed(frame));
                    // Keep reading: the transport sends its half of the close
                    // handshake on the next read, and then the stream ends.
                }
                Some(Inbound::Error(code, message)) => {
                    tracing::debug!(conn = %conn.id(), %message, "transport error");
                    conn.close(code, &message);
                    reading = false;
                }
                Some(Inbound::Reset(message)) => {
                    reason.get_or_insert(DisconnectReason::TransportError(message));
                    break;
                }
                None => {
                    reason.get_or_insert(DisconnectReason::TransportError("connection reset".into()));
                    break;
                }
            },
        }
    }

    // Frames that arrived before the end are still handled, in order. (A
    // finished `Fuse` stays pending forever, so only await an unfinished one.)
    if !inflight.is_terminated() {
        inflight.await;
    }
    while let Some(frame) = pending.pop_front() {
        server.dispatch(&conn, codec, frame).await;
    }

    // Emits after this point fail with `Closed` instead of queueing forever.
    conn.inner.closing.store(true, Ordering::Release);
    kill.cancel();
    if !writer_done {
        let _ = writer.await;
    }
    server.unregister(conn.id());
    server.inner.rooms.leave_all(&conn).await;
    let reason = match conn.inner.close_code.get() {
        Some(&code) => DisconnectReason::ServerClosed(code),
        None => {
            reason.unwrap_or_else(|| DisconnectReason::TransportError("connection ended".into()))
        }
    };
    server.fire_disconnect(&conn, reason).await;
}

async fn write_loop<W>(
    mut sink: W,
    mut rx: mpsc::UnboundedReceiver<Outbound>,
    conn: Arc<ConnInner>,
    kill: CancellationToken,
) where
    W: Sink<Outbound> + Unpin,
{
    let mut batch = Vec::new();
    loop {
        let received = tokio::select! {
            biased;
            () = kill.cancelled() => return,
            n = rx.recv_many(&mut batch, WRITE_BATCH) => n,
        };
        if received == 0 {
            return;
        }
        let keep_going = tokio::select! {
            biased;
            () = kill.cancelled() => return,
            result = write_batch(&mut sink, &mut batch, &conn) => result,
        };
        if !keep_going {
            // Dropping the sink (with the reader) closes the socket; closing
            // it here would wait on a handshake only the reader can finish.
            return;
        }
    }
}

/// Feeds every queued item, then flushes once. Returns `false` when the
/// connection is done (a close frame went out, or the transport failed).
async fn write_batch<W>(sink: &mut W, batch: &mut Vec<Outbound>, conn: &ConnInner) -> bool
where
    W: Sink<Outbound> + Unpin,
{
    for item in batch.drain(..) {
        let close = matches!(item, Outbound::Close(..));
        if let Outbound::Frame(frame) = &item {
            conn.queued.fetch_sub(frame.len(), Ordering::AcqRel);
        }
        if sink.feed(item).await.is_err() {
            return false;
        }
        if close {
            let _ = sink.flush().await;
            return false;
        }
    }
    sink.flush().await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("gr%C3%BCn"), "grün");
    }
}
