//! The byte-bounded queue between a connection's emitters and its writer.

use std::{
    collections::VecDeque,
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicUsize, Ordering},
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
}

/// [`OutQueue::push_frame`] found the queue over its byte limit.
#[derive(Debug)]
pub(crate) struct Full;

/// How many slots an emptied queue keeps; more are given back.
const IDLE_QUEUE: usize = 64;

impl OutQueue {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            items: Mutex::new(VecDeque::new()),
            writer: AtomicWaker::new(),
            queued: AtomicUsize::new(0),
            max,
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
        Ok(())
    }

    /// Bytes queued and not yet handed to the transport.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Counts `item` as handed to the transport.
    pub(crate) fn sent(&self, item: &Outbound) {
        if let Outbound::Frame(frame) = item {
            self.queued.fetch_sub(frame.len(), Ordering::AcqRel);
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
        batch.extend(items.drain(..take));
        if items.is_empty() && items.capacity() > IDLE_QUEUE {
            items.shrink_to(IDLE_QUEUE);
        }
        Poll::Ready(())
    }
}
