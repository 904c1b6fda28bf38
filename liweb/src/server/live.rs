//! The connections of a server: how many exist in any state (admission
//! and shutdown), and the open ones by id and in the order they opened.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex, MutexGuard, Weak,
        atomic::{AtomicUsize, Ordering},
    },
};

use crate::{
    conn::{Conn, ConnId, ConnInner, queue::Budget},
    protocol::CloseCode,
};

/// How many connections exist in any state, and a way to wait for none.
#[derive(Debug, Default)]
pub(crate) struct Live {
    count: AtomicUsize,
    idle: tokio::sync::Notify,
    /// Every connection task's connection, authenticated or not, so a
    /// shutdown can ask each to go away. Touched once at the start and once
    /// at the end of a connection, never per message.
    conns: Mutex<HashMap<ConnId, Weak<ConnInner>>>,
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

    pub(crate) fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    fn tracked(&self) -> MutexGuard<'_, HashMap<ConnId, Weak<ConnInner>>> {
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
    pub(crate) fn all(&self) -> Vec<Arc<ConnInner>> {
        self.tracked().values().filter_map(Weak::upgrade).collect()
    }

    /// Closes the connections holding the most queued bytes, biggest first,
    /// until what the others hold is under the budget's low-water mark: the
    /// server-wide outbound budget is spent. Connections already closing
    /// count as gone (their backlog is dropped, or soon is). Returns how
    /// many it closed.
    pub(crate) fn reap(&self, budget: &Budget) -> u64 {
        let mut holders: Vec<(usize, Arc<ConnInner>)> = self
            .all()
            .into_iter()
            .map(|conn| (conn.queue.queued_bytes(), conn))
            .collect();
        holders.sort_unstable_by_key(|holder| std::cmp::Reverse(holder.0));
        let mut left = budget.total();
        let mut closed = 0;
        for (queued, conn) in holders {
            if left <= budget.low_water() || queued == 0 {
                break;
            }
            left = left.saturating_sub(queued);
            if conn.close_now(CloseCode::SlowConsumer, "server outbound budget exhausted") {
                closed += 1;
                tracing::warn!(
                    conn = %conn.id,
                    queued,
                    total = budget.total(),
                    "connection closed: the server's outbound budget is exhausted"
                );
            }
        }
        closed
    }

    /// Waits until no connection is left, or `deadline`; `true` when none is.
    pub(crate) async fn wait_none(&self, deadline: tokio::time::Instant) -> bool {
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
    by_order: BTreeMap<u64, Conn<Out>>,
    next: u64,
}

impl<Out> Default for Connections<Out> {
    fn default() -> Self {
        Self {
            by_id: HashMap::new(),
            by_order: BTreeMap::new(),
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

    /// Adds a connection at the end of the order (or moves it there).
    pub(crate) fn insert(&mut self, conn: &Conn<Out>) {
        let order = self.next;
        self.next += 1;
        if let Some((old, _)) = self.by_id.insert(conn.inner.id, (order, conn.clone())) {
            self.by_order.remove(&old);
        }
        self.by_order.insert(order, conn.clone());
    }

    pub(crate) fn remove(&mut self, id: ConnId) {
        if let Some((order, _)) = self.by_id.remove(&id) {
            self.by_order.remove(&order);
        }
    }

    /// Every connection, oldest first.
    pub(crate) fn values(&self) -> impl Iterator<Item = &Conn<Out>> {
        self.by_order.values()
    }
}
