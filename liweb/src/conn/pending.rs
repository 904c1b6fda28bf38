//! The requests a connection has sent and not yet seen answered, and the
//! hand-over of a reply to the one waiting for it.

use std::sync::Mutex;

use crate::{
    codec::RawPayload,
    event::PayloadDecoder,
    protocol::{ErrorCode, ErrorPayload},
};

/// What a connection's pending request does with the reply.
pub(crate) type Pending = Box<dyn for<'a> FnOnce(Result<RawPayload<'a>, ErrorPayload>) + Send>;

/// The requests a connection has sent and not yet seen answered. A list,
/// not a map: a connection has few requests in flight, and an empty `Vec`
/// is smaller than an empty map in every connection.
#[derive(Default)]
pub(crate) struct PendingRequests(Mutex<Vec<(u64, Pending)>>);

impl PendingRequests {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Pending)>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn insert(&self, id: u64, pending: Pending) {
        self.lock().push((id, pending));
    }

    pub(crate) fn remove(&self, id: u64) -> Option<Pending> {
        let mut pending = self.lock();
        let index = pending.iter().position(|(key, _)| *key == id)?;
        Some(pending.swap_remove(index).1)
    }

    /// Drops every pending request, so their waiters see the connection closed.
    pub(crate) fn clear(&self) {
        // Dropped outside the lock: a waiter's drop must not run under it.
        let drained = std::mem::take(&mut *self.lock());
        drop(drained);
    }

    /// Hands an inbound reply (`__ack`) to the request waiting for it. A reply
    /// nobody waits for (late, or never asked) is dropped.
    pub(crate) fn resolve(&self, id: u64, payload: RawPayload<'_>, error: Option<RawPayload<'_>>) {
        let Some(pending) = self.remove(id) else {
            tracing::debug!(id, "a reply to no pending request");
            return;
        };
        let result = match error {
            None => Ok(payload),
            Some(error) => Err(error
                .decode::<ErrorPayload>()
                .unwrap_or_else(|err| ErrorPayload {
                    code: ErrorCode::HandlerFailed,
                    message: format!("malformed error reply: {err}"),
                    event: None,
                })),
        };
        pending(result);
    }
}
