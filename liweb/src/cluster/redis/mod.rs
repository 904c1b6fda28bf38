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

mod config;
mod keys;
mod node;
mod presence;
mod store;
mod tasks;

use std::{
    fmt,
    sync::{Arc, OnceLock},
};

use tokio::sync::mpsc;
use uuid::Uuid;

pub use self::{config::RedisConfig, store::RedisStore};
use self::{
    keys::Keys,
    node::{ErrorSink, Node},
    tasks::{heartbeat_task, publisher, subscriber},
};
use crate::cluster::error::{ClusterError, ClusterErrorHook};
use crate::cluster::link::{Deliver, Link, Parts};
use crate::{
    error::{BoxError, shared},
    state::StateStore,
};

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
    pub(crate) fn into_parts(self) -> Parts {
        let state: Arc<dyn StateStore> = Arc::new(self.state_store());
        let link = self.link();
        Parts {
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

#[cfg(test)]
mod tests;
