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
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use super::{Conn, ConnInner, pending::Pending};
use crate::{
    codec::{Frame, RawPayload},
    error::{DecodeError, EmitError, EncodeError},
    event::{Events, PayloadDecoder},
    protocol::ErrorPayload,
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

impl<Out: Events> Conn<Out> {
    /// Sends `event` as a request and waits for the client's reply, decoded
    /// as `R`; the half-duplex exchange:
    ///
    /// ```no_run
    /// # use liweb::prelude::*;
    /// # use std::time::Duration;
    /// # #[derive(Events)] enum Out { Confirm(String) }
    /// # async fn ask(conn: Conn<Out>) -> Result<(), liweb::RequestError> {
    /// let yes: bool = conn
    ///     .request(Out::Confirm("delete everything?".into()))
    ///     .timeout(Duration::from_secs(5))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// The frame carries an `ack` id; the client answers with
    /// `{"event":"__ack","ack":id,"payload":..}` (see the protocol document).
    /// Without a reply within the timeout (default 10 s) the result is
    /// [`RequestError::Timeout`](crate::RequestError::Timeout).
    pub fn request<R>(&self, event: Out) -> Request<Out, R> {
        Request::new(self.clone(), &event)
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
