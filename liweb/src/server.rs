//! The server: builder, configuration, and the cloneable handle handlers use.

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures_util::FutureExt;

use crate::{
    ack::{self, AckSlot, MultiRequest, Outcome},
    auth::{self, Auth, AuthConfig, AuthFailure, AuthReason, AuthUser, Verdict},
    codec::{CodecKind, EncodeOnce, InFrame, RawPayload},
    conn::{Conn, ConnId, ConnInner, ConnMeta, DisconnectReason},
    error::{EncodeError, HandlerError, panic_message},
    event::Events,
    extract,
    handler::{BoxHook, Call, DynHandler, Handler, HandlerList, Hook, IntoHandler, box_hook},
    hooks::ErrorReport,
    middleware::{
        self, Envelope, ErrorPolicy, Middleware, MiddlewareError, MiddlewareOptions, Next, Step,
    },
    presence::{MemoryPresence, PresenceStore},
    protocol::ErrorCode,
    protocol::{ACK_EVENT, AUTH_EVENT, CloseCode},
    room::{Channel, JoinGuard, JoinRejected, Registry, Room, RoomDefaults, Rooms},
    state::{MemoryStore, RoomKey, StateStore},
};

/// Limits and timeouts of a server. Set through [`ServerBuilder`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The largest inbound frame, in bytes (default 64 KiB). A larger frame
    /// closes the connection with [`CloseCode::TooLarge`](crate::CloseCode::TooLarge)
    /// as soon as its header announces the size, before it is buffered.
    pub max_frame_size: usize,
    /// The most bytes queued for one connection's writer (default 1 MiB).
    /// Going over closes the connection with
    /// [`CloseCode::SlowConsumer`](crate::CloseCode::SlowConsumer).
    pub max_queue_bytes: usize,
    /// How long a close handshake may take before the connection is dropped
    /// (default 2 s).
    pub close_timeout: Duration,
    /// The transport's read buffer per connection, in bytes (default 4 KiB).
    pub read_buffer_size: usize,
    /// How often the server pings each connection (default 25 s); `None`
    /// turns the heartbeat off. WebSocket ping frames; browsers answer them
    /// without any code.
    pub ping_interval: Option<Duration>,
    /// How long a ping may go unanswered before the connection is closed
    /// with [`CloseCode::PingTimeout`](crate::CloseCode::PingTimeout)
    /// (default 20 s). Any inbound frame counts as an answer.
    pub ping_timeout: Duration,
    /// Closes a connection that sends no event for this long, with
    /// [`CloseCode::IdleTimeout`](crate::CloseCode::IdleTimeout); pongs do
    /// not count. Off by default.
    pub idle_timeout: Option<Duration>,
    /// The most connections open at once, counting those still
    /// authenticating; more upgrades are refused with `503 Service
    /// Unavailable`. No limit by default.
    pub max_connections: Option<usize>,
    /// The most events one connection may send per second (a token bucket
    /// holding one second's worth); an event over the limit is dropped and
    /// answered with an `error` event of code `rate_limited`. No limit by
    /// default.
    pub max_events_per_second: Option<u32>,
    /// The `Origin` values allowed to open connections; an upgrade with
    /// another `Origin` is refused with `403 Forbidden`, one without an
    /// `Origin` (a non-browser client) is accepted. Any origin by default.
    pub allowed_origins: Option<Arc<[String]>>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_frame_size: 64 * 1024,
            max_queue_bytes: 1024 * 1024,
            close_timeout: Duration::from_secs(2),
            read_buffer_size: 4 * 1024,
            ping_interval: Some(Duration::from_secs(25)),
            ping_timeout: Duration::from_secs(20),
            idle_timeout: None,
            max_connections: None,
            max_events_per_second: None,
            allowed_origins: None,
        }
    }
}

type ErrorHook<Out> = Box<dyn Fn(ErrorReport<Out>) + Send + Sync>;
type MessageHook<Out> = Box<dyn Fn(&Conn<Out>, &'static str) + Send + Sync>;
pub(crate) type UpgradeHook = Arc<
    dyn Fn(ConnMeta) -> Pin<Box<dyn Future<Output = Result<(), UpgradeRejection>> + Send>>
        + Send
        + Sync,
>;

/// An upgrade hook's refusal: the HTTP status and body the client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRejection {
    /// The response status.
    pub status: http::StatusCode,
    /// The response body.
    pub message: String,
}

impl UpgradeRejection {
    /// A refusal with a status and a message.
    pub fn new(status: http::StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

/// Counters of what the server refused, dropped or closed; read them with
/// [`Server::stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) rejected_origin: AtomicU64,
    pub(crate) rejected_full: AtomicU64,
    pub(crate) rejected_upgrade: AtomicU64,
    pub(crate) rejected_shutdown: AtomicU64,
    pub(crate) rejected_subprotocol: AtomicU64,
    pub(crate) rate_limited: AtomicU64,
    pub(crate) auth_failures: AtomicU64,
    pub(crate) auth_timeouts: AtomicU64,
    pub(crate) slow_consumers: AtomicU64,
    pub(crate) ping_timeouts: AtomicU64,
    pub(crate) idle_timeouts: AtomicU64,
}

/// A snapshot of the server's counters, from [`Server::stats`]. Every
/// refusal, drop and policy close is counted here as well as logged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Connections open to the application (authenticated, if auth is on).
    pub connections: usize,
    /// Connections of every state, those authenticating included.
    pub live: usize,
    /// Upgrades refused because of their `Origin` (403).
    pub rejected_origin: u64,
    /// Connections refused at the connection limit (WebSocket: 503; TCP:
    /// a `CLOSE` with 1013).
    pub rejected_full: u64,
    /// Connections refused by the upgrade hook (either transport).
    pub rejected_upgrade: u64,
    /// Connections refused during shutdown (WebSocket: 503; TCP: a
    /// `CLOSE` with 1001).
    pub rejected_shutdown: u64,
    /// Connections refused because they asked only for `liweb.*` codecs
    /// this server does not support (WebSocket: 400; TCP: a `CLOSE` with
    /// 1003).
    pub rejected_subprotocol: u64,
    /// Events dropped by the rate limit.
    pub rate_limited: u64,
    /// Authentications refused.
    pub auth_failures: u64,
    /// Authentications that did not finish in time.
    pub auth_timeouts: u64,
    /// Connections closed for reading too slowly.
    pub slow_consumers: u64,
    /// Connections closed for not answering pings.
    pub ping_timeouts: u64,
    /// Connections closed for being idle.
    pub idle_timeouts: u64,
}

/// The close reason of connections ended by [`Server::shutdown`].
pub(crate) const GOING_AWAY: &str = "server shutting down";

/// How many connections exist in any state, and a way to wait for none.
#[derive(Debug, Default)]
pub(crate) struct Live {
    count: AtomicUsize,
    idle: tokio::sync::Notify,
    /// Every connection task's connection, authenticated or not, so a
    /// shutdown can ask each to go away. Touched once at the start and once
    /// at the end of a connection, never per message.
    conns: std::sync::Mutex<HashMap<ConnId, std::sync::Weak<ConnInner>>>,
}

/// One place among the live connections, given back when dropped.
#[derive(Debug)]
pub(crate) struct LiveSlot(Arc<Live>);

impl Drop for LiveSlot {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Live {
    /// Takes a place, unless `max` are taken.
    pub(crate) fn acquire(self: &Arc<Self>, max: Option<usize>) -> Option<LiveSlot> {
        let max = max.unwrap_or(usize::MAX);
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |count| {
                (count < max).then_some(count + 1)
            })
            .ok()
            .map(|_| LiveSlot(Arc::clone(self)))
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    fn tracked(&self) -> std::sync::MutexGuard<'_, HashMap<ConnId, std::sync::Weak<ConnInner>>> {
        self.conns
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Tracks a connection for [`Server::shutdown`] until [`Live::untrack`].
    pub(crate) fn track(&self, id: ConnId, conn: &Arc<ConnInner>) {
        self.tracked().insert(id, Arc::downgrade(conn));
    }

    pub(crate) fn untrack(&self, id: ConnId) {
        self.tracked().remove(&id);
    }

    /// Every tracked connection still alive.
    fn all(&self) -> Vec<Arc<ConnInner>> {
        self.tracked()
            .values()
            .filter_map(std::sync::Weak::upgrade)
            .collect()
    }

    /// Waits until no connection is left, or `deadline`; `true` when none is.
    async fn wait_none(&self, deadline: tokio::time::Instant) -> bool {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.count() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return self.count() == 0;
            }
        }
    }
}

/// The open connections, by id and in the order they opened.
pub(crate) struct Connections<Out> {
    by_id: HashMap<ConnId, (u64, Conn<Out>)>,
    /// The same connections keyed by when they opened (a counter), for the
    /// listing by index and range.
    by_order: std::collections::BTreeMap<u64, Conn<Out>>,
    next: u64,
}

impl<Out> Default for Connections<Out> {
    fn default() -> Self {
        Self {
            by_id: HashMap::new(),
            by_order: std::collections::BTreeMap::new(),
            next: 0,
        }
    }
}

impl<Out> Connections<Out> {
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(crate) fn get(&self, id: &ConnId) -> Option<&Conn<Out>> {
        self.by_id.get(id).map(|(_, conn)| conn)
    }

    /// Every connection, oldest first.
    pub(crate) fn values(&self) -> impl Iterator<Item = &Conn<Out>> {
        self.by_order.values()
    }
}

/// The handlers of one event, in registration order.
type Slot<In, Out> = Box<[Box<dyn DynHandler<In, Out>>]>;

pub(crate) struct Inner<In, Out> {
    table: Box<[Slot<In, Out>]>,
    states: http::Extensions,
    conns: RwLock<Connections<Out>>,
    on_connect: Vec<BoxHook<In, Out>>,
    on_disconnect: Vec<BoxHook<In, Out>>,
    on_auth_success: Vec<BoxHook<In, Out>>,
    on_auth_error: Vec<BoxHook<In, Out>>,
    on_message: Option<MessageHook<Out>>,
    pub(crate) on_upgrade: Option<UpgradeHook>,
    on_error: Option<ErrorHook<Out>>,
    middleware: Vec<Step<In, Out>>,
    pub(crate) auth: Option<AuthConfig>,
    pub(crate) stats: Counters,
    pub(crate) live: Arc<Live>,
    /// Set when shutdown starts: connections are asked to go away.
    pub(crate) going_away: AtomicBool,
    /// When a shutdown gives up on close handshakes.
    pub(crate) shutdown_deadline: std::sync::OnceLock<tokio::time::Instant>,
    pub(crate) rooms: Arc<Registry<Out>>,
    pub(crate) config: Config,
}

/// A liweb server: the dispatch table, the connections, and the way to reach
/// them. Cheap to clone; every clone is the same server.
///
/// `In` is the enum of events clients send, `Out` the enum of events the
/// server sends; both derive [`Events`].
pub struct Server<In, Out> {
    pub(crate) inner: Arc<Inner<In, Out>>,
}

impl<In, Out> Clone for Server<In, Out> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<In, Out> fmt::Debug for Server<In, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("events", &self.inner.table.len())
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl<In: Events, Out: Events> Server<In, Out> {
    /// Starts building a server.
    pub fn builder() -> ServerBuilder<In, Out> {
        ServerBuilder::new()
    }

    /// The server's configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// A copy of the state of type `T` given to [`ServerBuilder::state`].
    pub fn state<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.inner.states.get::<T>().cloned()
    }

    /// The channel `name`, a namespace of rooms: `server.channel("chat").room("general")`.
    pub fn channel(&self, name: &str) -> Channel<Out> {
        Channel::new(Arc::clone(&self.inner.rooms), name)
    }

    /// Several rooms at once, for an emit that reaches each connection in any
    /// of them exactly once: `server.to([&lobby, &game]).emit(event)`.
    pub fn to<'a>(&self, rooms: impl IntoIterator<Item = &'a Room<Out>>) -> Rooms<Out> {
        Rooms::new(rooms.into_iter().cloned().collect())
    }

    /// How many connections are open.
    pub fn connection_count(&self) -> usize {
        self.read_conns().len()
    }

    /// The `index`-th open connection in the order they opened (oldest
    /// first), if there are more than `index`; the multiclient-websocket
    /// `clients[i]`.
    ///
    /// The order is the order in which connections opened to the
    /// application: when `on_connect` is about to fire, which with
    /// authentication is when it succeeded. A connection keeps its place
    /// until it ends; the ones after it then move up by one. Whatever the
    /// transport (WebSocket, TCP), all connections share one order.
    pub fn connection_at(&self, index: usize) -> Option<Conn<Out>> {
        self.read_conns().by_order.values().nth(index).cloned()
    }

    /// The open connections whose places in the order of
    /// [`Server::connection_at`] fall in `range`; the
    /// multiclient-websocket `clients.slice(a, b)`. Bounds past the end are
    /// cut to it, so `connections_range(2..usize::MAX)` is every connection
    /// but the two oldest, and an empty or reversed range gives nothing.
    pub fn connections_range(&self, range: impl std::ops::RangeBounds<usize>) -> Vec<Conn<Out>> {
        use std::ops::Bound;
        let start = match range.start_bound() {
            Bound::Included(&at) => at,
            Bound::Excluded(&at) => at.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&at) => at.saturating_add(1),
            Bound::Excluded(&at) => at,
            Bound::Unbounded => usize::MAX,
        };
        self.read_conns()
            .by_order
            .values()
            .skip(start)
            .take(end.saturating_sub(start))
            .cloned()
            .collect()
    }

    /// The open connection with this id.
    pub fn get(&self, id: ConnId) -> Option<Conn<Out>> {
        self.read_conns().get(&id).cloned()
    }

    /// Every open connection, oldest first (the order of
    /// [`Server::connection_at`]).
    pub fn connections(&self) -> Vec<Conn<Out>> {
        self.read_conns().values().cloned().collect()
    }

    /// Sends an event to every connection. The event is serialized once per
    /// codec in use; returns how many connections it was queued for (on this
    /// node: in a cluster it also goes to every other node's connections).
    pub fn broadcast(&self, event: Out) -> Result<usize, EncodeError> {
        self.broadcast_cluster(&event, None)
    }

    /// Sends an event to every connection except `id` (usually the sender),
    /// on every node of a cluster.
    pub fn broadcast_except(&self, id: ConnId, event: Out) -> Result<usize, EncodeError> {
        self.broadcast_cluster(&event, Some(id))
    }

    /// Sends an event to the connections for which `predicate` returns `true`,
    /// for example by their [`Conn::data`]. Only this node's connections: the
    /// predicate cannot travel to other nodes of a cluster.
    pub fn broadcast_filter(
        &self,
        predicate: impl Fn(&Conn<Out>) -> bool,
        event: Out,
    ) -> Result<usize, EncodeError> {
        self.broadcast_where(&event, predicate)
    }

    fn broadcast_where(
        &self,
        event: &Out,
        predicate: impl Fn(&Conn<Out>) -> bool,
    ) -> Result<usize, EncodeError> {
        self.deliver_local(&mut EncodeOnce::new(|codec| codec.encode(event)), predicate)
    }

    pub(crate) fn deliver_local(
        &self,
        frames: &mut EncodeOnce<impl FnMut(CodecKind) -> Result<crate::codec::Frame, EncodeError>>,
        predicate: impl Fn(&Conn<Out>) -> bool,
    ) -> Result<usize, EncodeError> {
        let mut sent = 0;
        for conn in self.read_conns().values() {
            if predicate(conn)
                && let Ok(frame) = frames.get(conn.meta().codec())
                // A closed or slow connection handles itself; the others still get it.
                && conn.send_encoded(frame.clone()).is_ok()
            {
                sent += 1;
            }
        }
        frames.finish(sent)
    }

    /// Sends `event` as a request to every open connection and collects
    /// their replies as a stream; see [`MultiRequest`].
    pub fn request_all<R: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        event: Out,
    ) -> MultiRequest<Out, R> {
        let request = MultiRequest::new(self.connections(), event);
        match &self.inner.rooms.cluster {
            Some(link) => request.across(
                Arc::clone(link),
                Arc::clone(&self.inner.rooms.waiters),
                crate::cluster::Target::All,
            ),
            None => request,
        }
    }

    /// Sends `event` as a request to the connection `id` wherever it is —
    /// on this node, or, in a cluster, on the node that holds it — and
    /// yields its reply as the stream's one item:
    ///
    /// ```no_run
    /// # use liweb::prelude::*;
    /// # use futures_util::StreamExt;
    /// # use std::time::Duration;
    /// # #[derive(Events)] enum In { Ping }
    /// # #[derive(Events)] enum Out { Confirm(String) }
    /// # async fn ask(server: Server<In, Out>, id: ConnId) -> Result<(), liweb::EncodeError> {
    /// let mut replies = server
    ///     .request_to::<bool>(id, Out::Confirm("sure?".into()))
    ///     .timeout(Duration::from_secs(5))
    ///     .send()?;
    /// if let Some((_, Ok(yes))) = replies.next().await {
    ///     println!("answered {yes}");
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// Nothing comes (the stream ends at the timeout) when no node has the
    /// connection.
    pub fn request_to<R: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        id: ConnId,
        event: Out,
    ) -> MultiRequest<Out, R> {
        match (self.get(id), &self.inner.rooms.cluster) {
            (Some(conn), _) => MultiRequest::new(vec![conn], event),
            (None, Some(link)) => MultiRequest::new(Vec::new(), event).across(
                Arc::clone(link),
                Arc::clone(&self.inner.rooms.waiters),
                crate::cluster::Target::Conn(id),
            ),
            (None, None) => MultiRequest::new(Vec::new(), event),
        }
    }

    /// The server's counters: open connections, and every refusal, drop and
    /// policy close so far.
    pub fn stats(&self) -> Stats {
        let counters = &self.inner.stats;
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Stats {
            connections: self.connection_count(),
            live: self.inner.live.count(),
            rejected_origin: read(&counters.rejected_origin),
            rejected_full: read(&counters.rejected_full),
            rejected_upgrade: read(&counters.rejected_upgrade),
            rejected_shutdown: read(&counters.rejected_shutdown),
            rejected_subprotocol: read(&counters.rejected_subprotocol),
            rate_limited: read(&counters.rate_limited),
            auth_failures: read(&counters.auth_failures),
            auth_timeouts: read(&counters.auth_timeouts),
            slow_consumers: read(&counters.slow_consumers),
            ping_timeouts: read(&counters.ping_timeouts),
            idle_timeouts: read(&counters.idle_timeouts),
        }
    }

    /// Whether [`Server::shutdown`] has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.going_away.load(Ordering::Acquire)
    }

    /// Shuts the server down gracefully: new upgrades are refused with
    /// `503`, every connection is closed with
    /// [`CloseCode::GoingAway`](crate::CloseCode::GoingAway) after what is
    /// already queued for it, and each `on_disconnect` hook runs once. Waits
    /// up to `deadline` for the connections to end, then ends the rest
    /// without waiting for their close handshakes. Returns when every
    /// connection is gone.
    ///
    /// The HTTP listener is the application's: stop it alongside, for
    /// example with axum's `serve(..).with_graceful_shutdown(..)`.
    pub async fn shutdown(&self, deadline: Duration) {
        let at = *self
            .inner
            .shutdown_deadline
            .get_or_init(|| tokio::time::Instant::now() + deadline);
        self.inner.going_away.store(true, Ordering::Release);
        // A connection tracked after this sees the flag itself.
        for conn in self.inner.live.all() {
            conn.close(CloseCode::GoingAway, GOING_AWAY);
        }
        // Every connection's close is bounded by `at`; what remains after it
        // is their `on_disconnect` hooks, given the close timeout to finish.
        self.inner
            .live
            .wait_none(at + self.inner.config.close_timeout)
            .await;
    }

    pub(crate) fn read_conns(&self) -> std::sync::RwLockReadGuard<'_, Connections<Out>> {
        self.inner
            .conns
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The upgrade hook's refusal of a new connection, if it refuses
    /// (counted in the stats); a hook that panics refuses with `500`.
    pub(crate) async fn run_upgrade_hook(&self, meta: &ConnMeta) -> Option<UpgradeRejection> {
        let hook = self.inner.on_upgrade.clone()?;
        let verdict = AssertUnwindSafe(hook(meta.clone())).catch_unwind().await;
        let rejection = match verdict {
            Ok(Ok(())) => return None,
            Ok(Err(rejection)) => rejection,
            Err(panic) => {
                tracing::error!(panic = panic_message(&*panic), "the upgrade hook panicked");
                UpgradeRejection::new(
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                    "upgrade check failed",
                )
            }
        };
        self.inner
            .stats
            .rejected_upgrade
            .fetch_add(1, Ordering::Relaxed);
        Some(rejection)
    }

    fn write_conns(&self) -> std::sync::RwLockWriteGuard<'_, Connections<Out>> {
        self.inner
            .conns
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn register(&self, conn: &Conn<Out>) {
        let mut conns = self.write_conns();
        let order = conns.next;
        conns.next += 1;
        if let Some((old, _)) = conns.by_id.insert(conn.id(), (order, conn.clone())) {
            conns.by_order.remove(&old);
        }
        conns.by_order.insert(order, conn.clone());
    }

    pub(crate) fn unregister(&self, id: ConnId) {
        let mut conns = self.write_conns();
        if let Some((order, _)) = conns.by_id.remove(&id) {
            conns.by_order.remove(&order);
        }
    }

    pub(crate) async fn fire_connect(&self, conn: &Conn<Out>) {
        for hook in &self.inner.on_connect {
            self.run_hook(hook, conn, HookArgs::default()).await;
        }
    }

    pub(crate) async fn fire_disconnect(&self, conn: &Conn<Out>, reason: DisconnectReason) {
        let args = HookArgs {
            reason: Some(&reason),
            ..HookArgs::default()
        };
        for hook in &self.inner.on_disconnect {
            self.run_hook(hook, conn, args).await;
        }
    }

    async fn run_hook(&self, hook: &BoxHook<In, Out>, conn: &Conn<Out>, args: HookArgs<'_>) {
        let mut parts = extract::parts(self, conn, args.reason);
        parts.auth_failure = args.failure;
        let started = std::panic::catch_unwind(AssertUnwindSafe(|| hook(&parts)));
        let outcome = match started {
            Ok(Ok(future)) => AssertUnwindSafe(future)
                .catch_unwind()
                .await
                .map_err(|panic| HandlerError::HookPanicked(panic_message(&*panic))),
            Ok(Err(err)) => Err(HandlerError::Extract(err)),
            Err(panic) => Err(HandlerError::HookPanicked(panic_message(&*panic))),
        };
        if let Err(error) = outcome {
            self.report(conn, None, error);
        }
    }

    pub(crate) fn report(
        &self,
        conn: &Conn<Out>,
        event: Option<&'static str>,
        error: HandlerError,
    ) {
        tracing::warn!(conn = %conn.id(), event, %error, "event handling failed");
        if let Some(hook) = &self.inner.on_error {
            let report = ErrorReport {
                conn: conn.clone(),
                event,
                error,
            };
            if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| hook(report))) {
                tracing::error!(
                    panic = panic_message(&*panic),
                    "the `on_error` hook panicked"
                );
            }
        }
    }

    /// Checks the credentials of `__auth` and ends the pending authentication.
    async fn authenticate(&self, auth: &AuthConfig, conn: &Conn<Out>, payload: RawPayload<'_>) {
        // Bounded: the deadline timer fails the attempt on time, but a
        // strategy that never answers would otherwise keep this dispatch,
        // and so the connection's task and its place among the live
        // connections, forever.
        let checking = auth.check_credentials(payload, conn.meta());
        let verdict = tokio::time::timeout(auth.timeout, checking)
            .await
            .unwrap_or_else(|_elapsed| {
                Err(AuthFailure {
                    reason: AuthReason::Timeout,
                    detail: Some("the auth strategy did not answer in time".into()),
                })
            });
        self.finish_auth(conn, verdict).await;
    }

    /// Ends a pending authentication with the strategy's verdict.
    pub(crate) async fn finish_auth(&self, conn: &Conn<Out>, verdict: Verdict) {
        let user = match verdict {
            Ok(user) => user,
            Err(failure) => return self.fail_auth(conn, failure).await,
        };
        let frame = match user.success_frame(conn.meta().codec()) {
            Ok(frame) => frame,
            Err(err) => {
                let detail = format!("cannot encode the user: {err}");
                tracing::error!(conn = %conn.id(), %detail, "authentication failed");
                let failure = AuthFailure {
                    reason: AuthReason::InvalidCredentials,
                    detail: Some(detail),
                };
                return self.fail_auth(conn, failure).await;
            }
        };
        // A timeout may have ended the attempt while the strategy ran.
        if !conn.inner.settle_auth(true) {
            return;
        }
        user.install(&conn.inner);
        // `auth:success` is the first thing the connection hears once it is
        // reachable, so it goes out before the connection is registered.
        let _ = conn.send_encoded(frame);
        self.register(conn);
        for hook in &self.inner.on_auth_success {
            self.run_hook(hook, conn, HookArgs::default()).await;
        }
        self.fire_connect(conn).await;
    }

    /// Fails a pending authentication: `auth:error`, the close code of the
    /// cause, the `on_auth_error` hooks. Does nothing if it already ended.
    pub(crate) async fn fail_auth(&self, conn: &Conn<Out>, failure: AuthFailure) {
        if !conn.inner.settle_auth(false) {
            return;
        }
        let counter = match failure.reason {
            AuthReason::Timeout => &self.inner.stats.auth_timeouts,
            _ => &self.inner.stats.auth_failures,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(conn = %conn.id(), reason = %failure.reason, detail = ?failure.detail, "authentication failed");
        if let Ok(frame) = auth::error_frame(conn.meta().codec(), failure.reason.as_str()) {
            let _ = conn.send_encoded(frame);
        }
        conn.close(failure.reason.close_code(), failure.reason.as_str());
        let args = HookArgs {
            failure: Some(&failure),
            ..HookArgs::default()
        };
        for hook in &self.inner.on_auth_error {
            self.run_hook(hook, conn, args).await;
        }
    }

    /// Dispatches one text frame as if `conn` had sent it; for benchmarks.
    #[doc(hidden)]
    pub async fn dispatch_text(&self, conn: &Conn<Out>, text: &'static str) {
        self.dispatch(conn, conn.meta().codec(), InFrame::from_static(text))
            .await;
    }

    /// Resolves the pending request a reply (`__ack`) answers; `false` when
    /// the frame is not a reply. Only frames that mention `__ack` at all are
    /// decoded here, so ordinary events are still read once.
    pub(crate) fn take_reply(&self, conn: &Conn<Out>, codec: CodecKind, frame: &InFrame) -> bool {
        if frame.is_text() != codec.is_text() || !codec.may_be_reply(frame.input()) {
            return false;
        }
        match codec.decode_frame(frame.input()) {
            Ok(raw) if raw.event == ACK_EVENT => {
                match raw.ack {
                    Some(id) => ack::resolve(&conn.inner, id, raw.payload, raw.error),
                    None => conn.send_error(
                        ErrorCode::BadFrame,
                        "`__ack` needs the `ack` id of the request it answers".to_owned(),
                        Some(ACK_EVENT),
                    ),
                }
                true
            }
            _ => false,
        }
    }

    /// Decodes one inbound frame and runs the handlers of its event in
    /// registration order. Bad input is answered with an `error` event (or,
    /// for a request, an error reply).
    pub(crate) async fn dispatch(&self, conn: &Conn<Out>, codec: CodecKind, frame: InFrame) {
        let text = frame.is_text();
        if text != codec.is_text() {
            let message = if text {
                "text frames are not accepted on a binary connection"
            } else {
                "binary frames are not accepted on a JSON connection"
            };
            conn.send_error(ErrorCode::UnsupportedFrame, message.to_owned(), None);
            return;
        }
        let raw = match codec.decode_frame(frame.input()) {
            Ok(raw) => raw,
            Err(err) => {
                conn.send_error(ErrorCode::BadFrame, err.to_string(), None);
                return;
            }
        };
        match &*raw.event {
            ACK_EVENT => {
                match raw.ack {
                    Some(id) => ack::resolve(&conn.inner, id, raw.payload, raw.error),
                    None => conn.send_error(
                        ErrorCode::BadFrame,
                        "`__ack` needs the `ack` id of the request it answers".to_owned(),
                        Some(ACK_EVENT),
                    ),
                }
                return;
            }
            // A second `__auth`, or one to a server without auth, is ignored.
            AUTH_EVENT => {
                if let (Some(auth), true) = (&self.inner.auth, conn.inner.is_auth_pending()) {
                    // Boxed: it runs once per connection, and inline it would
                    // grow every connection's task for its whole life.
                    Box::pin(self.authenticate(auth, conn, raw.payload)).await;
                }
                return;
            }
            _ => {}
        }
        if !conn.inner.is_open() {
            if let Ok(frame) = auth::error_frame(codec, auth::NOT_AUTHENTICATED) {
                let _ = conn.send_encoded(frame);
            }
            return;
        }
        let ack = raw.ack.map(|id| AckSlot::new(id, Arc::clone(&conn.inner)));
        let Some(index) = In::index_of(&raw.event) else {
            let message = format!("unknown event `{}`", raw.event);
            match &ack {
                Some(slot) => slot.reply_error(ErrorCode::UnknownEvent, message, Some(&raw.event)),
                None => conn.send_error(ErrorCode::UnknownEvent, message, Some(&raw.event)),
            }
            return;
        };
        let name = In::NAMES[index];
        if let Some(hook) = &self.inner.on_message
            && let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| hook(conn, name)))
        {
            self.report(
                conn,
                Some(name),
                HandlerError::HookPanicked(panic_message(&*panic)),
            );
        }
        if self.inner.middleware.is_empty() {
            self.run_handlers(conn, index, raw.payload, ack.as_ref())
                .await;
        } else {
            drop(raw);
            let envelope = Envelope {
                conn: conn.clone(),
                index,
                event: name,
                ack,
                frame,
            };
            self.run_chain(0, envelope).await;
        }
    }

    /// Runs middleware step `position` and, through it, the rest.
    pub(crate) fn run_chain(
        &self,
        position: usize,
        envelope: Envelope<Out>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let Some(step) = self.inner.middleware.get(position) else {
                return self.run_final(envelope).await;
            };
            let conn = envelope.conn.clone();
            let event = envelope.event;
            let ack = envelope.ack.clone();
            let passed = step
                .options
                .timeout
                .map(|_| Arc::new(AtomicBool::new(false)));
            let next = Next {
                server: self.clone(),
                position: position + 1,
                passed: passed.clone(),
            };
            let future = AssertUnwindSafe(step.middleware.call(envelope, next)).catch_unwind();
            let result = match (step.options.timeout, &passed) {
                (Some(timeout), Some(passed)) => {
                    match middleware::until_passed(future, passed, timeout).await {
                        Some(result) => result,
                        None => {
                            return self.middleware_failed(
                                &conn,
                                ack.as_deref(),
                                &step.options.on_error,
                                MiddlewareError::TimedOut { event, timeout },
                            );
                        }
                    }
                }
                _ => future.await,
            };
            let error = match result {
                Ok(Ok(())) => return,
                Ok(Err(source)) => MiddlewareError::Failed { event, source },
                Err(panic) => MiddlewareError::Failed {
                    event,
                    source: format!("middleware panicked: {}", panic_message(&*panic)).into(),
                },
            };
            self.middleware_failed(&conn, ack.as_deref(), &step.options.on_error, error);
        })
    }

    fn middleware_failed(
        &self,
        conn: &Conn<Out>,
        ack: Option<&AckSlot>,
        policy: &ErrorPolicy,
        error: MiddlewareError,
    ) {
        tracing::debug!(conn = %conn.id(), %error, "middleware stopped an event");
        if let Some(slot) = ack {
            slot.reply_error(ErrorCode::Rejected, error.to_string(), None);
        }
        match policy {
            ErrorPolicy::Ignore => {}
            ErrorPolicy::Close => {
                conn.close(CloseCode::PolicyViolation, "rejected by middleware");
            }
            ErrorPolicy::Callback(callback) => {
                let id = conn.id();
                if let Err(panic) =
                    std::panic::catch_unwind(AssertUnwindSafe(|| callback(id, &error)))
                {
                    tracing::error!(
                        panic = panic_message(&*panic),
                        "a middleware error callback panicked"
                    );
                }
            }
        }
    }

    /// The end of the middleware chain: the handlers.
    async fn run_final(&self, envelope: Envelope<Out>) {
        let codec = envelope.conn.meta().codec();
        // Read the envelope again for the payload: it was checked on the way in.
        let raw = match codec.decode_frame(envelope.frame.input()) {
            Ok(raw) => raw,
            Err(err) => {
                envelope
                    .conn
                    .send_error(ErrorCode::BadFrame, err.to_string(), None);
                return;
            }
        };
        self.run_handlers(
            &envelope.conn,
            envelope.index,
            raw.payload,
            envelope.ack.as_ref(),
        )
        .await;
    }

    /// Runs the handlers of event `index` in registration order, answering a
    /// request with the first reply (or `null`, or the first error).
    async fn run_handlers(
        &self,
        conn: &Conn<Out>,
        index: usize,
        payload: RawPayload<'_>,
        ack: Option<&Arc<AckSlot>>,
    ) {
        let name = In::NAMES[index];
        // The table has one slot per event index, built from `In::NAMES`.
        let handlers = self
            .inner
            .table
            .get(index)
            .map_or(&[][..], |slot| &slot[..]);
        if handlers.is_empty() {
            if let Some(slot) = ack {
                let message = format!("event `{name}` has no handler");
                slot.reply_error(ErrorCode::NoHandler, message, Some(name));
            }
            return;
        }
        for handler in handlers {
            let call = Call {
                server: self,
                conn,
                payload,
                ack,
            };
            let future = match std::panic::catch_unwind(AssertUnwindSafe(|| handler.call(call))) {
                Ok(Ok(future)) => future,
                Ok(Err(crate::error::ExtractError::Decode(err))) => {
                    // Every handler of the slot decodes the same type: none can run.
                    match ack {
                        Some(slot) => {
                            slot.reply_error(ErrorCode::BadPayload, err.to_string(), Some(name))
                        }
                        None => conn.send_error(ErrorCode::BadPayload, err.to_string(), Some(name)),
                    }
                    return;
                }
                Ok(Err(err)) => {
                    if let Some(slot) = ack {
                        slot.reply_error(
                            ErrorCode::HandlerFailed,
                            "handler not run".into(),
                            Some(name),
                        );
                    }
                    self.report(conn, Some(name), HandlerError::Extract(err));
                    continue;
                }
                Err(panic) => {
                    if let Some(slot) = ack {
                        slot.reply_error(
                            ErrorCode::HandlerFailed,
                            "handler panicked".into(),
                            Some(name),
                        );
                    }
                    self.report(
                        conn,
                        Some(name),
                        HandlerError::Panicked(panic_message(&*panic)),
                    );
                    continue;
                }
            };
            match AssertUnwindSafe(future).catch_unwind().await {
                Ok(Ok(Outcome::Done(reply))) => {
                    if let (Some(slot), Some(reply)) = (ack, reply)
                        && let Err(err) = slot.reply(reply)
                    {
                        tracing::debug!(conn = %conn.id(), event = name, %err, "reply not sent");
                    }
                }
                Ok(Ok(Outcome::Rejected(reason))) => match ack {
                    Some(slot) => slot.reply_error(ErrorCode::Forbidden, reason, Some(name)),
                    None => conn.send_error(ErrorCode::Forbidden, reason, Some(name)),
                },
                Ok(Err(err)) => {
                    if let Some(slot) = ack {
                        slot.reply_error(ErrorCode::HandlerFailed, err.to_string(), Some(name));
                    }
                    self.report(conn, Some(name), HandlerError::Returned(err));
                }
                Err(panic) => {
                    if let Some(slot) = ack {
                        slot.reply_error(
                            ErrorCode::HandlerFailed,
                            "handler panicked".into(),
                            Some(name),
                        );
                    }
                    self.report(
                        conn,
                        Some(name),
                        HandlerError::Panicked(panic_message(&*panic)),
                    );
                }
            }
        }
        if let Some(slot) = ack {
            slot.reply_null();
        }
    }
}

/// What a hook may extract beyond the connection and the server.
#[derive(Clone, Copy, Default)]
struct HookArgs<'a> {
    reason: Option<&'a DisconnectReason>,
    failure: Option<&'a AuthFailure>,
}

/// Builds a [`Server`]: handlers, state, hooks and limits.
pub struct ServerBuilder<In, Out> {
    table: Vec<Vec<Box<dyn DynHandler<In, Out>>>>,
    states: http::Extensions,
    on_connect: Vec<BoxHook<In, Out>>,
    on_disconnect: Vec<BoxHook<In, Out>>,
    on_auth_success: Vec<BoxHook<In, Out>>,
    on_auth_error: Vec<BoxHook<In, Out>>,
    on_message: Option<MessageHook<Out>>,
    on_upgrade: Option<UpgradeHook>,
    on_error: Option<ErrorHook<Out>>,
    middleware: Vec<Step<In, Out>>,
    auth: Option<AuthConfig>,
    state_store: Option<Arc<dyn StateStore>>,
    presence_store: Option<Arc<dyn PresenceStore>>,
    presence_ttl: Duration,
    join_guards: HashMap<Arc<str>, JoinGuard<Out>>,
    join_guard_timeout: Duration,
    channel_defaults: HashMap<Arc<str>, RoomDefaults>,
    config: Config,
    pub(crate) cluster: Option<crate::cluster::Parts>,
}

impl<In, Out> fmt::Debug for ServerBuilder<In, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<In: Events, Out: Events> ServerBuilder<In, Out> {
    fn new() -> Self {
        Self {
            table: (0..In::NAMES.len()).map(|_| Vec::new()).collect(),
            states: http::Extensions::new(),
            on_connect: Vec::new(),
            on_disconnect: Vec::new(),
            on_auth_success: Vec::new(),
            on_auth_error: Vec::new(),
            on_message: None,
            on_upgrade: None,
            on_error: None,
            middleware: Vec::new(),
            auth: None,
            state_store: None,
            presence_store: None,
            presence_ttl: Duration::from_secs(5 * 60),
            join_guards: HashMap::new(),
            join_guard_timeout: Duration::from_secs(5),
            channel_defaults: HashMap::new(),
            config: Config::default(),
            cluster: None,
        }
    }

    /// Adds a handler (a function marked `#[liweb::handler(In::Variant)]`) to
    /// its event's slot. Several handlers of one event run in the order they
    /// were added.
    pub fn handler<H: Handler<In, Out>>(mut self, handler: impl IntoHandler<H>) -> Self {
        self.table[<H::Event as crate::EventKey>::INDEX].push(Box::new(handler.into_handler()));
        self
    }

    /// Adds every handler of a list, in order; see [`handlers!`](crate::handlers)
    /// for the exhaustive check.
    pub fn handlers(mut self, list: HandlerList<In, Out>) -> Self {
        for (index, handler) in list.entries {
            self.table[index].push(handler);
        }
        self
    }

    /// Registers a state value, extracted in handlers with [`State<T>`](crate::State).
    /// One value per type; a second value of the same type replaces the first.
    pub fn state<T: Clone + Send + Sync + 'static>(mut self, state: T) -> Self {
        self.states.insert(state);
        self
    }

    /// Runs `hook` when a connection opens, before any of its events is
    /// handled. The hook's arguments are extractors (`Conn<Out>`,
    /// `Server<In, Out>`, `State<T>`, ...).
    pub fn on_connect<M, H: Hook<In, Out, M>>(mut self, hook: H) -> Self {
        self.on_connect.push(box_hook(hook));
        self
    }

    /// Runs `hook` once when a connection has ended, after its last event was
    /// handled; it is no longer counted or reachable. `DisconnectReason` is an
    /// extractor here.
    pub fn on_disconnect<M, H: Hook<In, Out, M>>(mut self, hook: H) -> Self {
        self.on_disconnect.push(box_hook(hook));
        self
    }

    /// Receives handler errors, handler panics, failed extractions and hook
    /// panics. Without it they are only logged through `tracing`.
    pub fn on_error(mut self, hook: impl Fn(ErrorReport<Out>) + Send + Sync + 'static) -> Self {
        self.on_error = Some(Box::new(hook));
        self
    }

    /// Turns authentication on with a strategy; see [`auth`](crate::auth).
    pub fn auth<U: AuthUser>(mut self, auth: Auth<U>) -> Self {
        self.auth = Some(auth.config);
        self
    }

    /// Runs `hook` when a connection authenticates, before `on_connect`.
    /// [`User<U>`](crate::auth::User) is an extractor here.
    pub fn on_auth_success<M, H: Hook<In, Out, M>>(mut self, hook: H) -> Self {
        self.on_auth_success.push(box_hook(hook));
        self
    }

    /// Runs `hook` when a connection fails to authenticate (refused, bad
    /// payload, timeout), after `auth:error` is sent and the close begun.
    /// [`AuthFailure`] is an extractor here. A client that disconnects
    /// while authenticating does not fire it.
    pub fn on_auth_error<M, H: Hook<In, Out, M>>(mut self, hook: H) -> Self {
        self.on_auth_error.push(box_hook(hook));
        self
    }

    /// Calls `hook` with the connection and the event's wire name for every
    /// event of `In` that passed authentication and the rate limit, before
    /// middleware and handlers; for metrics and logs. Keep it quick: it runs
    /// inline.
    pub fn on_message(
        mut self,
        hook: impl Fn(&Conn<Out>, &'static str) + Send + Sync + 'static,
    ) -> Self {
        self.on_message = Some(Box::new(hook));
        self
    }

    /// Checks every upgrade request before it becomes a connection; an
    /// `Err` refuses it with that HTTP status and no connection (and no
    /// hook) comes of it.
    ///
    /// ```
    /// # use liweb::prelude::*;
    /// # #[derive(Events)] enum In { Ping }
    /// # #[derive(Events)] enum Out { Pong }
    /// use liweb::UpgradeRejection;
    ///
    /// let server = Server::<In, Out>::builder()
    ///     .on_upgrade(|meta: ConnMeta| async move {
    ///         match meta.headers().get("x-api-key") {
    ///             Some(_) => Ok(()),
    ///             None => Err(UpgradeRejection::new(http::StatusCode::UNAUTHORIZED, "no key")),
    ///         }
    ///     })
    ///     .build();
    /// ```
    pub fn on_upgrade<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(ConnMeta) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), UpgradeRejection>> + Send + 'static,
    {
        self.on_upgrade = Some(Arc::new(move |meta| Box::pin(hook(meta))));
        self
    }

    /// Adds a middleware step around dispatch, after those added before; see
    /// [`middleware`](crate::middleware).
    pub fn middleware<M: Middleware<In, Out>>(self, middleware: M) -> Self {
        self.middleware_with(middleware, MiddlewareOptions::default())
    }

    /// Adds a middleware step with a timeout and an error policy.
    pub fn middleware_with<M: Middleware<In, Out>>(
        mut self,
        middleware: M,
        options: MiddlewareOptions,
    ) -> Self {
        self.middleware.push(Step {
            middleware: Box::new(middleware),
            options,
        });
        self
    }

    /// The heartbeat: a ping every `interval`, and a close when one goes
    /// unanswered for `timeout`; see [`Config::ping_interval`].
    pub fn heartbeat(mut self, interval: Duration, timeout: Duration) -> Self {
        self.config.ping_interval = Some(interval);
        self.config.ping_timeout = timeout;
        self
    }

    /// Turns the heartbeat off.
    pub fn no_heartbeat(mut self) -> Self {
        self.config.ping_interval = None;
        self
    }

    /// Closes connections that send nothing for `timeout`; see
    /// [`Config::idle_timeout`].
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = Some(timeout);
        self
    }

    /// The most connections at once; see [`Config::max_connections`].
    pub fn max_connections(mut self, max: usize) -> Self {
        self.config.max_connections = Some(max);
        self
    }

    /// The most events per second per connection; see
    /// [`Config::max_events_per_second`].
    pub fn max_events_per_second(mut self, max: u32) -> Self {
        self.config.max_events_per_second = Some(max);
        self
    }

    /// The origins allowed to connect; see [`Config::allowed_origins`].
    pub fn allowed_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.allowed_origins = Some(origins.into_iter().map(Into::into).collect());
        self
    }

    /// Where room state lives; an in-memory [`MemoryStore`] by default.
    pub fn state_store(mut self, store: Arc<dyn StateStore>) -> Self {
        self.state_store = Some(store);
        self
    }

    /// Where room presence lives; an in-memory [`MemoryPresence`] by default.
    pub fn presence_store(mut self, store: Arc<dyn PresenceStore>) -> Self {
        self.presence_store = Some(store);
        self
    }

    /// How long an offline presence record is kept (default 5 minutes); used
    /// by the default presence store.
    pub fn presence_ttl(mut self, ttl: Duration) -> Self {
        self.presence_ttl = ttl;
        self
    }

    /// Checks every join of a room of `channel`: the guard gets the
    /// connection and the room and answers `Ok(())` or a [`JoinRejected`]
    /// whose reason the client receives. One guard per channel; a second
    /// replaces the first.
    pub fn join_guard<F, Fut>(mut self, channel: &str, guard: F) -> Self
    where
        F: Fn(Conn<Out>, RoomKey) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), JoinRejected>> + Send + 'static,
    {
        let guard: JoinGuard<Out> = Arc::new(move |conn, room| Box::pin(guard(conn, room)));
        self.join_guards.insert(Arc::from(channel), guard);
        self
    }

    /// What new rooms of `channel` start with: state sync and presence
    /// events on from the first join, so no early joiner misses a snapshot.
    ///
    /// ```
    /// # use liweb::prelude::*;
    /// # #[derive(Events)] enum In { Vote(String) }
    /// # #[derive(Events)] enum Out { Voted }
    /// use liweb::RoomDefaults;
    ///
    /// let server = Server::<In, Out>::builder()
    ///     .channel_defaults("poll", RoomDefaults::new().sync(true).presence_events(true))
    ///     .build();
    /// ```
    pub fn channel_defaults(mut self, channel: &str, defaults: RoomDefaults) -> Self {
        self.channel_defaults.insert(Arc::from(channel), defaults);
        self
    }

    /// How long a join guard may take before the join fails with
    /// [`JoinError::TimedOut`](crate::JoinError::TimedOut) (default 5 s).
    pub fn join_guard_timeout(mut self, timeout: Duration) -> Self {
        self.join_guard_timeout = timeout;
        self
    }

    /// The largest inbound frame in bytes; see [`Config::max_frame_size`].
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.config.max_frame_size = bytes;
        self
    }

    /// The outbound queue limit per connection; see [`Config::max_queue_bytes`].
    pub fn max_queue_bytes(mut self, bytes: usize) -> Self {
        self.config.max_queue_bytes = bytes;
        self
    }

    /// How long a close handshake may take; see [`Config::close_timeout`].
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.config.close_timeout = timeout;
        self
    }

    /// The read buffer per connection; see [`Config::read_buffer_size`].
    pub fn read_buffer_size(mut self, bytes: usize) -> Self {
        self.config.read_buffer_size = bytes;
        self
    }

    /// Finishes the server.
    ///
    /// Inside a tokio runtime this also starts one task that expires offline
    /// presence records every `presence_ttl` (at most every minute); it ends
    /// when the last handle to the server is dropped.
    pub fn build(self) -> Server<In, Out> {
        let sweep_every = self
            .presence_ttl
            .clamp(Duration::from_millis(100), Duration::from_secs(60));
        let (link, cluster_state, attach) = match self.cluster {
            Some(parts) => (Some(parts.link), Some(parts.state), Some(parts.attach)),
            None => (None, None, None),
        };
        let server = Server {
            inner: Arc::new(Inner {
                table: self.table.into_iter().map(Vec::into_boxed_slice).collect(),
                states: self.states,
                conns: RwLock::new(Connections::default()),
                on_connect: self.on_connect,
                on_disconnect: self.on_disconnect,
                on_auth_success: self.on_auth_success,
                on_auth_error: self.on_auth_error,
                on_message: self.on_message,
                on_upgrade: self.on_upgrade,
                on_error: self.on_error,
                middleware: self.middleware,
                auth: self.auth,
                stats: Counters::default(),
                live: Arc::default(),
                going_away: AtomicBool::new(false),
                shutdown_deadline: std::sync::OnceLock::new(),
                rooms: Registry::new(
                    self.state_store
                        .or(cluster_state)
                        .unwrap_or_else(|| Arc::new(MemoryStore::default())),
                    self.presence_store
                        .unwrap_or_else(|| Arc::new(MemoryPresence::new(self.presence_ttl))),
                    self.join_guards,
                    self.join_guard_timeout,
                    self.channel_defaults,
                    link,
                ),
                config: self.config,
            }),
        };
        if let Some(attach) = attach {
            crate::cluster::local::attach(&server, attach);
        }
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(sweep_presence(
                Arc::downgrade(&server.inner.rooms),
                sweep_every,
            ));
        }
        server
    }
}

/// Expires offline presence records of rooms nobody reads, so they do not
/// pile up; stops once the server is gone.
async fn sweep_presence<Out: Events>(registry: std::sync::Weak<Registry<Out>>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(registry) = registry.upgrade() else {
            return;
        };
        registry.presence.sweep(crate::presence::now_ms());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde::{Serialize, Serializer};

    use super::*;
    use crate::transport::Outbound;

    static SERIALIZED: AtomicUsize = AtomicUsize::new(0);

    /// Counts how often it is serialized.
    #[derive(Debug, Clone, PartialEq, serde::Deserialize)]
    pub(crate) struct Counted(u32);

    impl Serialize for Counted {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            SERIALIZED.fetch_add(1, Ordering::SeqCst);
            serializer.serialize_u32(self.0)
        }
    }

    #[derive(Debug, crate::Events)]
    pub(crate) enum In {
        Noop,
    }

    /// A payload bincode cannot write: `flatten` serializes as a map of
    /// unknown length.
    #[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
    pub(crate) struct Flat {
        #[serde(flatten)]
        extra: HashMap<String, u32>,
    }

    #[derive(Debug, crate::Events)]
    pub(crate) enum Out {
        Counted(Counted),
        Flat(Flat),
    }

    #[test]
    fn a_broadcast_is_serialized_once_for_every_connection() {
        let server = Server::<In, Out>::builder().build();
        let mut receivers = Vec::new();
        for _ in 0..5 {
            let (conn, rx) = Conn::<Out>::detached(CodecKind::Json);
            server.register(&conn);
            receivers.push(rx);
        }
        let before = SERIALIZED.load(Ordering::SeqCst);
        assert_eq!(server.broadcast(Out::Counted(Counted(7))).unwrap(), 5);
        assert_eq!(SERIALIZED.load(Ordering::SeqCst) - before, 1);

        let mut first = None;
        for rx in &mut receivers {
            let Ok(Outbound::Frame(frame)) = rx.try_recv() else {
                panic!("every connection got a frame");
            };
            assert_eq!(frame.as_bytes(), br#"{"event":"counted","payload":7}"#);
            // The same allocation is shared, not copied per connection.
            let ptr = frame.as_bytes().as_ptr();
            assert_eq!(*first.get_or_insert(ptr), ptr);
        }
    }

    #[cfg(all(feature = "msgpack", feature = "bincode"))]
    #[test]
    fn a_broadcast_is_serialized_once_for_every_codec_in_use() {
        use crate::event::PayloadDecoder;

        let server = Server::<In, Out>::builder().build();
        let codecs = [
            CodecKind::Json,
            CodecKind::MessagePack,
            CodecKind::Bincode,
            CodecKind::MessagePack,
            CodecKind::Json,
            CodecKind::Bincode,
        ];
        let mut receivers = Vec::new();
        for codec in codecs {
            let (conn, rx) = Conn::<Out>::detached(codec);
            server.register(&conn);
            receivers.push((codec, rx));
        }
        let before = SERIALIZED.load(Ordering::SeqCst);
        assert_eq!(server.broadcast(Out::Counted(Counted(7))).unwrap(), 6);
        assert_eq!(SERIALIZED.load(Ordering::SeqCst) - before, 3);

        let mut shared = HashMap::new();
        for (codec, rx) in &mut receivers {
            let Ok(Outbound::Frame(frame)) = rx.try_recv() else {
                panic!("every connection got a frame");
            };
            assert_eq!(frame.is_text(), codec.is_text());
            let input = if frame.is_text() {
                crate::codec::Input::Text(std::str::from_utf8(frame.as_bytes()).unwrap())
            } else {
                crate::codec::Input::Binary(frame.as_bytes())
            };
            let raw = codec.decode_frame(input).unwrap();
            assert_eq!(raw.event, "counted");
            assert_eq!(raw.payload.decode::<Counted>().unwrap(), Counted(7));
            // Connections of one codec share one allocation.
            let ptr = frame.as_bytes().as_ptr();
            assert_eq!(*shared.entry(*codec).or_insert(ptr), ptr);
        }
        assert_eq!(shared.len(), 3);
    }

    #[cfg(all(feature = "msgpack", feature = "bincode"))]
    #[test]
    fn a_codec_that_cannot_encode_a_broadcast_fails_for_its_own_connections_only() {
        let server = Server::<In, Out>::builder().build();
        let codecs = [
            CodecKind::Bincode,
            CodecKind::Json,
            CodecKind::Bincode,
            CodecKind::MessagePack,
            CodecKind::Json,
        ];
        let mut receivers = Vec::new();
        for codec in codecs {
            let (conn, rx) = Conn::<Out>::detached(codec);
            server.register(&conn);
            receivers.push((codec, rx));
        }
        let flat = Flat {
            extra: HashMap::from([("a".to_owned(), 1)]),
        };
        let err = server.broadcast(Out::Flat(flat)).unwrap_err();
        assert!(err.to_string().starts_with("cannot encode event"), "{err}");
        for (codec, rx) in &mut receivers {
            let got = rx.try_recv();
            if *codec == CodecKind::Bincode {
                assert!(got.is_err(), "bincode cannot carry it: {got:?}");
            } else {
                assert!(
                    matches!(got, Ok(Outbound::Frame(_))),
                    "{codec:?} still gets it: {got:?}"
                );
            }
        }
    }
}
