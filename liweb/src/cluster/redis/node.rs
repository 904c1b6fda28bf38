//! A node of the cluster: its Redis connections, what it publishes and
//! subscribes to, its membership and presence records, and its liveness.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    sync::{Arc, OnceLock, Weak},
};

use bytes::Bytes;
use redis::{AsyncCommands, aio::ConnectionManager};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{
    config::RedisConfig,
    keys::{Keys, encode_key},
    presence::{Stored, merge_presence, stored},
};
use crate::cluster::error::{ClusterError, ClusterErrorHook};
use crate::cluster::link::{Deliver, Link};
use crate::cluster::message::{Envelope, Message, Target};
use crate::{
    conn::ConnId, error::shared, presence::PresenceRecord, room::key::RoomKey, util::BoxFuture,
};

/// Reports errors to `tracing` and the application's hook.
#[derive(Default)]
pub(super) struct ErrorSink {
    pub(super) node: OnceLock<Weak<Node>>,
}

impl ErrorSink {
    pub(super) fn report(&self, err: ClusterError) {
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

pub(super) enum Subscription {
    Subscribe(String, oneshot::Sender<()>),
    Unsubscribe(String),
}

/// One node: its id, its connections to Redis and its tasks' inboxes.
pub(super) struct Node {
    pub(super) id: Uuid,
    pub(super) keys: Keys,
    pub(super) config: RedisConfig,
    pub(super) commands: ConnectionManager,
    pub(super) publish_tx: mpsc::Sender<(String, Bytes)>,
    pub(super) subscribe_tx: mpsc::UnboundedSender<Subscription>,
    pub(super) deliver: OnceLock<Arc<dyn Deliver>>,
    pub(super) on_error: OnceLock<ClusterErrorHook>,
    pub(super) errors: ErrorSink,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisAdapter")
            .field("node", &self.id)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

pub(super) fn command_error(op: &'static str, err: redis::RedisError) -> ClusterError {
    ClusterError::Command {
        op,
        source: shared(err),
    }
}

impl Node {
    pub(super) fn report(&self, err: ClusterError) {
        self.errors.report(err);
    }

    pub(super) fn connection(&self) -> ConnectionManager {
        self.commands.clone()
    }

    /// Writes the heartbeat; with `resync`, also every local membership
    /// (after Redis came back, it may have lost them). Returns `None` on
    /// failure, else whether this node had to be added to the node set
    /// again: Redis lost it (a restart, even one quicker than a heartbeat)
    /// or another node collected it as dead, and with it the memberships.
    pub(super) async fn beat(&self, resync: bool) -> Option<bool> {
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
    pub(super) async fn collect_dead_nodes(&self) -> Result<(), redis::RedisError> {
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
    pub(super) async fn live_records(
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

    pub(super) fn publish_bytes(&self, topic: String, bytes: Bytes) {
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
pub(super) async fn remove_node(
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
    pub(super) fn self_arc(&self) -> Option<Arc<Node>> {
        self.errors.node.get().and_then(Weak::upgrade)
    }

    pub(super) fn run(&self, pipe: redis::Pipeline, op: &'static str) -> BoxFuture<'static, ()> {
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
