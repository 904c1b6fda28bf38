//! Acknowledgements: replies to client requests, and server requests that
//! wait for a client's reply.
//!
//! On the wire a request is an ordinary message with an `ack` id:
//! `{"event":"question","payload":..,"ack":7}`. Its reply is the reserved
//! `__ack` event carrying the same id and either a `payload` or an `error`
//! (`{"code","message"}`): `{"event":"__ack","ack":7,"payload":..}`. Both
//! directions use the same shape.

use std::{
    any::TypeId,
    fmt,
    future::{Future, IntoFuture},
    marker::PhantomData,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use futures_util::{Stream, StreamExt, stream::FuturesUnordered};
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::{mpsc, oneshot};

use crate::{
    cluster::{Link, Message as ClusterMessage, Target},
    codec::{CodecKind, EncodeOnce, Frame, RawPayload},
    conn::{Conn, ConnId, ConnInner},
    error::{DecodeError, EmitError, EncodeError, ExtractError},
    event::{Events, PayloadDecoder},
    extract::{ConnParts, FromConnParts},
    protocol::{ACK_EVENT, ErrorCode, ErrorPayload},
};

/// How long a server request waits for its reply unless told otherwise.
pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Server request ids are unique per process, so one id can be shared by all
/// the members of a room request and its frame encoded once.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// A reply value, encoded on demand in the requester's codec.
pub(crate) type Reply = Box<dyn FnOnce(CodecKind, u64) -> Result<Frame, EncodeError> + Send>;

/// What a handler call ended with, when it did not fail.
#[doc(hidden)]
pub enum Outcome {
    /// The handler ran; `Some` is its reply value for a request.
    Done(Option<Reply>),
    /// One of the handler's guards refused the event, with this reason.
    Rejected(String),
}

impl fmt::Debug for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Done(reply) => f
                .debug_tuple("Done")
                .field(&reply.as_ref().map(|_| ".."))
                .finish(),
            Self::Rejected(reason) => f.debug_tuple("Rejected").field(reason).finish(),
        }
    }
}

/// A reply carrying `value`; unit values are no reply, so a handler
/// returning `Result<(), E>` leaves the answer to the others (or to `null`).
pub(crate) fn reply_value<T: Serialize + Send + 'static>(value: T) -> Option<Reply> {
    if TypeId::of::<T>() == TypeId::of::<()>() {
        return None;
    }
    Some(Box::new(move |codec: CodecKind, id| {
        codec.encode_parts(ACK_EVENT, Some(id), &value)
    }))
}

/// The pending reply of one client request: the id to answer, and whether
/// an answer went out.
pub(crate) struct AckSlot {
    id: u64,
    conn: Arc<ConnInner>,
    sent: AtomicBool,
}

impl fmt::Debug for AckSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AckSlot")
            .field("id", &self.id)
            .field("sent", &self.is_sent())
            .finish()
    }
}

impl AckSlot {
    pub(crate) fn new(id: u64, conn: Arc<ConnInner>) -> Arc<Self> {
        Arc::new(Self {
            id,
            conn,
            sent: AtomicBool::new(false),
        })
    }

    /// Whether a reply has gone out.
    pub(crate) fn is_sent(&self) -> bool {
        self.sent.load(Ordering::Acquire)
    }

    /// Claims the single reply; `false` when one went out already.
    fn claim(&self) -> bool {
        !self.sent.swap(true, Ordering::AcqRel)
    }

    /// Sends `reply` unless a reply went out already.
    pub(crate) fn reply(&self, reply: Reply) -> Result<bool, EmitError> {
        if !self.claim() {
            return Ok(false);
        }
        let frame = reply(self.conn.codec(), self.id)?;
        self.conn.send_frame(frame)?;
        Ok(true)
    }

    /// Sends `null` unless a reply went out already.
    pub(crate) fn reply_null(&self) {
        let _ = self.reply(Box::new(|codec: CodecKind, id| {
            codec.encode_parts(ACK_EVENT, Some(id), &())
        }));
    }

    /// Sends an error reply unless a reply went out already.
    pub(crate) fn reply_error(&self, code: ErrorCode, message: String, event: Option<&str>) {
        if !self.claim() {
            return;
        }
        let error = ErrorPayload {
            code,
            message,
            event: event.map(str::to_owned),
        };
        match self.conn.codec().encode_error_reply(self.id, &error) {
            Ok(frame) => {
                let _ = self.conn.send_frame(frame);
            }
            Err(err) => tracing::error!(%err, "cannot encode an error reply"),
        }
    }
}

/// The reply handle of a client request, as a handler argument.
///
/// A handler answers a request by returning `Ok(value)`; `Ack` is for
/// answering before the handler ends (then work on) or from a handler that
/// returns `()`. The first answer wins: later ones, and the return value,
/// are not sent. When the event carried no ack id, [`Ack::requested`] is
/// `false` and sending does nothing.
///
/// ```
/// # use liweb::prelude::*;
/// # #[derive(Events)] enum In { Save(String) }
/// # #[derive(Events)] enum Out { Saved }
/// #[liweb::handler(In::Save)]
/// async fn save(ack: Ack, text: String) {
///     let _ = ack.send(&text.len()); // the client stops waiting here
///     // ... slow work the client need not wait for ...
/// }
/// ```
#[derive(Clone)]
pub struct Ack {
    slot: Option<Arc<AckSlot>>,
}

impl fmt::Debug for Ack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ack")
            .field("id", &self.slot.as_ref().map(|slot| slot.id))
            .field(
                "sent",
                &self.slot.as_ref().is_some_and(|slot| slot.is_sent()),
            )
            .finish()
    }
}

impl Ack {
    /// Whether the event was a request (carried an ack id) and still awaits
    /// its answer.
    pub fn requested(&self) -> bool {
        self.slot.as_ref().is_some_and(|slot| !slot.is_sent())
    }

    /// Answers the request with `value`. Returns `Ok(false)` when there is
    /// nothing to answer (no ack id, or answered already).
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<bool, EmitError> {
        let Some(slot) = &self.slot else {
            return Ok(false);
        };
        if !slot.claim() {
            return Ok(false);
        }
        let frame = slot
            .conn
            .codec()
            .encode_parts(ACK_EVENT, Some(slot.id), value)?;
        slot.conn.send_frame(frame)?;
        Ok(true)
    }

    /// Answers the request with an error reply carrying `message`
    /// (code `handler_failed`). Returns whether an answer went out.
    pub fn send_error(&self, message: impl Into<String>) -> bool {
        match &self.slot {
            Some(slot) if !slot.is_sent() => {
                slot.reply_error(ErrorCode::HandlerFailed, message.into(), None);
                true
            }
            _ => false,
        }
    }
}

impl<In: Events, Out: Events> FromConnParts<In, Out> for Ack {
    fn from_conn_parts(parts: &ConnParts<'_, In, Out>) -> Result<Self, ExtractError> {
        Ok(Ack {
            slot: parts.ack.cloned(),
        })
    }
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

fn pending_for<R: DeserializeOwned + Send + 'static>(
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
struct Unregister {
    conn: Arc<ConnInner>,
    id: u64,
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

/// Replies from other nodes, by request id: the connection and its reply
/// payload as JSON (`Ok`) or its error reply as JSON (`Err`).
pub(crate) type RemoteReply = (ConnId, Result<bytes::Bytes, bytes::Bytes>);

/// The requests of this node that other nodes answer.
#[derive(Default)]
pub(crate) struct Waiters(
    Mutex<std::collections::HashMap<u64, mpsc::UnboundedSender<RemoteReply>>>,
);

impl Waiters {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, mpsc::UnboundedSender<RemoteReply>>>
    {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Hands a reply from another node to the request waiting for it.
    pub(crate) fn deliver(&self, id: u64, reply: RemoteReply) {
        if let Some(waiter) = self.lock().get(&id) {
            let _ = waiter.send(reply);
        }
    }
}

impl fmt::Debug for Waiters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiters")
            .field("waiting", &self.lock().len())
            .finish()
    }
}

/// Where a request also goes when the server is one node of a cluster.
struct Across {
    link: Arc<dyn Link>,
    waiters: Arc<Waiters>,
    target: Target,
}

/// A request to many connections (a room, or every connection); made by
/// [`Room::request`](crate::Room::request) and
/// [`Server::request_all`](crate::Server::request_all). Call
/// [`MultiRequest::send`] to get the replies as a stream.
#[must_use = "a request does nothing until sent"]
pub struct MultiRequest<Out, R> {
    conns: Vec<Conn<Out>>,
    event: Out,
    timeout: Duration,
    across: Option<Across>,
    _reply: PhantomData<fn() -> R>,
}

impl<Out, R> fmt::Debug for MultiRequest<Out, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultiRequest")
            .field("conns", &self.conns.len())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<Out: Events, R: DeserializeOwned + Send + 'static> MultiRequest<Out, R> {
    pub(crate) fn new(conns: Vec<Conn<Out>>, event: Out) -> Self {
        Self {
            conns,
            event,
            timeout: DEFAULT_REQUEST_TIMEOUT,
            across: None,
            _reply: PhantomData,
        }
    }

    /// Also asks the connections of `target` on the other nodes.
    pub(crate) fn across(
        mut self,
        link: Arc<dyn Link>,
        waiters: Arc<Waiters>,
        target: Target,
    ) -> Self {
        self.across = Some(Across {
            link,
            waiters,
            target,
        });
        self
    }

    /// How long to wait for the replies (default 10 s); connections that
    /// have not answered by then yield [`RequestError::Timeout`]. In a
    /// cluster the other nodes' members are not known in advance, so the
    /// stream then ends at the timeout (or sooner, for a request to one
    /// connection, at its reply).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends the request to every connection (encoded once per codec, with
    /// one ack id) and returns the replies as they arrive, one item per
    /// connection. Fails only when the event cannot be encoded for other
    /// nodes (as JSON); a connection whose codec cannot encode it gets its
    /// item at once, an [`EmitError::Encode`] error.
    pub fn send(self) -> Result<Replies<R>, EncodeError> {
        let id = next_id();
        let event = self.event;
        let mut frames = EncodeOnce::new(|codec: CodecKind| {
            codec.encode_parts(event.name(), Some(id), &crate::event::PayloadOf(&event))
        });
        let deadline = tokio::time::Instant::now() + self.timeout;
        let timeout = self.timeout;
        let remote = match self.across {
            Some(across) => {
                let payload = serde_json::to_vec(&crate::event::PayloadOf(&event))
                    .map_err(EncodeError::new)?;
                let (tx, rx) = mpsc::unbounded_channel();
                across.waiters.lock().insert(id, tx);
                let single = matches!(across.target, Target::Conn(_));
                across.link.publish(ClusterMessage::Request {
                    target: across.target,
                    id,
                    reply_to: across.link.node_id(),
                    timeout_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
                    event: event.name().to_owned(),
                    payload: bytes::Bytes::from(payload),
                });
                Some(Remote {
                    rx,
                    deadline: Box::pin(tokio::time::sleep_until(deadline)),
                    single,
                    _unregister: RemoteUnregister {
                        waiters: across.waiters,
                        id,
                    },
                })
            }
            None => None,
        };
        let waits = FuturesUnordered::new();
        for conn in self.conns {
            let frame = match frames.get(conn.meta().codec()) {
                Ok(frame) => frame.clone(),
                // This connection's codec cannot encode it; the others still
                // get the request.
                Err(err) => {
                    let conn_id = conn.id();
                    let failed: ReplyFuture<R> = Box::pin(async move {
                        (conn_id, Err(RequestError::Emit(EmitError::Encode(err))))
                    });
                    waits.push(failed);
                    continue;
                }
            };
            let inner = Arc::clone(&conn.inner);
            let conn_id = inner.id;
            let (tx, rx) = oneshot::channel();
            inner.requests.insert(id, pending_for::<R>(tx));
            let unregister = Unregister {
                conn: Arc::clone(&inner),
                id,
            };
            let sent = inner.send_frame(frame);
            let wait: ReplyFuture<R> = Box::pin(async move {
                let _unregister = unregister;
                if let Err(err) = sent {
                    return (conn_id, Err(RequestError::Emit(err)));
                }
                let result = match tokio::time::timeout_at(deadline, rx).await {
                    Ok(Ok(result)) => result,
                    Ok(Err(_closed)) => Err(RequestError::Closed),
                    Err(_elapsed) => Err(RequestError::Timeout(timeout)),
                };
                (conn_id, result)
            });
            waits.push(wait);
        }
        Ok(Replies {
            waits,
            remote,
            _reply: PhantomData,
        })
    }
}

/// The replies a request gets from other nodes, until its deadline.
struct Remote {
    rx: mpsc::UnboundedReceiver<RemoteReply>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// A request to one connection: its first reply ends it.
    single: bool,
    _unregister: RemoteUnregister,
}

/// Stops routing other nodes' replies to a request that ended.
struct RemoteUnregister {
    waiters: Arc<Waiters>,
    id: u64,
}

impl Drop for RemoteUnregister {
    fn drop(&mut self) {
        self.waiters.lock().remove(&self.id);
    }
}

fn remote_result<R: DeserializeOwned>(
    outcome: Result<bytes::Bytes, bytes::Bytes>,
) -> Result<R, RequestError> {
    match outcome {
        Ok(json) => serde_json::from_slice(&json)
            .map_err(|err| RequestError::Decode(DecodeError::payload_message(err))),
        Err(json) => Err(RequestError::Rejected(
            serde_json::from_slice(&json).unwrap_or_else(|err| ErrorPayload {
                code: ErrorCode::HandlerFailed,
                message: format!("malformed error reply: {err}"),
                event: None,
            }),
        )),
    }
}

type ReplyFuture<R> = Pin<Box<dyn Future<Output = (ConnId, Result<R, RequestError>)> + Send>>;

/// The replies of a [`MultiRequest`], one per connection, in arrival order.
/// Ends when every connection has answered, closed or timed out (in a
/// cluster: when the timeout has passed).
pub struct Replies<R> {
    waits: FuturesUnordered<ReplyFuture<R>>,
    remote: Option<Remote>,
    _reply: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for Replies<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replies")
            .field("waiting", &self.waits.len())
            .finish()
    }
}

impl<R: DeserializeOwned> Stream for Replies<R> {
    type Item = (ConnId, Result<R, RequestError>);

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let local = self.waits.poll_next_unpin(cx);
        if let Poll::Ready(Some(item)) = local {
            return Poll::Ready(Some(item));
        }
        let local_done = matches!(local, Poll::Ready(None));
        let Some(remote) = &mut self.remote else {
            return local;
        };
        if let Poll::Ready(Some((conn, outcome))) = remote.rx.poll_recv(cx) {
            if remote.single {
                self.remote = None;
            }
            return Poll::Ready(Some((conn, remote_result(outcome))));
        }
        if remote.deadline.as_mut().poll(cx).is_ready() {
            self.remote = None;
            return if local_done {
                Poll::Ready(None)
            } else {
                Poll::Pending
            };
        }
        Poll::Pending
    }
}
