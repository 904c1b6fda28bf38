//! [`ServerBuilder`]: handlers, state, hooks, middleware, stores, limits.

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    sync::{Arc, RwLock, atomic::AtomicBool},
    time::Duration,
};

use super::{
    Inner, Server,
    config::{Config, Counters, UpgradeRejection},
    hooks::{ErrorHook, ErrorReport, MessageHook, UpgradeHook},
    live::Connections,
};
use crate::{
    auth::throttle::AuthThrottle,
    auth::{Auth, AuthConfig, AuthUser},
    conn::{Conn, meta::ConnMeta, queue::Budget},
    event::Events,
    handler::{
        DynHandler, Handler, HandlerList, IntoHandler,
        hook::{BoxHook, Hook, box_hook},
    },
    middleware::{Middleware, MiddlewareOptions, Step},
    presence::{MemoryPresence, PresenceStore},
    request::Waiters,
    room::{
        JoinGuard, JoinRejected, RoomDefaults,
        key::RoomKey,
        registry::{JoinLimits, Registry},
    },
    state::{MemoryStore, StateStore},
};

impl<In: Events, Out: Events> Server<In, Out> {
    /// Starts building a server.
    pub fn builder() -> ServerBuilder<In, Out> {
        ServerBuilder::new()
    }
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
    pub(crate) fn new() -> Self {
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
    /// [`AuthFailure`](crate::auth::AuthFailure) is an extractor here. A client that disconnects
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

    /// The most connections at once (default 10,000); `None` lifts the
    /// limit. See [`Config::max_connections`].
    pub fn max_connections(mut self, max: impl Into<Option<usize>>) -> Self {
        self.config.max_connections = max.into();
        self
    }

    /// The most events per second per connection, on average (default 100);
    /// `None` lifts the limit. See [`Config::max_events_per_second`].
    pub fn max_events_per_second(mut self, max: impl Into<Option<u32>>) -> Self {
        self.config.max_events_per_second = max.into();
        self
    }

    /// How many events a connection may send at once before the rate limit
    /// applies (default: one second's worth); see [`Config::event_burst`].
    pub fn event_burst(mut self, burst: u32) -> Self {
        self.config.event_burst = Some(burst);
        self
    }

    /// How many failed authentications one remote address may make per
    /// minute (default 30); `None` lifts the limit. See
    /// [`Config::max_auth_failures_per_minute`].
    pub fn max_auth_failures_per_minute(mut self, max: impl Into<Option<u32>>) -> Self {
        self.config.max_auth_failures_per_minute = max.into();
        self
    }

    /// The most rooms one connection may be in at once, or `None` for no
    /// limit; see [`Config::max_rooms_per_connection`] (default 100).
    ///
    /// ```
    /// # #[derive(liweb::Events)] enum In { Join(String) }
    /// # #[derive(liweb::Events)] enum Out { Joined(String) }
    /// let server = liweb::Server::<In, Out>::builder()
    ///     .max_rooms_per_connection(16)
    ///     .build();
    /// # let _ = server;
    /// ```
    pub fn max_rooms_per_connection(mut self, max: impl Into<Option<usize>>) -> Self {
        self.config.max_rooms_per_connection = max.into();
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

    /// The outbound bytes all connections together may hold; see
    /// [`Config::max_total_queue_bytes`].
    pub fn max_total_queue_bytes(mut self, bytes: usize) -> Self {
        self.config.max_total_queue_bytes = bytes;
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
        let waiters = Arc::new(Waiters::default());
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
                auth_throttle: self
                    .auth
                    .as_ref()
                    .and(self.config.max_auth_failures_per_minute)
                    .map(AuthThrottle::new),
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
                    JoinLimits {
                        guard_timeout: self.join_guard_timeout,
                        max_rooms_per_connection: self.config.max_rooms_per_connection,
                    },
                    self.channel_defaults,
                    link.clone(),
                    Arc::clone(&waiters),
                ),
                cluster: link,
                waiters,
                budget: Arc::new(Budget::new(self.config.max_total_queue_bytes)),
                config: self.config,
            }),
        };
        let inner = Arc::downgrade(&server.inner);
        server.inner.budget.set_reaper(Box::new(move |budget| {
            if let Some(inner) = inner.upgrade() {
                let closed = inner.live.reap(budget);
                inner
                    .stats
                    .budget_closes
                    .fetch_add(closed, std::sync::atomic::Ordering::Relaxed);
            }
        }));
        if let Some(attach) = attach {
            super::remote::attach(&server, attach);
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

#[cfg(feature = "redis")]
impl<In: Events, Out: Events> ServerBuilder<In, Out> {
    /// Makes the server a node of a cluster sharing rooms over Redis: room
    /// emits, multi-room emits, broadcasts, state (unless
    /// [`state_store`](Self::state_store) sets another store), presence and
    /// membership are shared with every server built with an adapter on the
    /// same Redis and prefix. See [`crate::cluster`].
    pub fn adapter(mut self, adapter: crate::cluster::RedisAdapter) -> Self {
        self.cluster = Some(adapter.into_parts());
        self
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
