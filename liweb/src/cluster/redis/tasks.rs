//! The adapter's tasks: the publisher, the subscriber (which reconnects),
//! and the heartbeat that keeps the node alive and collects dead ones.

use std::{collections::HashSet, sync::Weak, time::Duration};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::node::{Node, Subscription, command_error};
use crate::{
    cluster::error::ClusterError,
    cluster::message::Envelope,
    error::{BoxError, shared},
};

/// Publishes queued messages in order, pipelining what has piled up.
pub(super) async fn publisher(node: Weak<Node>, mut queue: mpsc::Receiver<(String, Bytes)>) {
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
pub(super) struct ReconnectFailed(#[source] pub(super) BoxError);

/// Owns the subscriber connection: subscribes and unsubscribes as rooms
/// gain their first and lose their last local member, delivers what
/// arrives, and on a lost connection reconnects with backoff and subscribes
/// to everything again.
pub(super) async fn subscriber(
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

pub(super) fn apply(wanted: &mut HashSet<String>, command: Subscription) {
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

pub(super) fn receive(node: &Node, origin: Uuid, payload: &[u8]) {
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
pub(super) async fn heartbeat_task(node: Weak<Node>) {
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
