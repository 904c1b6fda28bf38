//! The byte-bounded queue between a connection's emitters and its writer,
//! and the budget every queue of a server shares.

use std::{
    collections::VecDeque,
    fmt,
    sync::{
        Arc, Mutex, MutexGuard, OnceLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};

use futures_util::task::AtomicWaker;

use crate::{codec::Frame, transport::item::Outbound};

/// The queue between a connection's emitters and its writer: a locked
/// `VecDeque`, the writer's waker, and the bytes of frames queued and not
/// yet handed to the transport. Unlike a channel it allocates nothing until
/// something is queued (a channel's first block of slots is over a kilobyte
/// per connection), and it gives back what a burst grew.
pub(crate) struct OutQueue {
    items: Mutex<VecDeque<Outbound>>,
    writer: AtomicWaker,
    /// Bytes queued and not yet handed to the transport.
    queued: AtomicUsize,
    /// The most bytes that may be queued; see `Config::max_queue_bytes`.
    max: usize,
    /// Set when a policy close dropped the backlog, so a writer holding
    /// frames it took before drops them too and sends the close first.
    urgent: AtomicBool,
    /// The server-wide total these bytes also count in.
    budget: Arc<Budget>,
}

/// [`OutQueue::push_frame`] found the queue over its byte limit.
#[derive(Debug)]
pub(crate) struct Full;

/// How many slots an emptied queue keeps; more are given back.
const IDLE_QUEUE: usize = 64;

impl OutQueue {
    pub(crate) fn new(max: usize, budget: Arc<Budget>) -> Self {
        Self {
            items: Mutex::new(VecDeque::new()),
            writer: AtomicWaker::new(),
            queued: AtomicUsize::new(0),
            max,
            urgent: AtomicBool::new(false),
            budget,
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Outbound>> {
        self.items
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues one control item (ping, close) and wakes the writer; control
    /// items do not count against the byte limit.
    pub(crate) fn push(&self, item: Outbound) {
        self.lock().push_back(item);
        self.writer.wake();
    }

    /// Queues one frame unless that would take the queue over its byte
    /// limit. A frame larger than the whole limit still goes out when the
    /// queue is empty: the limit bounds a backlog, not one message.
    pub(crate) fn push_frame(&self, frame: Frame) -> Result<(), Full> {
        let len = frame.len();
        let before = self.queued.fetch_add(len, Ordering::AcqRel);
        if before > 0 && before + len > self.max {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            return Err(Full);
        }
        self.push(Outbound::Frame(frame));
        // After the push, so a close this triggers finds the frame queued.
        self.budget.add(len);
        Ok(())
    }

    /// Drops everything queued and queues `close` alone, ahead of anything
    /// a writer took before: a policy close goes out before the backlog it
    /// ends. The dropped bytes are given back at once.
    pub(crate) fn abort_with(&self, close: Outbound) {
        let mut items = self.lock();
        let dropped = std::mem::take(&mut *items);
        items.push_back(close);
        self.urgent.store(true, Ordering::Release);
        drop(items);
        for item in &dropped {
            self.sent(item);
        }
        drop(dropped);
        self.writer.wake();
    }

    /// Whether a policy close dropped the backlog since the writer last
    /// took items: what it still holds from before is to be dropped.
    pub(crate) fn is_urgent(&self) -> bool {
        self.urgent.load(Ordering::Acquire)
    }

    /// Gives back every byte still counted, at the connection's end: what
    /// the writer held when it stopped is never sent.
    pub(crate) fn release(&self) {
        let dropped = std::mem::take(&mut *self.lock());
        let counted = self.queued.swap(0, Ordering::AcqRel);
        self.budget.sub(counted);
        drop(dropped);
    }

    /// Bytes queued and not yet handed to the transport.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Counts `item` as handed to the transport.
    pub(crate) fn sent(&self, item: &Outbound) {
        if let Outbound::Frame(frame) = item {
            let len = frame.len();
            // Never below zero: after `release` nothing is counted any more.
            let released =
                self.queued
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                        queued.checked_sub(len)
                    });
            if released.is_ok() {
                self.budget.sub(len);
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// The oldest item, counted as sent.
    pub(crate) fn pop(&self) -> Option<Outbound> {
        let item = self.lock().pop_front()?;
        self.sent(&item);
        Some(item)
    }

    /// Moves up to `max` queued items to `batch`; pending (with the waker
    /// registered) while there are none. The items count as queued until
    /// [`OutQueue::sent`] is called for each.
    pub(crate) fn poll_take(
        &self,
        cx: &mut Context<'_>,
        batch: &mut Vec<Outbound>,
        max: usize,
    ) -> Poll<()> {
        // Registered first, so an item pushed after the check still wakes us.
        self.writer.register(cx.waker());
        let mut items = self.lock();
        if items.is_empty() {
            return Poll::Pending;
        }
        let take = items.len().min(max);
        // What is taken now comes after any policy close's drop.
        self.urgent.store(false, Ordering::Release);
        batch.extend(items.drain(..take));
        if items.is_empty() && items.capacity() > IDLE_QUEUE {
            items.shrink_to(IDLE_QUEUE);
        }
        Poll::Ready(())
    }
}

impl Drop for OutQueue {
    fn drop(&mut self) {
        // A connection whose session never released its queue (a detached
        // one) still gives its bytes back.
        self.budget.sub(*self.queued.get_mut());
    }
}

/// The bytes queued for every connection of a server together, bounded by
/// `Config::max_total_queue_bytes`. Every queue adds what it queues and
/// subtracts what its writer sends; when a push takes the total over the
/// limit, the server's reaper closes the connections holding the most
/// until the total is back under the low-water mark.
pub(crate) struct Budget {
    total: AtomicUsize,
    max: usize,
    low: usize,
    /// Set while the reaper runs, so concurrent pushes over the limit do
    /// not each scan every connection.
    reaping: AtomicBool,
    /// What to do when the total goes over the limit; set by the server,
    /// which knows every connection (this module does not).
    reaper: OnceLock<Reaper>,
}

/// What a [`Budget`] runs when its total goes over the limit.
pub(crate) type Reaper = Box<dyn Fn(&Budget) + Send + Sync>;

impl fmt::Debug for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Budget")
            .field("total", &self.total())
            .field("max", &self.max)
            .field("low", &self.low)
            .finish_non_exhaustive()
    }
}

impl Budget {
    /// A budget of `max` bytes; the reaper brings the total back to three
    /// quarters of it.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            total: AtomicUsize::new(0),
            max,
            low: max / 4 * 3,
            reaping: AtomicBool::new(false),
            reaper: OnceLock::new(),
        }
    }

    /// Installs what runs when the total goes over the limit (once).
    pub(crate) fn set_reaper(&self, reaper: Reaper) {
        let _ = self.reaper.set(reaper);
    }

    /// The bytes queued now, over every connection.
    pub(crate) fn total(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    /// The total the reaper closes connections down to.
    pub(crate) fn low_water(&self) -> usize {
        self.low
    }

    fn add(&self, len: usize) {
        let total = self.total.fetch_add(len, Ordering::AcqRel) + len;
        if total > self.max {
            self.over();
        }
    }

    fn sub(&self, len: usize) {
        if len > 0 {
            self.total.fetch_sub(len, Ordering::AcqRel);
        }
    }

    #[cold]
    fn over(&self) {
        let Some(reaper) = self.reaper.get() else {
            return;
        };
        if self.reaping.swap(true, Ordering::AcqRel) {
            return;
        }
        reaper(self);
        self.reaping.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use bytes::Bytes;

    use super::{Budget, OutQueue};
    use crate::{codec::Frame, protocol::CloseCode, transport::item::Outbound};

    fn frame(len: usize) -> Frame {
        Frame::text_from_bytes(Bytes::from(vec![b'x'; len])).unwrap()
    }

    #[test]
    fn a_policy_close_drops_the_backlog_and_goes_first() {
        let budget = Arc::new(Budget::new(usize::MAX));
        let queue = OutQueue::new(1 << 20, Arc::clone(&budget));
        for _ in 0..3 {
            queue.push_frame(frame(100)).unwrap();
        }
        assert_eq!((queue.queued_bytes(), budget.total()), (300, 300));
        queue.abort_with(Outbound::Close(CloseCode::SlowConsumer, String::new()));
        assert_eq!((queue.queued_bytes(), budget.total()), (0, 0));
        assert!(queue.is_urgent());
        assert!(matches!(
            queue.pop(),
            Some(Outbound::Close(CloseCode::SlowConsumer, _))
        ));
        assert!(queue.pop().is_none());
    }

    #[test]
    fn the_budget_counts_every_queue_and_runs_the_reaper_over_the_limit() {
        let budget = Arc::new(Budget::new(250));
        let reaped = Arc::new(AtomicUsize::new(0));
        budget.set_reaper(Box::new({
            let reaped = Arc::clone(&reaped);
            move |budget| {
                reaped.store(budget.total(), Ordering::Relaxed);
            }
        }));
        let (a, b) = (
            OutQueue::new(1 << 20, Arc::clone(&budget)),
            OutQueue::new(1 << 20, Arc::clone(&budget)),
        );
        a.push_frame(frame(100)).unwrap();
        b.push_frame(frame(100)).unwrap();
        assert_eq!(reaped.load(Ordering::Relaxed), 0);
        a.push_frame(frame(100)).unwrap();
        assert_eq!(reaped.load(Ordering::Relaxed), 300);
        assert_eq!(budget.low_water(), 186);
        a.pop();
        assert_eq!(budget.total(), 200);
        // What a connection still counts at its end is given back.
        b.release();
        drop(a);
        assert_eq!(budget.total(), 0);
    }
}
