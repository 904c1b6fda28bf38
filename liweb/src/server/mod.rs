//! The server: the cloneable handle handlers and hooks receive, and what it
//! holds — the dispatch table, hooks, middleware, the open connections and
//! the room registry.
//!
//! Built by [`ServerBuilder`](builder::ServerBuilder); events reach it
//! through `dispatch`, connections through `session`.

pub(crate) mod builder;
pub(crate) mod config;
pub(crate) mod hooks;
pub(crate) mod live;
pub(crate) mod remote;

use std::{
    fmt,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use self::{
    config::{Config, Counters, GOING_AWAY, Stats},
    hooks::{ErrorHook, MessageHook, UpgradeHook},
    live::{Connections, Live},
};
use crate::{
    auth::AuthConfig,
    auth::throttle::AuthThrottle,
    cluster::{Link, Message, Target},
    codec::{CodecKind, EncodeOnce},
    conn::{Conn, ConnId, queue::Budget},
    error::EncodeError,
    event::Events,
    handler::{DynHandler, hook::BoxHook},
    middleware::Step,
    protocol::CloseCode,
    request::{MultiRequest, Waiters},
    room::{Channel, Room, Rooms, fanout::fanout, registry::Registry},
};

/// The handlers of one event, in registration order.
type Slot<In, Out> = Box<[Box<dyn DynHandler<In, Out>>]>;

pub(crate) struct Inner<In, Out> {
    pub(crate) table: Box<[Slot<In, Out>]>,
    pub(crate) states: http::Extensions,
    pub(crate) conns: RwLock<Connections<Out>>,
    pub(crate) on_connect: Vec<BoxHook<In, Out>>,
    pub(crate) on_disconnect: Vec<BoxHook<In, Out>>,
    pub(crate) on_auth_success: Vec<BoxHook<In, Out>>,
    pub(crate) on_auth_error: Vec<BoxHook<In, Out>>,
    pub(crate) on_message: Option<MessageHook<Out>>,
    pub(crate) on_upgrade: Option<UpgradeHook>,
    pub(crate) on_error: Option<ErrorHook<Out>>,
    pub(crate) middleware: Vec<Step<In, Out>>,
    pub(crate) auth: Option<AuthConfig>,
    /// Failed authentications by remote address, when auth and the limit are on.
    pub(crate) auth_throttle: Option<AuthThrottle>,
    pub(crate) stats: Counters,
    pub(crate) live: Arc<Live>,
    /// Set when shutdown starts: connections are asked to go away.
    pub(crate) going_away: AtomicBool,
    /// When a shutdown gives up on close handshakes.
    pub(crate) shutdown_deadline: std::sync::OnceLock<tokio::time::Instant>,
    pub(crate) rooms: Arc<Registry<Out>>,
    /// The link to the other nodes, when the server is one node of a
    /// cluster; the room registry holds a handle on it for room traffic.
    pub(crate) cluster: Option<Arc<dyn Link>>,
    /// This node's requests waiting for replies from other nodes.
    pub(crate) waiters: Arc<Waiters>,
    /// The bytes queued for every connection together.
    pub(crate) budget: Arc<Budget>,
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
    /// The server's configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// A copy of the state of type `T` given to [`ServerBuilder::state`](crate::ServerBuilder::state).
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
        self.read_conns().values().nth(index).cloned()
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
        let conns = self.read_conns();
        fanout(conns.values().filter(|conn| predicate(conn)), frames)
    }

    /// Sends `event` as a request to every open connection and collects
    /// their replies as a stream; see [`MultiRequest`].
    pub fn request_all<R: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        event: Out,
    ) -> MultiRequest<Out, R> {
        let request = MultiRequest::new(self.connections(), event);
        match &self.inner.cluster {
            Some(link) => request.across(
                Arc::clone(link),
                Arc::clone(&self.inner.waiters),
                Target::All,
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
        match (self.get(id), &self.inner.cluster) {
            (Some(conn), _) => MultiRequest::new(vec![conn], event),
            (None, Some(link)) => MultiRequest::new(Vec::new(), event).across(
                Arc::clone(link),
                Arc::clone(&self.inner.waiters),
                Target::Conn(id),
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
            auth_throttled: read(&counters.auth_throttled),
            slow_consumers: read(&counters.slow_consumers),
            budget_closes: read(&counters.budget_closes),
            queued_bytes: self.inner.budget.total(),
            ping_timeouts: read(&counters.ping_timeouts),
            idle_timeouts: read(&counters.idle_timeouts),
            room_limit_refusals: read(&self.inner.rooms.room_limit_refusals),
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
    /// example by awaiting this inside the signal of
    /// [`liweb::serve(..).with_graceful_shutdown(..)`](crate::Serve::with_graceful_shutdown).
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

    fn write_conns(&self) -> std::sync::RwLockWriteGuard<'_, Connections<Out>> {
        self.inner
            .conns
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes a connection reachable: counted, listed, and in broadcasts.
    pub(crate) fn register(&self, conn: &Conn<Out>) {
        self.write_conns().insert(conn);
    }

    pub(crate) fn unregister(&self, id: ConnId) {
        self.write_conns().remove(id);
    }

    /// A broadcast to local connections, then published to the other nodes.
    pub(crate) fn broadcast_cluster(
        &self,
        event: &Out,
        except: Option<ConnId>,
    ) -> Result<usize, EncodeError> {
        let mut frames = EncodeOnce::new(|codec| codec.encode(event));
        // Other nodes still get it when a codec used here cannot encode it.
        let local = self.deliver_local(&mut frames, |conn| Some(conn.id()) != except);
        if let Some(cluster) = &self.inner.cluster {
            let frame = frames.get(CodecKind::Json)?.clone();
            cluster.publish(Message::Broadcast {
                except,
                frame: frame.into_bytes(),
            });
        }
        local
    }

    /// Closes the connection `id` with a code and a reason, wherever it is:
    /// on this node at once (`true`); otherwise, in a cluster, the node
    /// holding it closes it when the request arrives (`false`, as for an
    /// unknown connection, since no node answers).
    pub fn disconnect(&self, id: ConnId, code: CloseCode, reason: &str) -> bool {
        if let Some(conn) = self.get(id) {
            return conn.close(code, reason);
        }
        if let Some(cluster) = &self.inner.cluster {
            cluster.publish(Message::Disconnect {
                conn: id,
                code,
                reason: reason.to_owned(),
            });
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde::{Serialize, Serializer};

    use super::*;
    use crate::transport::item::Outbound;

    thread_local! {
        /// Serializations on this thread: tests run in parallel, and each
        /// broadcast serializes on its caller's thread.
        static SERIALIZED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// Counts how often it is serialized.
    #[derive(Debug, Clone, PartialEq, serde::Deserialize)]
    pub(crate) struct Counted(u32);

    impl Serialize for Counted {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            SERIALIZED.set(SERIALIZED.get() + 1);
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
        let before = SERIALIZED.get();
        assert_eq!(server.broadcast(Out::Counted(Counted(7))).unwrap(), 5);
        assert_eq!(SERIALIZED.get() - before, 1);

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
        let before = SERIALIZED.get();
        assert_eq!(server.broadcast(Out::Counted(Counted(7))).unwrap(), 6);
        assert_eq!(SERIALIZED.get() - before, 3);

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
