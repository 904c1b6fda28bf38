//! The server: builder, configuration, and the cloneable handle handlers use.

use std::{
    collections::HashMap,
    fmt,
    panic::AssertUnwindSafe,
    sync::{Arc, RwLock},
    time::Duration,
};

use futures_util::FutureExt;

use crate::{
    codec::{CodecKind, EncodeOnce, InFrame},
    conn::{Conn, ConnId, DisconnectReason},
    error::{EncodeError, HandlerError, panic_message},
    event::Events,
    extract,
    handler::{BoxHook, Call, DynHandler, Handler, HandlerList, Hook, IntoHandler, box_hook},
    hooks::ErrorReport,
    presence::{MemoryPresence, PresenceStore},
    protocol::ErrorCode,
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
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_frame_size: 64 * 1024,
            max_queue_bytes: 1024 * 1024,
            close_timeout: Duration::from_secs(2),
            read_buffer_size: 4 * 1024,
        }
    }
}

type ErrorHook<Out> = Box<dyn Fn(ErrorReport<Out>) + Send + Sync>;

/// The handlers of one event, in registration order.
type Slot<In, Out> = Box<[Box<dyn DynHandler<In, Out>>]>;

pub(crate) struct Inner<In, Out> {
    table: Box<[Slot<In, Out>]>,
    states: http::Extensions,
    conns: RwLock<HashMap<ConnId, Conn<Out>>>,
    on_connect: Vec<BoxHook<In, Out>>,
    on_disconnect: Vec<BoxHook<In, Out>>,
    on_error: Option<ErrorHook<Out>>,
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

    /// The open connection with this id.
    pub fn get(&self, id: ConnId) -> Option<Conn<Out>> {
        self.read_conns().get(&id).cloned()
    }

    /// Every open connection.
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
            if predicate(conn) {
                let frame = frames.get(conn.meta().codec())?;
                // A closed or slow connection handles itself; the others still get it.
                if conn.send_encoded(frame.clone()).is_ok() {
                    sent += 1;
                }
            }
        }
        Ok(sent)
    }

    pub(crate) fn read_conns(&self) -> std::sync::RwLockReadGuard<'_, HashMap<ConnId, Conn<Out>>> {
        self.inner
            .conns
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn register(&self, conn: &Conn<Out>) {
        self.inner
            .conns
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(conn.id(), conn.clone());
    }

    pub(crate) fn unregister(&self, id: ConnId) {
        self.inner
            .conns
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&id);
    }

    pub(crate) async fn fire_connect(&self, conn: &Conn<Out>) {
        for hook in &self.inner.on_connect {
            self.run_hook(hook, conn, None).await;
        }
    }

    pub(crate) async fn fire_disconnect(&self, conn: &Conn<Out>, reason: DisconnectReason) {
        for hook in &self.inner.on_disconnect {
            self.run_hook(hook, conn, Some(&reason)).await;
        }
    }

    async fn run_hook(
        &self,
        hook: &BoxHook<In, Out>,
        conn: &Conn<Out>,
        reason: Option<&DisconnectReason>,
    ) {
        let started = std::panic::catch_unwind(AssertUnwindSafe(|| {
            hook(&extract::parts(self, conn, reason))
        }));
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

    /// Dispatches one text frame as if `conn` had sent it; for benchmarks.
    #[doc(hidden)]
    pub async fn dispatch_text(&self, conn: &Conn<Out>, text: &'static str) {
        self.dispatch(conn, conn.meta().codec(), InFrame::from_static(text))
            .await;
    }

    /// Decodes one inbound frame and runs the handlers of its event in
    /// registration order. Bad input is answered with an `error` event.
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
        let frame = match codec.decode_frame(frame.input()) {
            Ok(frame) => frame,
            Err(err) => {
                conn.send_error(ErrorCode::BadFrame, err.to_string(), None);
                return;
            }
        };
        let Some(index) = In::index_of(&frame.event) else {
            conn.send_error(
                ErrorCode::UnknownEvent,
                format!("unknown event `{}`", frame.event),
                Some(&frame.event),
            );
            return;
        };
        let name = In::NAMES[index];
        // The table has one slot per event index, built from `In::NAMES`.
        let Some(handlers) = self.inner.table.get(index) else {
            return;
        };
        for handler in handlers {
            let call = Call {
                server: self,
                conn,
                payload: frame.payload,
            };
            let future = match std::panic::catch_unwind(AssertUnwindSafe(|| handler.call(call))) {
                Ok(Ok(future)) => future,
                Ok(Err(crate::error::ExtractError::Decode(err))) => {
                    // Every handler of the slot decodes the same type: none can run.
                    conn.send_error(ErrorCode::BadPayload, err.to_string(), Some(name));
                    return;
                }
                Ok(Err(err)) => {
                    self.report(conn, Some(name), HandlerError::Extract(err));
                    continue;
                }
                Err(panic) => {
                    self.report(
                        conn,
                        Some(name),
                        HandlerError::Panicked(panic_message(&*panic)),
                    );
                    continue;
                }
            };
            match AssertUnwindSafe(future).catch_unwind().await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => self.report(conn, Some(name), HandlerError::Returned(err)),
                Err(panic) => self.report(
                    conn,
                    Some(name),
                    HandlerError::Panicked(panic_message(&*panic)),
                ),
            }
        }
    }
}

/// Builds a [`Server`]: handlers, state, hooks and limits.
pub struct ServerBuilder<In, Out> {
    table: Vec<Vec<Box<dyn DynHandler<In, Out>>>>,
    states: http::Extensions,
    on_connect: Vec<BoxHook<In, Out>>,
    on_disconnect: Vec<BoxHook<In, Out>>,
    on_error: Option<ErrorHook<Out>>,
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
            on_error: None,
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
                conns: RwLock::new(HashMap::new()),
                on_connect: self.on_connect,
                on_disconnect: self.on_disconnect,
                on_error: self.on_error,
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
    use crate::conn::Outbound;

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

    #[derive(Debug, crate::Events)]
    pub(crate) enum Out {
        Counted(Counted),
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
}
