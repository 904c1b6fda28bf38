//! Connections: identity, metadata, the outbound queue, and the task that
//! runs one connection whatever its transport.

use std::{
    fmt,
    net::SocketAddr,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};

use futures_util::{
    FutureExt, Sink, SinkExt, Stream, StreamExt,
    future::{Fuse, FusedFuture},
};
use http::HeaderMap;
use serde::{Deserialize, Serialize};
use tokio::time::{Duration, Instant};
use uuid::Uuid;

use crate::{
    ack::{PendingRequests, Request},
    auth::{AuthFailure, AuthReason},
    codec::{CodecKind, Frame},
    error::EmitError,
    event::Events,
    protocol::{CloseCode, ERROR_EVENT, ErrorCode, ErrorPayload},
    server::Server,
    state::RoomKey,
    transport::{Inbound, Outbound},
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
    /// Length-prefixed frames over TCP ([`Server::serve_tcp`](crate::Server::serve_tcp)).
    Tcp,
    /// A transport outside liweb, by its name; see [`transport`](crate::transport).
    Other(&'static str),
}

/// What is known about a connection from its opening request: headers,
/// remote address, query string, transport and codec. Cheap to clone.
#[derive(Clone)]
pub struct ConnMeta(Arc<MetaInner>);

struct MetaInner {
    /// The headers as one compact buffer (each name and value behind its
    /// length): a `HeaderMap` costs several allocations per connection for
    /// something most applications read once or never.
    raw_headers: Box<[u8]>,
    /// The headers as a map, built from `raw_headers` on first use.
    headers: std::sync::OnceLock<Box<HeaderMap>>,
    remote_addr: Option<SocketAddr>,
    path: String,
    query: Option<String>,
    transport: Transport,
    codec: CodecKind,
}

impl ConnMeta {
    /// The metadata of a connection; `headers` are copied (a request's
    /// header values are slices of the whole request buffer, which must not
    /// live as long as the connection).
    pub(crate) fn new(
        headers: &HeaderMap,
        remote_addr: Option<SocketAddr>,
        path: String,
        query: Option<String>,
        transport: Transport,
        codec: CodecKind,
    ) -> Self {
        Self(Arc::new(MetaInner {
            raw_headers: pack_headers(headers),
            headers: std::sync::OnceLock::new(),
            remote_addr,
            path,
            query,
            transport,
            codec,
        }))
    }

    /// Starts the metadata of a connection of a transport of your own; see
    /// [`transport`](crate::transport). Everything but the transport and
    /// the codec is unknown (empty) unless set.
    pub fn builder(transport: Transport, codec: CodecKind) -> ConnMetaBuilder {
        ConnMetaBuilder {
            headers: HeaderMap::new(),
            remote_addr: None,
            path: String::new(),
            query: None,
            transport,
            codec,
        }
    }

    /// The headers of the upgrade request, as sent.
    pub fn headers(&self) -> &HeaderMap {
        self.0
            .headers
            .get_or_init(|| Box::new(unpack_headers(&self.0.raw_headers)))
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

/// Builds a [`ConnMeta`]; made by [`ConnMeta::builder`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ConnMetaBuilder {
    headers: HeaderMap,
    remote_addr: Option<SocketAddr>,
    path: String,
    query: Option<String>,
    transport: Transport,
    codec: CodecKind,
}

impl ConnMetaBuilder {
    /// The headers the connection was opened with.
    pub fn headers(mut self, headers: HeaderMap) -> Self {
        self.headers = headers;
        self
    }

    /// The peer's address.
    pub fn remote_addr(mut self, addr: SocketAddr) -> Self {
        self.remote_addr = Some(addr);
        self
    }

    /// The path the connection was opened on.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// The raw query string, without `?`.
    pub fn query(mut self, query: impl Into<String>) -> Self {
        self.query = Some(query.into());
        self
    }

    /// The metadata.
    pub fn build(self) -> ConnMeta {
        ConnMeta::new(
            &self.headers,
            self.remote_addr,
            self.path,
            self.query,
            self.transport,
            self.codec,
        )
    }
}

fn pack_headers(headers: &HeaderMap) -> Box<[u8]> {
    let mut packed = Vec::new();
    for (name, value) in headers {
        for part in [name.as_str().as_bytes(), value.as_bytes()] {
            // Header lines are bounded by the server's request limits, far
            // below `u32::MAX`.
            let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
            packed.extend_from_slice(&len.to_le_bytes());
            packed.extend_from_slice(&part[..len as usize]);
        }
    }
    packed.into_boxed_slice()
}

fn unpack_headers(mut packed: &[u8]) -> HeaderMap {
    fn part<'a>(packed: &mut &'a [u8]) -> Option<&'a [u8]> {
        let (len, rest) = packed.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        let (part, rest) = rest.split_at_checked(len)?;
        *packed = rest;
        Some(part)
    }
    let mut headers = HeaderMap::new();
    while let (Some(name), Some(value)) = (part(&mut packed), part(&mut packed)) {
        // Both were a valid name and value when packed.
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name),
            http::HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    headers
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

/// No authentication needed, or it succeeded: the connection is open to the
/// application.
const OPEN: u8 = 0;
/// Authentication is configured and has not succeeded yet.
const PENDING: u8 = 1;
/// Authentication failed or timed out; the connection is closing.
const FAILED: u8 = 2;

pub(crate) struct ConnInner {
    pub(crate) id: ConnId,
    meta: ConnMeta,
    /// What the writer is to send, in order.
    pub(crate) queue: OutQueue,
    /// Bytes queued and not yet handed to the transport.
    queued: AtomicUsize,
    max_queue: usize,
    closing: AtomicBool,
    /// The code of the close the server started, if it did.
    close_code: std::sync::OnceLock<CloseCode>,
    /// Notified when a close was requested, so the connection task can bound
    /// how long it waits for the peer to answer it.
    close_requested: futures_util::task::AtomicWaker,
    data: RwLock<http::Extensions>,
    /// The rooms this connection is in: the other half of each room's
    /// member index, so a connection that ends leaves them all at once.
    rooms: std::sync::Mutex<Vec<RoomKey>>,
    /// Requests this server sent the connection, awaiting replies.
    pub(crate) requests: PendingRequests,
    /// `OPEN`, `PENDING` or `FAILED`.
    auth: AtomicU8,
}

impl ConnInner {
    pub(crate) fn rooms(&self) -> std::sync::MutexGuard<'_, Vec<RoomKey>> {
        self.rooms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn codec(&self) -> CodecKind {
        self.meta.codec()
    }

    /// Whether the application may see the connection: authenticated, or
    /// the server has no authentication.
    pub(crate) fn is_open(&self) -> bool {
        self.auth.load(Ordering::Acquire) == OPEN
    }

    /// Whether authentication is still awaited.
    pub(crate) fn is_auth_pending(&self) -> bool {
        self.auth.load(Ordering::Acquire) == PENDING
    }

    /// Ends a pending authentication, successfully or not; `false` when it
    /// had already ended (a timeout and a late verdict race for it).
    pub(crate) fn settle_auth(&self, success: bool) -> bool {
        let to = if success { OPEN } else { FAILED };
        self.auth
            .compare_exchange(PENDING, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    pub(crate) fn insert_data<T: Clone + Send + Sync + 'static>(&self, value: T) {
        self.data
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(value);
    }

    pub(crate) fn send_frame(&self, frame: Frame) -> Result<(), EmitError> {
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
        self.queue.push(Outbound::Frame(frame));
        Ok(())
    }

    pub(crate) fn close(&self, code: CloseCode, reason: &str) -> bool {
        if self.closing.swap(true, Ordering::AcqRel) {
            return false;
        }
        let _ = self.close_code.set(code);
        // WebSocket close reasons are at most 123 bytes; cut on a char boundary.
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        self.queue
            .push(Outbound::Close(code, reason[..end].to_owned()));
        // `closing` is set above; the connection task checks it after
        // registering, so a wake before it waits is not lost.
        self.close_requested.wake();
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

    /// Sends `event` as a request and waits for the client's reply, decoded
    /// as `R`; the half-duplex exchange:
    ///
    /// ```no_run
    /// # use liweb::prelude::*;
    /// # use std::time::Duration;
    /// # #[derive(Events)] enum Out { Confirm(String) }
    /// # async fn ask(conn: Conn<Out>) -> Result<(), liweb::RequestError> {
    /// let yes: bool = conn
    ///     .request(Out::Confirm("delete everything?".into()))
    ///     .timeout(Duration::from_secs(5))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// The frame carries an `ack` id; the client answers with
    /// `{"event":"__ack","ack":id,"payload":..}` (see the protocol document).
    /// Without a reply within the timeout (default 10 s) the result is
    /// [`RequestError::Timeout`](crate::RequestError::Timeout).
    pub fn request<R>(&self, event: Out) -> Request<Out, R> {
        Request::new(self.clone(), &event)
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
        match self
            .inner
            .meta
            .codec()
            .encode_parts(ERROR_EVENT, None, &payload)
        {
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

/// How many received frames may wait while a handler runs before the
/// connection stops reading (and TCP pushes back on the client).
const MAX_PENDING: usize = 32;

/// How many queued frames the writer feeds before flushing once.
const WRITE_BATCH: usize = 64;

/// How many slots the writer's batch keeps between bursts.
const IDLE_BATCH: usize = 4;

impl<Out: Events> Conn<Out> {
    /// A connection with no transport behind it, for benchmarks and tests of
    /// dispatch: what it is sent is queued on the returned receiver.
    #[doc(hidden)]
    pub fn detached(codec: CodecKind) -> (Self, Outgoing) {
        let meta = ConnMeta::new(
            &HeaderMap::new(),
            None,
            String::new(),
            None,
            Transport::WebSocket,
            codec,
        );
        let conn = Self::new(meta, usize::MAX, false);
        let outgoing = Outgoing(Arc::clone(&conn.inner));
        (conn, outgoing)
    }

    fn new(meta: ConnMeta, max_queue: usize, auth_pending: bool) -> Self {
        Conn {
            inner: Arc::new(ConnInner {
                id: ConnId::new(),
                meta,
                queue: OutQueue::default(),
                queued: AtomicUsize::new(0),
                max_queue,
                closing: AtomicBool::new(false),
                close_code: std::sync::OnceLock::new(),
                close_requested: futures_util::task::AtomicWaker::new(),
                data: RwLock::new(http::Extensions::new()),
                rooms: std::sync::Mutex::new(Vec::new()),
                requests: PendingRequests::default(),
                auth: AtomicU8::new(if auth_pending { PENDING } else { OPEN }),
            }),
            _out: std::marker::PhantomData,
        }
    }
}

/// The per-connection token bucket of [`Config::max_events_per_second`](crate::Config::max_events_per_second):
/// one token per event, refilled continuously, a second's worth at most.
struct RateLimit {
    per_second: f64,
    tokens: f64,
    last: tokio::time::Instant,
}

impl RateLimit {
    fn new(per_second: u32, now: tokio::time::Instant) -> Self {
        Self {
            per_second: f64::from(per_second),
            tokens: f64::from(per_second),
            last: now,
        }
    }

    fn take(&mut self, now: tokio::time::Instant) -> bool {
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.per_second);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The connection's timers, all served by one `Sleep` set to the earliest.
/// They live in the connection's task, so they end with it.
struct Timers {
    /// When the close handshake must be over.
    close: Option<Instant>,
    /// When authentication must be over.
    auth: Option<Instant>,
    /// When the next ping goes out.
    ping: Option<Instant>,
    /// When the unanswered ping times out.
    pong: Option<Instant>,
    /// The last inbound data frame, for the idle timeout.
    last_activity: Instant,
}

impl Timers {
    fn next(&self, idle: Option<Duration>) -> Option<Instant> {
        [
            self.close,
            self.auth,
            self.ping,
            self.pong,
            idle.map(|idle| self.last_activity + idle),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// Runs a connection to its end: authenticates it when the server asks for
/// it, registers it, fires `on_connect`, reads and dispatches frames in
/// arrival order, writes the outbound queue in batches, keeps the heartbeat
/// and the timeouts, then unregisters it and fires `on_disconnect` once.
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
    let auth = &server.inner.auth;
    let conn = Conn::<Out>::new(meta, config.max_queue_bytes, auth.is_some());
    // The writer runs inside this task, polled beside the reader and the
    // handler in flight: a task of its own would cost every connection a
    // second task cell for no gain in what it can do.
    let writer = write_loop(writer, Arc::clone(&conn.inner));
    tokio::pin!(writer);

    let started = Instant::now();
    let mut timers = Timers {
        close: None,
        auth: None,
        ping: config.ping_interval.map(|every| started + every),
        pong: None,
        last_activity: started,
    };
    if let Some(auth) = auth {
        timers.auth = Some(started + auth.timeout);
    }
    // Boxed: a future kept inline would take room in every connection's task
    // for its whole life, though it runs once.
    Box::pin(async {
        match auth {
            None => {
                server.register(&conn);
                server.fire_connect(&conn).await;
            }
            Some(auth) => {
                let checking = auth.check_request(conn.meta());
                if let Ok(Some(verdict)) = tokio::time::timeout(auth.timeout, checking).await {
                    server.finish_auth(&conn, verdict).await;
                }
            }
        }
    })
    .await;

    let codec = conn.meta().codec();
    let mut rate = config
        .max_events_per_second
        .map(|limit| RateLimit::new(limit, started));
    // A shutdown closes every tracked connection; one that is tracked after
    // it began closes itself.
    server.inner.live.track(conn.id(), &conn.inner);
    if server.is_shutting_down() {
        conn.close(CloseCode::GoingAway, crate::server::GOING_AWAY);
    }
    let mut reason: Option<DisconnectReason> = None;
    let mut reading = true;
    let mut writer_done = false;
    let mut pending = std::collections::VecDeque::new();
    let inflight = Fuse::terminated();
    tokio::pin!(inflight);
    let timer = tokio::time::sleep_until(timers.next(config.idle_timeout).unwrap_or(started));
    tokio::pin!(timer);

    loop {
        // Once closing, idleness no longer matters: its deadline, by then in
        // the past, would fire the timer on every turn of this biased loop,
        // spinning and never reading the peer's half of the close handshake
        // (the idle-timeout close took the whole close timeout).
        let idle = config.idle_timeout.filter(|_| !conn.is_closed());
        let next_wake = timers.next(idle);
        if let Some(at) = next_wake
            && timer.deadline() != at
        {
            timer.as_mut().reset(at);
        }
        tokio::select! {
            biased;
            // Atomics only: this is polled on every wake-up of the task.
            () = std::future::poll_fn(|cx| {
                conn.inner.close_requested.register(cx.waker());
                if conn.is_closed() { Poll::Ready(()) } else { Poll::Pending }
            }), if timers.close.is_none() => {
                // A shutdown's deadline bounds the close handshake too.
                let at = Instant::now() + config.close_timeout;
                timers.close = Some(server.inner.shutdown_deadline.get().map_or(at, |&end| end.min(at)));
            }
            () = &mut timer, if next_wake.is_some() => {
                let now = Instant::now();
                if timers.close.is_some_and(|at| now >= at) {
                    break;
                }
                if timers.auth.is_some_and(|at| now >= at) {
                    timers.auth = None;
                    if conn.inner.is_auth_pending() {
                        Box::pin(server.fail_auth(&conn, AuthFailure { reason: AuthReason::Timeout, detail: None })).await;
                    }
                }
                if timers.pong.is_some_and(|at| now >= at) {
                    // The peer is gone or stuck; do not wait for a close handshake.
                    server.inner.stats.ping_timeouts.fetch_add(1, Ordering::Relaxed);
                    conn.close(CloseCode::PingTimeout, "ping timeout");
                    break;
                }
                if config.idle_timeout.is_some_and(|idle| now >= timers.last_activity + idle) && !conn.is_closed() {
                    server.inner.stats.idle_timeouts.fetch_add(1, Ordering::Relaxed);
                    conn.close(CloseCode::IdleTimeout, "idle timeout");
                }
                if let (Some(at), Some(every)) = (timers.ping, config.ping_interval)
                    && now >= at
                {
                    conn.inner.queue.push(Outbound::Ping);
                    timers.pong.get_or_insert(now + config.ping_timeout);
                    timers.ping = Some(now + every);
                }
            }
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
                    let frame = frame.0;
                    let now = Instant::now();
                    timers.last_activity = now;
                    timers.pong = None;
                    if let Some(rate) = &mut rate
                        && !rate.take(now)
                    {
                        server.inner.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                        conn.send_error(ErrorCode::RateLimited, "too many events; this one was dropped".to_owned(), None);
                        continue;
                    }
                    // A reply is handed over at once, not queued behind the
                    // handler that may be waiting for it.
                    if server.take_reply(&conn, codec, &frame) {
                        continue;
                    }
                    if inflight.is_terminated() {
                        inflight.set(server.dispatch(&conn, codec, frame).fuse());
                    } else {
                        pending.push_back(frame);
                    }
                }
                Some(Inbound::Pong) => timers.pong = None,
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

    // The connection has ended: a strategy still checking `__auth` must not
    // open it now, or the application would see a connect (and a
    // disconnect) of a client that left while authenticating (A8). Settled
    // quietly, so no `on_auth_error` either.
    conn.inner.settle_auth(false);

    // Frames that arrived before the end are still handled, in order. (A
    // finished `Fuse` stays pending forever, so only await an unfinished one.)
    if !inflight.is_terminated() {
        inflight.await;
    }
    if !pending.is_empty() {
        // Boxed for the same reason as the start.
        Box::pin(async {
            while let Some(frame) = pending.pop_front() {
                server.dispatch(&conn, codec, frame).await;
            }
        })
        .await;
    }

    server.inner.live.untrack(conn.id());
    // Emits after this point fail with `Closed` instead of queueing forever.
    conn.inner.closing.store(true, Ordering::Release);
    conn.inner.requests.clear();
    // A connection that never authenticated was never seen by the
    // application: no room, no count, no `on_disconnect`.
    let seen = conn.inner.is_open();
    if conn.inner.close_code.get() == Some(&CloseCode::SlowConsumer) {
        server
            .inner
            .stats
            .slow_consumers
            .fetch_add(1, Ordering::Relaxed);
    }
    server.unregister(conn.id());
    Box::pin(async {
        server.inner.rooms.leave_all(&conn).await;
        if seen {
            let reason = match conn.inner.close_code.get() {
                Some(&code) => DisconnectReason::ServerClosed(code),
                None => reason
                    .unwrap_or_else(|| DisconnectReason::TransportError("connection ended".into())),
            };
            server.fire_disconnect(&conn, reason).await;
        }
    })
    .await;
}

async fn write_loop<W>(mut sink: W, conn: Arc<ConnInner>)
where
    W: Sink<Outbound> + Unpin,
{
    // The connection task drops this future when the connection ends; it
    // needs no signal of its own. The batch starts small and gives back
    // what a burst grew, so a connection that once received a burst does
    // not keep a batch's worth of slots for its whole life.
    let mut batch = Vec::with_capacity(IDLE_BATCH);
    loop {
        std::future::poll_fn(|cx| conn.queue.poll_take(cx, &mut batch, WRITE_BATCH)).await;
        if !write_batch(&mut sink, &mut batch, &conn).await {
            // Dropping the sink (with the reader) closes the socket; closing
            // it here would wait on a handshake only the reader can finish.
            return;
        }
        // Given back once a burst is over, not between its batches.
        if batch.capacity() > IDLE_BATCH && conn.queue.is_empty() {
            batch.shrink_to(IDLE_BATCH);
        }
    }
}

/// The queue between a connection's emitters and its writer: a locked
/// `VecDeque` and the writer's waker. Unlike a channel it allocates nothing
/// until something is queued (a channel's first block of slots is over a
/// kilobyte per connection), and it gives back what a burst grew.
#[derive(Default)]
pub(crate) struct OutQueue {
    items: std::sync::Mutex<std::collections::VecDeque<Outbound>>,
    writer: futures_util::task::AtomicWaker,
}

/// How many slots an emptied queue keeps; more are given back.
const IDLE_QUEUE: usize = 64;

impl OutQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<Outbound>> {
        self.items
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues one item and wakes the writer.
    pub(crate) fn push(&self, item: Outbound) {
        self.lock().push_back(item);
        self.writer.wake();
    }

    fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn pop(&self) -> Option<Outbound> {
        self.lock().pop_front()
    }

    /// Moves up to `max` queued items to `batch`; pending (with the waker
    /// registered) while there are none.
    fn poll_take(&self, cx: &mut Context<'_>, batch: &mut Vec<Outbound>, max: usize) -> Poll<()> {
        // Registered first, so an item pushed after the check still wakes us.
        self.writer.register(cx.waker());
        let mut items = self.lock();
        if items.is_empty() {
            return Poll::Pending;
        }
        let take = items.len().min(max);
        batch.extend(items.drain(..take));
        if items.is_empty() && items.capacity() > IDLE_QUEUE {
            items.shrink_to(IDLE_QUEUE);
        }
        Poll::Ready(())
    }
}

/// What a [`Conn::detached`] connection was sent, for tests and benchmarks.
#[doc(hidden)]
pub struct Outgoing(Arc<ConnInner>);

impl fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outgoing")
            .field("conn", &self.0.id)
            .field("queued", &self.0.queue.lock().len())
            .finish()
    }
}

/// [`Outgoing::try_recv`] found nothing queued.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Empty;

impl Outgoing {
    /// The oldest queued item, if any.
    pub fn try_recv(&mut self) -> Result<Outbound, Empty> {
        let item = self.0.queue.pop().ok_or(Empty)?;
        if let Outbound::Frame(frame) = &item {
            self.0.queued.fetch_sub(frame.len(), Ordering::AcqRel);
        }
        Ok(item)
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
    use super::{pack_headers, percent_decode, unpack_headers};

    #[test]
    fn headers_survive_packing_with_repeats_and_order() {
        let mut headers = http::HeaderMap::new();
        headers.append("x-token", "abc".parse().unwrap());
        headers.append("cookie", "a=1".parse().unwrap());
        headers.append("cookie", "b=2".parse().unwrap());
        headers.append("x-empty", "".parse().unwrap());
        headers.append(
            "x-bytes",
            http::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
        );
        assert_eq!(unpack_headers(&pack_headers(&headers)), headers);
        assert!(unpack_headers(&pack_headers(&http::HeaderMap::new())).is_empty());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("gr%C3%BCn"), "grün");
    }
}
