//! The Redis adapter: pub/sub for messages between nodes, hashes for room
//! state, membership and presence, keys with a TTL for node liveness.
//!
//! ## Crate
//!
//! The [`redis`](https://docs.rs/redis) crate (redis-rs), with its tokio
//! runtime and its `ConnectionManager`. It is the most used Redis client in
//! Rust, maintained under the Redis organisation, speaks to Redis and Valkey,
//! and its connection manager reconnects on its own, which is what a
//! long-running server needs. The 0.32 line is used because it builds on the
//! Rust version liweb supports (1.85); the 1.x line needs 1.88. `fred` was
//! the alternative: it has more built in (pools, its own reconnecting
//! subscriber), but also far more code and features to build for the few
//! commands liweb sends.
//!
//! ## Connections
//!
//! Each node opens two connections: a multiplexed, self-reconnecting one for
//! commands (publishing, state, membership, heartbeats) and one in subscriber
//! mode, owned by one task that reconnects and subscribes again when it is
//! lost.
//!
//! ## Topics
//!
//! Every topic and key starts with the adapter's prefix (`liweb` by
//! default), so several applications, or several tests, can share one Redis.
//!
//! - `{prefix}:b` — server-wide: broadcasts, multi-room emits, disconnects.
//!   Every node subscribes to it.
//! - `{prefix}:r:{room}` — one room's emits, state patches and presence
//!   events. A node subscribes when the room's first local member joins and
//!   unsubscribes when the last one leaves, so a node only hears about rooms
//!   it has members in. The join waits for the subscription, so a member
//!   never misses an emit published after its join returned.
//!
//! A room is written `{len(channel)}:{channel}:{room}`: channel and room
//! names may contain any character, the length keeps them apart.
//!
//! Every message carries the id of the node that published it; a node
//! drops its own messages when they come back, because it delivered them to
//! its members when they were emitted.
//!
//! ## Keys
//!
//! - `{prefix}:s:{room}` — a hash of the room's state: one field per state
//!   key, holding the value as JSON.
//! - `{prefix}:m:{room}` — a hash of the room's members and presence:
//!   `{node}|{conn}` for each member connection, holding its presence
//!   record; `{node}|~{presence key}` for a presence gone offline on that
//!   node (kept as "last seen").
//! - `{prefix}:node:{node}` — the node's heartbeat, set with a TTL
//!   ([`RedisConfig::liveness_ttl`]) and refreshed three times per TTL.
//! - `{prefix}:nodes` and `{prefix}:nr:{node}` — the nodes, and each node's
//!   rooms, so the records of a dead node can be removed.
//!
//! Reads of members and presence count only the records of nodes whose
//! heartbeat exists, so a node that crashed disappears from them within the
//! liveness TTL; any surviving node then deletes its records.
//!
//! ## Atomic state
//!
//! Each state operation is one Redis command or script, so two nodes never
//! interleave inside one. `increment` and `decrement` are `HINCRBY` when the
//! value is an integer (falling back as below for floats and overflow).
//! `update` is a script (set only if present). `patch`, `push` and `remove`
//! compute the new value in Rust — exactly as the in-memory store does, with
//! serde_json numbers and the caller's predicate — and write it with a
//! compare-and-set script that succeeds only if the value is still the one
//! read; otherwise they read again and retry. No update is ever lost.
//!
//! ## When Redis goes away
//!
//! Local delivery does not depend on Redis: emits reach local members first,
//! and publishing is queued for a task. While Redis is unreachable, publishes
//! and shared-store operations fail; each failure goes to `tracing` and to
//! the hook given to [`RedisAdapter::on_error`]. The command connection
//! reconnects by itself; the subscriber task reconnects with backoff (at
//! most 2 s between tries) and subscribes to every topic its members need;
//! the heartbeat task writes this node's memberships and presence again
//! when a heartbeat failed or found this node missing from the node set
//! (a restarted Redis has lost them, however quick the restart).
//!
//! What an outage costs, precisely:
//!
//! - Members on the emitting node get every emit, during the outage too.
//! - Room emits, broadcasts, state patches and presence events meant for
//!   other nodes while Redis is unreachable, or while a node's subscriber
//!   has not subscribed again, may be lost for those nodes: pub/sub keeps
//!   nothing and nothing is replayed (the ones still waiting in the publish
//!   queue when Redis returns are published late). What crosses still
//!   crosses once and in order per sending node.
//! - Cross-node delivery resumes once both nodes' subscribers are back,
//!   within the backoff above after Redis accepts connections again.
//! - Shared state operations fail with [`StateError::Backend`] during the
//!   outage. A Redis restarted without persistence comes back empty: the
//!   room state it held is gone; memberships and presence are written again
//!   by every node within one heartbeat (a third of
//!   [`RedisConfig::liveness_ttl`]), and until then cluster-wide reads
//!   (`cluster_size`, `cluster_presence`) count fewer members.
//!
//! Redis in cluster mode is not supported (scripts touch keys they compute).

use std::{
    collections::{HashMap, HashSet},
    fmt,
    sync::{Arc, OnceLock, Weak},
    time::Duration,
};

use bytes::Bytes;
use futures_util::StreamExt;
use redis::{AsyncCommands, Script, aio::ConnectionManager};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{ClusterError, ClusterErrorHook, Deliver, Envelope, Link, Message, Target};
use crate::{
    conn::ConnId,
    error::{BoxError, shared},
    presence::{PresenceKey, PresenceRecord},
    state::{BoxFuture, RoomKey, StateError, StatePatch, StateStore},
};

/// Settings of a [`RedisAdapter`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    /// Prefix of every topic and key (default `liweb`). Nodes of one
    /// application share it; different applications on one Redis must not.
    pub prefix: String,
    /// How long a node counts as alive after its last heartbeat (default
    /// 10 s). A crashed node's members and presence disappear from
    /// cluster-wide reads within this time. Heartbeats are sent three times
    /// per TTL.
    pub liveness_ttl: Duration,
    /// How long an offline presence record is kept (default 5 minutes).
    pub offline_ttl: Duration,
    /// How many messages may wait to be published (default 65,536); beyond
    /// that, emits still reach local members but are not published, and an
    /// error is reported.
    pub publish_queue: usize,
    /// How long connecting, and each command, may take (default 2 s).
    pub timeout: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            prefix: "liweb".to_owned(),
            liveness_ttl: Duration::from_secs(10),
            offline_ttl: Duration::from_secs(5 * 60),
            publish_queue: 65_536,
            timeout: Duration::from_secs(2),
        }
    }
}

impl RedisConfig {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// With this key prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// With this liveness TTL; see [`RedisConfig::liveness_ttl`].
    pub fn liveness_ttl(mut self, ttl: Duration) -> Self {
        self.liveness_ttl = ttl;
        self
    }

    /// With this offline presence TTL.
    pub fn offline_ttl(mut self, ttl: Duration) -> Self {
        self.offline_ttl = ttl;
        self
    }

    /// With this publish queue length.
    pub fn publish_queue(mut self, messages: usize) -> Self {
        self.publish_queue = messages;
        self
    }

    /// With this connect and command timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Joins a server to a cluster of nodes sharing one Redis; give it to
/// [`ServerBuilder::adapter`](crate::ServerBuilder::adapter).
///
/// ```no_run
/// # async fn run() -> Result<(), liweb::cluster::ClusterError> {
/// # use liweb::prelude::*;
/// # #[derive(Events)] enum In { Ping }
/// # #[derive(Events)] enum Out { Pong }
/// use liweb::cluster::{RedisAdapter, RedisConfig};
///
/// let adapter = RedisAdapter::connect_with(
///     "redis://127.0.0.1:6379",
///     RedisConfig::new().prefix("chat"),
/// )
/// .await?
/// .on_error(|err| eprintln!("cluster: {err}"));
/// let server = Server::<In, Out>::builder().adapter(adapter).build();
/// # let _ = server;
/// # Ok(())
/// # }
/// ```
///
/// See the [module docs](crate::cluster) for what crosses nodes, and the
/// source of this module for the Redis topics and keys.
pub struct RedisAdapter {
    node: Arc<Node>,
}

impl fmt::Debug for RedisAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.node, f)
    }
}

impl RedisAdapter {
    /// Connects with the default [`RedisConfig`].
    ///
    /// Fails with [`ClusterError::InvalidUrl`] or [`ClusterError::Connect`]
    /// when Redis cannot be reached now; once connected, losing Redis is
    /// survived (see the module docs).
    pub async fn connect(url: &str) -> Result<Self, ClusterError> {
        Self::connect_with(url, RedisConfig::default()).await
    }

    /// Connects with `config`.
    pub async fn connect_with(url: &str, config: RedisConfig) -> Result<Self, ClusterError> {
        let client =
            redis::Client::open(url).map_err(|err| ClusterError::InvalidUrl(shared(err)))?;
        let shown = redacted(url);
        let connect_error = |err: BoxError| ClusterError::Connect {
            url: shown.clone(),
            source: shared(err),
        };
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(config.timeout)
            .set_response_timeout(config.timeout)
            .set_number_of_retries(1)
            .set_max_delay(1_000);
        let mut commands = tokio::time::timeout(
            config.timeout,
            client.get_connection_manager_with_config(manager_config),
        )
        .await
        .map_err(|elapsed| connect_error(elapsed.into()))?
        .map_err(|err| connect_error(err.into()))?;
        let () = redis::cmd("PING")
            .query_async::<String>(&mut commands)
            .await
            .map(drop)
            .map_err(|err| connect_error(err.into()))?;
        let pubsub = tokio::time::timeout(config.timeout, client.get_async_pubsub())
            .await
            .map_err(|elapsed| connect_error(elapsed.into()))?
            .map_err(|err| connect_error(err.into()))?;

        let id = Uuid::new_v4();
        let keys = Keys::new(&config.prefix, id);
        let (publish_tx, publish_rx) = mpsc::channel(config.publish_queue.max(1));
        let (subscribe_tx, subscribe_rx) = mpsc::unbounded_channel();
        let node = Arc::new(Node {
            id,
            keys,
            config,
            commands,
            publish_tx,
            subscribe_tx,
            deliver: OnceLock::new(),
            on_error: OnceLock::new(),
            errors: ErrorSink::default(),
        });
        node.errors.node.set(Arc::downgrade(&node)).ok();
        tokio::spawn(publisher(Arc::downgrade(&node), publish_rx));
        tokio::spawn(subscriber(
            Arc::downgrade(&node),
            client,
            Some(pubsub),
            subscribe_rx,
        ));
        let heartbeat = Arc::downgrade(&node);
        // The first heartbeat is written before `connect` returns, so the
        // node is alive as soon as it has members.
        node.beat(false).await;
        tokio::spawn(heartbeat_task(heartbeat));
        Ok(Self { node })
    }

    /// Receives every error of the adapter (lost connection, failed
    /// publish, failed store command), besides its `tracing` log.
    pub fn on_error(self, hook: impl Fn(&ClusterError) + Send + Sync + 'static) -> Self {
        let hook: ClusterErrorHook = Arc::new(hook);
        self.node.on_error.set(hook).ok();
        self
    }

    /// This node's id, unique per adapter.
    pub fn node_id(&self) -> Uuid {
        self.node.id
    }

    /// The room state store on this Redis, with this adapter's prefix.
    /// [`ServerBuilder::adapter`](crate::ServerBuilder::adapter) uses it
    /// unless the builder was given another state store.
    pub fn state_store(&self) -> RedisStore {
        RedisStore {
            node: Arc::clone(&self.node),
        }
    }

    pub(crate) fn link(&self) -> Arc<dyn Link> {
        Arc::clone(&self.node) as Arc<dyn Link>
    }

    /// What a server built with this adapter takes from it.
    pub(crate) fn into_parts(self) -> super::Parts {
        let state: Arc<dyn StateStore> = Arc::new(self.state_store());
        let link = self.link();
        super::Parts {
            link,
            state,
            attach: Box::new(move |deliver| self.attach(deliver)),
        }
    }

    pub(crate) fn attach(&self, deliver: Arc<dyn Deliver>) {
        if self.node.deliver.set(deliver).is_err() {
            tracing::error!("a Redis adapter serves one server; it was attached twice");
        }
    }
}

/// `redis://user:secret@host` → `redis://user:***@host`.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// The names of topics and keys.
#[derive(Debug)]
struct Keys {
    prefix: String,
    broadcast: String,
    heartbeat: String,
    nodes: String,
    node_rooms: String,
}

impl Keys {
    fn new(prefix: &str, node: Uuid) -> Self {
        Self {
            prefix: prefix.to_owned(),
            broadcast: format!("{prefix}:b"),
            heartbeat: format!("{prefix}:node:{node}"),
            nodes: format!("{prefix}:nodes"),
            node_rooms: format!("{prefix}:nr:{node}"),
        }
    }

    fn room_name(room: &RoomKey) -> String {
        format!(
            "{}:{}:{}",
            room.channel().len(),
            room.channel(),
            room.room()
        )
    }

    fn parse_room(name: &str) -> Option<RoomKey> {
        let (len, rest) = name.split_once(':')?;
        let len: usize = len.parse().ok()?;
        let channel = rest.get(..len)?;
        let room = rest.get(len..)?.strip_prefix(':')?;
        Some(RoomKey::new(channel, room))
    }

    fn room_topic(&self, room: &RoomKey) -> String {
        format!("{}:r:{}", self.prefix, Self::room_name(room))
    }

    fn state(&self, room: &RoomKey) -> String {
        format!("{}:s:{}", self.prefix, Self::room_name(room))
    }

    fn members(&self, room: &RoomKey) -> String {
        format!("{}:m:{}", self.prefix, Self::room_name(room))
    }

    fn heartbeat_of(&self, node: &str) -> String {
        format!("{}:node:{node}", self.prefix)
    }

    fn rooms_of(&self, node: &str) -> String {
        format!("{}:nr:{node}", self.prefix)
    }
}

/// Reports errors to `tracing` and the application's hook.
#[derive(Default)]
struct ErrorSink {
    node: OnceLock<Weak<Node>>,
}

impl ErrorSink {
    fn report(&self, err: ClusterError) {
        // As an error value, so that the subscriber prints its sources too.
        tracing::warn!(
            err = &err as &(dyn std::error::Error + 'static),
            "cluster error"
        );
        let hook = self
            .node
            .get()
            .and_then(Weak::upgrade)
            .and_then(|node| node.on_error.get().cloned());
        if let Some(hook) = hook
            && std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(&err))).is_err()
        {
            tracing::error!("the cluster error hook panicked");
        }
    }
}

enum Subscription {
    Subscribe(String, oneshot::Sender<()>),
    Unsubscribe(String),
}

/// One node: its id, its connections to Redis and its tasks' inboxes.
struct Node {
    id: Uuid,
    keys: Keys,
    config: RedisConfig,
    commands: ConnectionManager,
    publish_tx: mpsc::Sender<(String, Bytes)>,
    subscribe_tx: mpsc::UnboundedSender<Subscription>,
    deliver: OnceLock<Arc<dyn Deliver>>,
    on_error: OnceLock<ClusterErrorHook>,
    errors: ErrorSink,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisAdapter")
            .field("node", &self.id)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn command_error(op: &'static str, err: redis::RedisError) -> ClusterError {
    ClusterError::Command {
        op,
        source: shared(err),
    }
}

/// A presence record as one node stores it for one connection (or, with
/// `online` false, for a key gone offline on that node).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    /// `c:{uuid}` or `u:{user}`.
    key: String,
    joined_at: u64,
    last_seen: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    activity: Option<String>,
}

fn encode_key(key: &PresenceKey) -> String {
    match key {
        PresenceKey::Conn(conn) => format!("c:{conn}"),
        PresenceKey::User(user) => format!("u:{user}"),
    }
}

fn decode_key(key: &str) -> Option<PresenceKey> {
    if let Some(user) = key.strip_prefix("u:") {
        return Some(PresenceKey::user(user));
    }
    let conn = key.strip_prefix("c:")?;
    Uuid::parse_str(conn)
        .ok()
        .map(|id| PresenceKey::Conn(id.into()))
}

impl Node {
    fn report(&self, err: ClusterError) {
        self.errors.report(err);
    }

    fn connection(&self) -> ConnectionManager {
        self.commands.clone()
    }

    /// Writes the heartbeat; with `resync`, also every local membership
    /// (after Redis came back, it may have lost them). Returns `None` on
    /// failure, else whether this node had to be added to the node set
    /// again: Redis lost it (a restart, even one quicker than a heartbeat)
    /// or another node collected it as dead, and with it the memberships.
    async fn beat(&self, resync: bool) -> Option<bool> {
        let mut conn = self.connection();
        let ttl = u64::try_from(self.config.liveness_ttl.as_millis()).unwrap_or(u64::MAX);
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(&self.keys.heartbeat)
            .arg(1)
            .arg("PX")
            .arg(ttl.max(1))
            .ignore()
            .sadd(&self.keys.nodes, self.id.to_string());
        if resync && let Some(deliver) = self.deliver.get() {
            for (room, members) in deliver.memberships() {
                let key = self.keys.members(&room);
                pipe.sadd(&self.keys.node_rooms, Keys::room_name(&room))
                    .ignore();
                for (conn_id, record) in members {
                    if let Some(value) = stored(&record) {
                        pipe.hset(&key, format!("{}|{conn_id}", self.id), value)
                            .ignore();
                    }
                }
            }
        }
        match pipe.query_async::<(u64,)>(&mut conn).await {
            Ok((added,)) => Some(added == 1),
            Err(err) => {
                self.report(command_error("heartbeat", err));
                None
            }
        }
    }

    /// Removes the records of nodes whose heartbeat is gone.
    async fn collect_dead_nodes(&self) -> Result<(), redis::RedisError> {
        let mut conn = self.connection();
        let nodes: Vec<String> = conn.smembers(&self.keys.nodes).await?;
        let me = self.id.to_string();
        for node in nodes.into_iter().filter(|node| *node != me) {
            let alive: bool = conn.exists(self.keys.heartbeat_of(&node)).await?;
            if !alive {
                remove_node(&mut conn, &self.keys, &node).await?;
                tracing::info!(node, "removed the records of a node that stopped");
            }
        }
        Ok(())
    }

    /// The records of `room` from live nodes: `(node, field, record)`.
    async fn live_records(
        &self,
        room: &RoomKey,
    ) -> Result<Vec<(bool, String, Stored)>, ClusterError> {
        let mut conn = self.connection();
        let all: HashMap<String, String> = conn
            .hgetall(self.keys.members(room))
            .await
            .map_err(|err| command_error("read members", err))?;
        let nodes: Vec<&str> = all
            .keys()
            .filter_map(|field| field.split_once('|').map(|(node, _)| node))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let me = self.id.to_string();
        let mut alive = HashSet::new();
        if !nodes.is_empty() {
            let mut pipe = redis::pipe();
            for node in &nodes {
                pipe.exists(self.keys.heartbeat_of(node));
            }
            let exists: Vec<bool> = pipe
                .query_async(&mut conn)
                .await
                .map_err(|err| command_error("read node liveness", err))?;
            for (node, exists) in nodes.iter().zip(exists) {
                if exists || *node == me {
                    alive.insert((*node).to_owned());
                }
            }
        }
        let mut records = Vec::new();
        for (field, value) in &all {
            let Some((node, rest)) = field.split_once('|') else {
                continue;
            };
            let online = !rest.starts_with('~');
            if online && !alive.contains(node) {
                continue;
            }
            let Ok(record) = serde_json::from_str::<Stored>(value) else {
                self.report(ClusterError::BadMessage(format!(
                    "unreadable presence record `{field}`"
                )));
                continue;
            };
            records.push((online, rest.to_owned(), record));
        }
        Ok(records)
    }

    fn publish_bytes(&self, topic: String, bytes: Bytes) {
        match self.publish_tx.try_send((topic, bytes)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.report(ClusterError::Command {
                op: "publish",
                source: shared("the publish queue is full; the message reached local members only"),
            }),
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// Deletes everything `node` recorded: its heartbeat, its members and
/// presence in every room it had, its room list and its entry in the node
/// set.
async fn remove_node(
    conn: &mut ConnectionManager,
    keys: &Keys,
    node: &str,
) -> Result<(), redis::RedisError> {
    let rooms: Vec<String> = conn.smembers(keys.rooms_of(node)).await?;
    let mine = format!("{node}|");
    for room in rooms {
        let Some(room) = Keys::parse_room(&room) else {
            continue;
        };
        let key = keys.members(&room);
        let fields: Vec<String> = conn.hkeys(&key).await?;
        let own: Vec<&String> = fields
            .iter()
            .filter(|field| field.starts_with(&mine))
            .collect();
        if !own.is_empty() {
            let () = conn.hdel(&key, own).await?;
        }
    }
    let () = conn.del(keys.rooms_of(node)).await?;
    let () = conn.del(keys.heartbeat_of(node)).await?;
    conn.srem(&keys.nodes, node).await
}

impl Drop for Node {
    /// A node that stops cleanly takes its records with it at once, rather
    /// than after the liveness TTL. Without a runtime (the process is going
    /// down) the other nodes remove them when the heartbeat expires.
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut conn = self.commands.clone();
        let keys = Keys::new(&self.keys.prefix, self.id);
        let node = self.id.to_string();
        let timeout = self.config.timeout;
        runtime.spawn(async move {
            let removed = tokio::time::timeout(timeout, remove_node(&mut conn, &keys, &node)).await;
            if !matches!(removed, Ok(Ok(()))) {
                tracing::debug!(node, "left the cluster without removing its records");
            }
        });
    }
}

fn stored(record: &PresenceRecord) -> Option<String> {
    serde_json::to_string(&Stored {
        key: encode_key(&record.key),
        joined_at: record.joined_at,
        last_seen: record.last_seen,
        activity: record.activity.clone(),
    })
    .ok()
}

impl Link for Node {
    fn node_id(&self) -> Uuid {
        self.id
    }

    fn publish(&self, message: Message) {
        let topic = match &message {
            Message::Room { room, .. }
            | Message::Request {
                target: Target::Room(room),
                ..
            } => self.keys.room_topic(room),
            // Replies go to every node and the addressee keeps its own: one
            // topic fewer per node, at the cost of a filter on the others.
            Message::Rooms { .. }
            | Message::Broadcast { .. }
            | Message::Disconnect { .. }
            | Message::Request { .. }
            | Message::Reply { .. } => self.keys.broadcast.clone(),
        };
        let bytes = Envelope {
            origin: self.id,
            message,
        }
        .encode();
        self.publish_bytes(topic, bytes);
    }

    fn subscribe(&self, room: &RoomKey) -> BoxFuture<'static, ()> {
        let (ack, acked) = oneshot::channel();
        let sent = self
            .subscribe_tx
            .send(Subscription::Subscribe(self.keys.room_topic(room), ack));
        let timeout = self.config.timeout;
        Box::pin(async move {
            if sent.is_ok() {
                // Bounded: a subscriber stuck on a dead connection must not
                // hold a join forever.
                let _ = tokio::time::timeout(timeout, acked).await;
            }
        })
    }

    fn unsubscribe(&self, room: &RoomKey) {
        let _ = self
            .subscribe_tx
            .send(Subscription::Unsubscribe(self.keys.room_topic(room)));
    }

    fn member_joined(
        &self,
        room: &RoomKey,
        conn: ConnId,
        record: PresenceRecord,
    ) -> BoxFuture<'static, ()> {
        let mut pipe = redis::pipe();
        let key = self.keys.members(room);
        if let Some(value) = stored(&record) {
            pipe.hset(&key, format!("{}|{conn}", self.id), value)
                .ignore()
                .hdel(&key, format!("{}|~{}", self.id, encode_key(&record.key)))
                .ignore()
                .sadd(&self.keys.node_rooms, Keys::room_name(room))
                .ignore();
        }
        self.run(pipe, "record a member")
    }

    fn member_left(
        &self,
        room: &RoomKey,
        conn: ConnId,
        offline: Option<PresenceRecord>,
    ) -> BoxFuture<'static, ()> {
        let mut pipe = redis::pipe();
        let key = self.keys.members(room);
        pipe.hdel(&key, format!("{}|{conn}", self.id)).ignore();
        if let Some(record) = offline.as_ref()
            && let Some(value) = stored(record)
        {
            pipe.hset(
                &key,
                format!("{}|~{}", self.id, encode_key(&record.key)),
                value,
            )
            .ignore();
        }
        self.run(pipe, "remove a member")
    }

    fn members(&self, room: &RoomKey) -> BoxFuture<'static, Result<Vec<ConnId>, ClusterError>> {
        let node = self.self_arc();
        let room = room.clone();
        Box::pin(async move {
            let Some(node) = node else {
                return Ok(Vec::new());
            };
            let records = node.live_records(&room).await?;
            let mut members: Vec<ConnId> = records
                .into_iter()
                .filter(|(online, _, _)| *online)
                .filter_map(|(_, field, _)| Uuid::parse_str(&field).ok().map(ConnId::from))
                .collect();
            members.sort_unstable_by_key(|id| *id.as_uuid());
            Ok(members)
        })
    }

    fn presence(
        &self,
        room: &RoomKey,
        now_ms: u64,
    ) -> BoxFuture<'static, Result<Vec<PresenceRecord>, ClusterError>> {
        let node = self.self_arc();
        let room = room.clone();
        Box::pin(async move {
            let Some(node) = node else {
                return Ok(Vec::new());
            };
            let ttl = u64::try_from(node.config.offline_ttl.as_millis()).unwrap_or(u64::MAX);
            let records = node.live_records(&room).await?;
            Ok(merge_presence(records, now_ms, ttl))
        })
    }

    fn drop_room(&self, room: &RoomKey) -> BoxFuture<'static, ()> {
        let node = self.self_arc();
        let room = room.clone();
        Box::pin(async move {
            let Some(node) = node else { return };
            let mut conn = node.connection();
            let key = node.keys.members(&room);
            let mine = format!("{}|", node.id);
            let result: Result<(), redis::RedisError> = async {
                let fields: Vec<String> = conn.hkeys(&key).await?;
                let own: Vec<&String> = fields.iter().filter(|f| f.starts_with(&mine)).collect();
                if !own.is_empty() {
                    let () = conn.hdel(&key, own).await?;
                }
                Ok(())
            }
            .await;
            if let Err(err) = result {
                node.report(command_error("drop a room's members", err));
            }
        })
    }
}

impl Node {
    fn self_arc(&self) -> Option<Arc<Node>> {
        self.errors.node.get().and_then(Weak::upgrade)
    }

    fn run(&self, pipe: redis::Pipeline, op: &'static str) -> BoxFuture<'static, ()> {
        let node = self.self_arc();
        Box::pin(async move {
            let Some(node) = node else { return };
            let mut conn = node.connection();
            if let Err(err) = pipe.query_async::<()>(&mut conn).await {
                node.report(command_error(op, err));
            }
        })
    }
}

/// One record per presence key: online when any live connection has it,
/// else its latest offline record until that expires.
fn merge_presence(
    records: Vec<(bool, String, Stored)>,
    now_ms: u64,
    offline_ttl_ms: u64,
) -> Vec<PresenceRecord> {
    let mut merged: HashMap<String, PresenceRecord> = HashMap::new();
    let mut offline: HashMap<String, Stored> = HashMap::new();
    for (online, _, stored) in records {
        if !online {
            let keep = offline
                .get(&stored.key)
                .is_none_or(|seen| seen.last_seen < stored.last_seen);
            if keep {
                offline.insert(stored.key.clone(), stored);
            }
            continue;
        }
        let Some(key) = decode_key(&stored.key) else {
            continue;
        };
        match merged.get_mut(&stored.key) {
            Some(record) => {
                record.connections += 1;
                record.joined_at = record.joined_at.min(stored.joined_at);
                if stored.last_seen >= record.last_seen {
                    record.last_seen = stored.last_seen;
                    record.activity = stored.activity;
                }
            }
            None => {
                merged.insert(
                    stored.key.clone(),
                    PresenceRecord {
                        key,
                        online: true,
                        joined_at: stored.joined_at,
                        last_seen: stored.last_seen,
                        activity: stored.activity,
                        connections: 1,
                    },
                );
            }
        }
    }
    for (name, stored) in offline {
        if merged.contains_key(&name) || now_ms.saturating_sub(stored.last_seen) >= offline_ttl_ms {
            continue;
        }
        let Some(key) = decode_key(&stored.key) else {
            continue;
        };
        merged.insert(
            name,
            PresenceRecord {
                key,
                online: false,
                joined_at: stored.joined_at,
                last_seen: stored.last_seen,
                activity: stored.activity,
                connections: 0,
            },
        );
    }
    let mut list: Vec<PresenceRecord> = merged.into_values().collect();
    list.sort_by(|a, b| {
        b.online
            .cmp(&a.online)
            .then(a.joined_at.cmp(&b.joined_at))
            .then_with(|| a.key.cmp(&b.key))
    });
    list
}

/// Publishes queued messages in order, pipelining what has piled up.
async fn publisher(node: Weak<Node>, mut queue: mpsc::Receiver<(String, Bytes)>) {
    let mut batch = Vec::new();
    while queue.recv_many(&mut batch, 512).await > 0 {
        let Some(node) = node.upgrade() else { return };
        let mut pipe = redis::pipe();
        for (topic, bytes) in batch.drain(..) {
            pipe.publish(topic, bytes.as_ref()).ignore();
        }
        let mut conn = node.connection();
        if let Err(err) = pipe.query_async::<()>(&mut conn).await {
            node.report(command_error("publish", err));
        }
    }
}

/// The subscriber could not connect again; the source of a
/// [`ClusterError::SubscriptionLost`].
#[derive(Debug, thiserror::Error)]
#[error("reconnecting failed")]
struct ReconnectFailed(#[source] BoxError);

/// Owns the subscriber connection: subscribes and unsubscribes as rooms
/// gain their first and lose their last local member, delivers what
/// arrives, and on a lost connection reconnects with backoff and subscribes
/// to everything again.
async fn subscriber(
    node: Weak<Node>,
    client: redis::Client,
    mut first: Option<redis::aio::PubSub>,
    mut commands: mpsc::UnboundedReceiver<Subscription>,
) {
    let Some((broadcast, timeout, origin)) = node
        .upgrade()
        .map(|node| (node.keys.broadcast.clone(), node.config.timeout, node.id))
    else {
        return;
    };
    let report = |err: ClusterError| {
        if let Some(node) = node.upgrade() {
            node.report(err);
        }
    };
    let mut wanted: HashSet<String> = HashSet::new();
    let mut backoff = Duration::from_millis(50);
    loop {
        let pubsub = match first.take() {
            Some(pubsub) => Ok(pubsub),
            None => match tokio::time::timeout(timeout, client.get_async_pubsub()).await {
                Ok(result) => result.map_err(BoxError::from),
                Err(elapsed) => Err(elapsed.into()),
            },
        };
        let (mut sink, mut stream) = match pubsub {
            Ok(pubsub) => pubsub.split(),
            Err(err) => {
                report(ClusterError::SubscriptionLost(shared(ReconnectFailed(err))));
                // Keep track of what members need while waiting, and let
                // joins go on: they subscribe when the connection is back.
                let wait = tokio::time::sleep(backoff);
                tokio::pin!(wait);
                loop {
                    tokio::select! {
                        () = &mut wait => break,
                        command = commands.recv() => match command {
                            None => return,
                            Some(command) => apply(&mut wanted, command),
                        },
                    }
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        let mut topics: Vec<&str> = wanted.iter().map(String::as_str).collect();
        topics.push(&broadcast);
        match tokio::time::timeout(timeout, sink.subscribe(&topics)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                report(ClusterError::SubscriptionLost(shared(err)));
                continue;
            }
            Err(elapsed) => {
                report(ClusterError::SubscriptionLost(shared(elapsed)));
                continue;
            }
        }
        if backoff > Duration::from_millis(50) {
            tracing::info!("cluster subscription restored");
        }
        backoff = Duration::from_millis(50);
        loop {
            tokio::select! {
                message = stream.next() => match message {
                    Some(message) => {
                        let Some(node) = node.upgrade() else { return };
                        receive(&node, origin, message.get_payload_bytes());
                    }
                    None => {
                        report(ClusterError::SubscriptionLost(shared(
                            "the subscriber connection closed",
                        )));
                        break;
                    }
                },
                command = commands.recv() => match command {
                    None => return,
                    Some(Subscription::Subscribe(topic, ack)) => {
                        let result = tokio::time::timeout(timeout, sink.subscribe(&topic)).await;
                        wanted.insert(topic);
                        let _ = ack.send(());
                        if !matches!(result, Ok(Ok(()))) {
                            // The stream ends soon; the reconnect subscribes.
                            report(ClusterError::SubscriptionLost(shared(
                                "cannot subscribe to a room",
                            )));
                        }
                    }
                    Some(Subscription::Unsubscribe(topic)) => {
                        wanted.remove(&topic);
                        let _ = tokio::time::timeout(timeout, sink.unsubscribe(&topic)).await;
                    }
                },
            }
        }
    }
}

fn apply(wanted: &mut HashSet<String>, command: Subscription) {
    match command {
        Subscription::Subscribe(topic, ack) => {
            wanted.insert(topic);
            let _ = ack.send(());
        }
        Subscription::Unsubscribe(topic) => {
            wanted.remove(&topic);
        }
    }
}

fn receive(node: &Node, origin: Uuid, payload: &[u8]) {
    let bytes = Bytes::copy_from_slice(payload);
    match Envelope::decode(&bytes) {
        Ok(envelope) if envelope.origin == origin => {}
        Ok(envelope) => {
            if let Some(deliver) = node.deliver.get() {
                deliver.deliver(envelope.message);
            }
        }
        Err(err) => node.report(err),
    }
}

/// Refreshes the heartbeat three times per liveness TTL, writes the
/// membership again after an outage, and collects dead nodes.
async fn heartbeat_task(node: Weak<Node>) {
    let Some(every) = node.upgrade().map(|node| node.config.liveness_ttl / 3) else {
        return;
    };
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(10)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    let mut healthy = true;
    loop {
        ticks.tick().await;
        let Some(node) = node.upgrade() else { return };
        let ok = match node.beat(!healthy).await {
            // A Redis restarted between two heartbeats never failed one,
            // but it has lost the memberships all the same.
            Some(true) if healthy => {
                tracing::info!(node = %node.id, "Redis lost this node; membership written again");
                node.beat(true).await.is_some()
            }
            Some(_) => {
                if !healthy {
                    tracing::info!(node = %node.id, "Redis is back; membership written again");
                }
                true
            }
            None => false,
        };
        healthy = ok;
        if ok && let Err(err) = node.collect_dead_nodes().await {
            node.report(command_error("collect dead nodes", err));
        }
    }
}

/// Room state in Redis; every operation atomic across nodes. Made by
/// [`RedisAdapter::state_store`], used by the server the adapter is given
/// to.
#[derive(Clone)]
pub struct RedisStore {
    node: Arc<Node>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.node.keys.prefix)
            .finish()
    }
}

/// `HSET` only when the field exists.
const UPDATE: &str = r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0
";

/// Compare-and-set of one field: ARGV = field, expected present ('0'/'1'),
/// expected value, write ('1' set / '0' delete), new value.
const COMPARE_AND_SET: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '0' then
  if current then return 0 end
elseif current ~= ARGV[3] then
  return 0
end
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[5])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 1
";

fn scripts() -> &'static (Script, Script) {
    static SCRIPTS: OnceLock<(Script, Script)> = OnceLock::new();
    SCRIPTS.get_or_init(|| (Script::new(UPDATE), Script::new(COMPARE_AND_SET)))
}

fn backend(err: redis::RedisError) -> StateError {
    StateError::backend(err)
}

fn json(key: &str, value: &Value) -> Result<String, StateError> {
    serde_json::to_string(value).map_err(|err| StateError::Encode {
        key: key.to_owned(),
        message: err.to_string(),
    })
}

/// A stored value that is not JSON (something else wrote the hash); the
/// source of a [`StateError::Backend`].
#[derive(Debug, thiserror::Error)]
#[error("state key `{key}` holds invalid JSON")]
struct InvalidJson {
    key: String,
    #[source]
    source: serde_json::Error,
}

fn parse(key: &str, text: &str) -> Result<Value, StateError> {
    serde_json::from_str(text).map_err(|source| {
        StateError::backend(InvalidJson {
            key: key.to_owned(),
            source,
        })
    })
}

/// What a read-modify-write decided.
enum Change<T> {
    /// Write this value (or delete with `None`), then return `T`.
    Write(Option<Value>, T),
    /// Write nothing and return `T`.
    Keep(T),
}

/// How often a compare-and-set is retried before giving up; every retry
/// means another node's write succeeded, so the store as a whole progresses.
const MAX_RETRIES: usize = 10_000;

impl RedisStore {
    fn report(&self, op: &'static str, err: &StateError) {
        if let StateError::Backend(source) = err {
            self.node.report(ClusterError::Command {
                op,
                source: Arc::clone(source),
            });
        }
    }

    async fn read_modify_write<T>(
        &self,
        room: &RoomKey,
        key: &str,
        mut decide: impl FnMut(Option<&Value>) -> Result<Change<T>, StateError>,
    ) -> Result<T, StateError> {
        let hash = self.node.keys.state(room);
        let mut conn = self.node.connection();
        for attempt in 0..MAX_RETRIES {
            let current: Option<String> = conn.hget(&hash, key).await.map_err(backend)?;
            let parsed = current
                .as_deref()
                .map(|text| parse(key, text))
                .transpose()?;
            let (next, result) = match decide(parsed.as_ref())? {
                Change::Keep(result) => return Ok(result),
                Change::Write(next, result) => (next, result),
            };
            let next = next.map(|value| json(key, &value)).transpose()?;
            let mut invocation = scripts().1.key(&hash);
            invocation
                .arg(key)
                .arg(if current.is_some() { "1" } else { "0" })
                .arg(current.as_deref().unwrap_or(""))
                .arg(if next.is_some() { "1" } else { "0" })
                .arg(next.as_deref().unwrap_or(""));
            let written: i64 = invocation.invoke_async(&mut conn).await.map_err(backend)?;
            if written == 1 {
                return Ok(result);
            }
            if attempt % 16 == 15 {
                tokio::task::yield_now().await;
            }
        }
        Err(StateError::backend(format!(
            "state key `{key}` kept changing; gave up after {MAX_RETRIES} attempts"
        )))
    }

    async fn add(
        &self,
        room: &RoomKey,
        key: &str,
        by: i128,
    ) -> Result<(Number, StatePatch), StateError> {
        if let Ok(by) = i64::try_from(by) {
            let mut conn = self.node.connection();
            let hash = self.node.keys.state(room);
            match conn.hincr::<_, _, _, i64>(&hash, key, by).await {
                Ok(sum) => {
                    let sum = Number::from(sum);
                    return Ok((
                        sum.clone(),
                        crate::state::set_patch(key, Value::Number(sum)),
                    ));
                }
                // Not an integer, or the sum overflows: exact arithmetic below.
                Err(err) if err.kind() == redis::ErrorKind::ResponseError => {}
                Err(err) => return Err(backend(err)),
            }
        }
        self.read_modify_write(room, key, |current| {
            let sum = match current {
                None => crate::state::add(key, &Number::from(0), by)?,
                Some(Value::Number(current)) => crate::state::add(key, current, by)?,
                Some(_) => return Err(crate::state::not_a_number(key)),
            };
            let value = Value::Number(sum.clone());
            Ok(Change::Write(
                Some(value.clone()),
                (sum, crate::state::set_patch(key, value)),
            ))
        })
        .await
    }
}

impl StateStore for RedisStore {
    fn get<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, StateError>> {
        Box::pin(async move {
            let mut conn = self.node.connection();
            let text: Option<String> = conn
                .hget(self.node.keys.state(room), key)
                .await
                .map_err(backend)
                .inspect_err(|e| self.report("state get", e))?;
            text.map(|text| parse(key, &text)).transpose()
        })
    }

    fn has<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        Box::pin(async move {
            let mut conn = self.node.connection();
            conn.hexists(self.node.keys.state(room), key)
                .await
                .map_err(backend)
                .inspect_err(|e| self.report("state has", e))
        })
    }

    fn snapshot<'a>(
        &'a self,
        room: &'a RoomKey,
    ) -> BoxFuture<'a, Result<Map<String, Value>, StateError>> {
        Box::pin(async move {
            let mut conn = self.node.connection();
            let all: Vec<(String, String)> = conn
                .hgetall(self.node.keys.state(room))
                .await
                .map_err(backend)
                .inspect_err(|e| self.report("state snapshot", e))?;
            let mut sorted = all;
            sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            sorted
                .into_iter()
                .map(|(key, text)| parse(&key, &text).map(|value| (key, value)))
                .collect()
        })
    }

    fn set<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
        value: Value,
    ) -> BoxFuture<'a, Result<StatePatch, StateError>> {
        Box::pin(async move {
            let text = json(key, &value)?;
            let mut conn = self.node.connection();
            let () = conn
                .hset(self.node.keys.state(room), key, text)
                .await
                .map(|_: i64| ())
                .map_err(backend)
                .inspect_err(|e| self.report("state set", e))?;
            Ok(crate::state::set_patch(key, value))
        })
    }

    fn update<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
        value: Value,
    ) -> BoxFuture<'a, Result<StatePatch, StateError>> {
        Box::pin(async move {
            let text = json(key, &value)?;
            let mut conn = self.node.connection();
            let mut invocation = scripts().0.key(self.node.keys.state(room));
            invocation.arg(key).arg(text);
            let written: i64 = invocation
                .invoke_async(&mut conn)
                .await
                .map_err(backend)
                .inspect_err(|e| self.report("state update", e))?;
            if written == 1 {
                Ok(crate::state::set_patch(key, value))
            } else {
                Err(StateError::KeyMissing {
                    key: key.to_owned(),
                })
            }
        })
    }

    fn patch<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
        fields: Map<String, Value>,
    ) -> BoxFuture<'a, Result<StatePatch, StateError>> {
        Box::pin(async move {
            self.read_modify_write(room, key, |current| {
                let object = crate::state::patched(key, current, &fields)?;
                Ok(Change::Write(
                    Some(object.clone()),
                    crate::state::set_patch(key, object),
                ))
            })
            .await
            .inspect_err(|e| self.report("state patch", e))
        })
    }

    fn push<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
        item: Value,
    ) -> BoxFuture<'a, Result<StatePatch, StateError>> {
        Box::pin(async move {
            self.read_modify_write(room, key, |current| {
                let array = crate::state::pushed(key, current, &item)?;
                Ok(Change::Write(
                    Some(array.clone()),
                    crate::state::set_patch(key, array),
                ))
            })
            .await
            .inspect_err(|e| self.report("state push", e))
        })
    }

    fn remove<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
        predicate: &'a (dyn Fn(&Value) -> bool + Send + Sync),
    ) -> BoxFuture<'a, Result<(usize, Option<StatePatch>), StateError>> {
        Box::pin(async move {
            self.read_modify_write(room, key, |current| {
                Ok(match crate::state::without(key, current, predicate)? {
                    None => Change::Keep((0, None)),
                    Some((removed, array)) => Change::Write(
                        Some(array.clone()),
                        (removed, Some(crate::state::set_patch(key, array))),
                    ),
                })
            })
            .await
            .inspect_err(|e| self.report("state remove", e))
        })
    }

    fn increment<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
        by: i64,
    ) -> BoxFuture<'a, Result<(Number, StatePatch), StateError>> {
        Box::pin(async move {
            self.add(room, key, i128::from(by))
                .await
                .inspect_err(|e| self.report("state increment", e))
        })
    }

    fn decrement<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
        by: i64,
    ) -> BoxFuture<'a, Result<(Number, StatePatch), StateError>> {
        Box::pin(async move {
            self.add(room, key, -i128::from(by))
                .await
                .inspect_err(|e| self.report("state decrement", e))
        })
    }

    fn delete<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<StatePatch>, StateError>> {
        Box::pin(async move {
            let mut conn = self.node.connection();
            let removed: i64 = conn
                .hdel(self.node.keys.state(room), key)
                .await
                .map_err(backend)
                .inspect_err(|e| self.report("state delete", e))?;
            Ok((removed > 0).then(|| StatePatch::Delete {
                key: key.to_owned(),
            }))
        })
    }

    fn clear<'a>(&'a self, room: &'a RoomKey) -> BoxFuture<'a, Result<StatePatch, StateError>> {
        Box::pin(async move {
            let mut conn = self.node.connection();
            let () = conn
                .del(self.node.keys.state(room))
                .await
                .map(|_: i64| ())
                .map_err(backend)
                .inspect_err(|e| self.report("state clear", e))?;
            Ok(StatePatch::Clear)
        })
    }

    fn drop_room<'a>(&'a self, room: &'a RoomKey) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            let mut conn = self.node.connection();
            conn.del(self.node.keys.state(room))
                .await
                .map(|_: i64| ())
                .map_err(backend)
                .inspect_err(|e| self.report("state drop", e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_keep_channel_and_room_apart() {
        for (channel, room) in [("a:b", "c"), ("a", "b:c"), ("", ""), ("ch", "é:1")] {
            let key = RoomKey::new(channel, room);
            assert_eq!(Keys::parse_room(&Keys::room_name(&key)), Some(key));
        }
        assert_ne!(
            Keys::room_name(&RoomKey::new("a:b", "c")),
            Keys::room_name(&RoomKey::new("a", "b:c"))
        );
    }

    #[test]
    fn passwords_do_not_reach_error_messages() {
        assert_eq!(
            redacted("redis://user:secret@host:6379/0"),
            "redis://user:***@host:6379/0"
        );
        assert_eq!(redacted("redis://host:6379"), "redis://host:6379");
    }

    #[test]
    fn redis_errors_are_the_source_of_cluster_and_state_errors() {
        let failure = || redis::RedisError::from((redis::ErrorKind::IoError, "broken pipe"));
        let cluster = command_error("publish", failure());
        let state = backend(failure());
        for err in [&cluster as &(dyn std::error::Error + 'static), &state] {
            assert!(!err.to_string().contains("broken pipe"), "{err}");
            let source = err.source().expect("a redis failure has a source");
            let redis = source.downcast_ref::<redis::RedisError>();
            assert_eq!(
                redis.map(redis::RedisError::kind),
                Some(redis::ErrorKind::IoError)
            );
            crate::error::assert_source_not_repeated(err);
        }
    }

    #[test]
    fn invalid_json_in_the_store_is_a_chain_of_three() {
        use std::error::Error as _;

        let err = parse("topic", "{nope").unwrap_err();
        assert_eq!(err.to_string(), "the state store failed");
        let invalid = err.source().expect("the backend error has a source");
        assert_eq!(invalid.to_string(), "state key `topic` holds invalid JSON");
        let json = invalid.source().expect("the invalid JSON has a source");
        assert!(json.is::<serde_json::Error>(), "{json:?}");
        crate::error::assert_source_not_repeated(&err);
    }

    #[tokio::test]
    async fn an_invalid_url_gives_the_client_error_as_source() {
        use std::error::Error as _;

        let err = RedisAdapter::connect("not a url").await.unwrap_err();
        assert!(matches!(err, ClusterError::InvalidUrl(_)), "{err:?}");
        assert_eq!(err.to_string(), "invalid cluster URL");
        assert!(
            err.source()
                .is_some_and(|source| source.is::<redis::RedisError>())
        );
    }

    #[test]
    fn a_failed_reconnection_says_so_before_its_cause() {
        use std::error::Error as _;

        let err = ClusterError::SubscriptionLost(shared(ReconnectFailed("timed out".into())));
        let reconnect = err.source().expect("a lost subscription has a source");
        assert_eq!(reconnect.to_string(), "reconnecting failed");
        let cause = reconnect.source().map(ToString::to_string);
        assert_eq!(cause.as_deref(), Some("timed out"));
        crate::error::assert_source_not_repeated(&err);
    }

    #[test]
    fn presence_merges_connections_of_one_key_across_nodes() {
        let ada = |joined_at, last_seen, activity: Option<&str>| Stored {
            key: "u:ada".into(),
            joined_at,
            last_seen,
            activity: activity.map(str::to_owned),
        };
        let records = vec![
            (true, "c1".into(), ada(10, 20, None)),
            (true, "c2".into(), ada(5, 30, Some("typing"))),
            (false, "~u:ada".into(), ada(1, 2, None)),
            (
                false,
                "~u:bob".into(),
                Stored {
                    key: "u:bob".into(),
                    joined_at: 1,
                    last_seen: 90,
                    activity: None,
                },
            ),
            (
                false,
                "~u:old".into(),
                Stored {
                    key: "u:old".into(),
                    joined_at: 1,
                    last_seen: 1,
                    activity: None,
                },
            ),
        ];
        let merged = merge_presence(records, 100, 50);
        assert_eq!(merged.len(), 2, "{merged:?}");
        assert_eq!(merged[0].key, PresenceKey::user("ada"));
        assert!(merged[0].online);
        assert_eq!(merged[0].connections, 2);
        assert_eq!(merged[0].joined_at, 5);
        assert_eq!(merged[0].activity.as_deref(), Some("typing"));
        assert_eq!(merged[1].key, PresenceKey::user("bob"));
        assert!(!merged[1].online);
    }
}
