//! Asking one connection: server requests that wait for the client's reply,
//! and the replies a connection is still waiting for.
//!
//! On the wire a request is an ordinary message with an `ack` id:
//! `{"event":"question","payload":..,"ack":7}`. Its reply is the reserved
//! `__ack` event carrying the same id and either a `payload` or an `error`
//! (`{"code","message"}`): `{"event":"__ack","ack":7,"payload":..}`. Both
//! directions use the same shape.

use std::{
    fmt,
    future::{Future, IntoFuture},
    marker::PhantomData,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use super::{Conn, ConnInner};
use crate::{
    codec::{Frame, RawPayload},
    error::{DecodeError, EmitError, EncodeError},
    event::{Events, PayloadDecoder},
    protocol::{ErrorCode, ErrorPayload},
};

/// How long a server request waits for its reply unless told otherwise.
pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Server request ids are unique per process, so one id can be shared by all
/// the members of a room request and its frame encoded once.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Why a server request got no reply value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// No reply within the timeout.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The connection closed before replying.
    #[error("the connection closed before replying")]
    Closed,
    /// The request could not be sent.
    #[error(transparent)]
    Emit(#[from] EmitError),
    /// The client answered with an error reply.
    #[error("the client replied with an error: {}", .0.message)]
    Rejected(ErrorPayload),
    /// The reply's payload does not have the expected type.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

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
}

/// Hands an inbound reply (`__ack`) to the request waiting for it. A reply
/// nobody waits for (late, or never asked) is dropped.
pub(crate) fn resolve(
    conn: &ConnInner,
    id: u64,
    payload: RawPayload<'_>,
    error: Option<RawPayload<'_>>,
) {
    let Some(pending) = conn.requests.remove(id) else {
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

pub(crate) fn pending_for<R: DeserializeOwned + Send + 'static>(
    tx: oneshot::Sender<Result<R, RequestError>>,
) -> Pending {
    Box::new(move |result: Result<RawPayload<'_>, ErrorPayload>| {
        let value = match result {
            Ok(payload) => payload.decode::<R>().map_err(RequestError::Decode),
            Err(error) => Err(RequestError::Rejected(error)),
        };
        let _ = tx.send(value);
    })
}

/// Removes a pending request when its waiter goes away (timeout, drop).
pub(crate) struct Unregister {
    pub(crate) conn: Arc<ConnInner>,
    pub(crate) id: u64,
}

impl Drop for Unregister {
    fn drop(&mut self) {
        self.conn.requests.remove(self.id);
    }
}

/// A request to one connection; await it for the reply. Made by
/// [`Conn::request`].
#[must_use = "a request does nothing until awaited"]
pub struct Request<Out, R> {
    conn: Conn<Out>,
    frame: Result<(u64, Frame), EncodeError>,
    timeout: Duration,
    _reply: PhantomData<fn() -> R>,
}

impl<Out, R> fmt::Debug for Request<Out, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("conn", &self.conn.inner.id)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<Out: Events, R> Request<Out, R> {
    pub(crate) fn new(conn: Conn<Out>, event: &Out) -> Self {
        let id = next_id();
        let frame = conn
            .meta()
            .codec()
            .encode_parts(event.name(), Some(id), &crate::event::PayloadOf(event))
            .map(|frame| (id, frame));
        Self {
            conn,
            frame,
            timeout: DEFAULT_REQUEST_TIMEOUT,
            _reply: PhantomData,
        }
    }

    /// How long to wait for the reply (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl<Out: Events, R: DeserializeOwned + Send + 'static> IntoFuture for Request<Out, R> {
    type Output = Result<R, RequestError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let (id, frame) = self.frame.map_err(EmitError::from)?;
            let conn = Arc::clone(&self.conn.inner);
            let (tx, rx) = oneshot::channel();
            conn.requests.insert(id, pending_for::<R>(tx));
            let _unregister = Unregister {
                conn: Arc::clone(&conn),
                id,
            };
            conn.send_frame(frame)?;
            match tokio::time::timeout(self.timeout, rx).await {
                Ok(Ok(result)) => result,
                Ok(Err(_closed)) => Err(RequestError::Closed),
                Err(_elapsed) => Err(RequestError::Timeout(self.timeout)),
            }
        })
    }
}
