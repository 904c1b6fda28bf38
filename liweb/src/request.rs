//! Requests to many connections — a room's members, every connection, one
//! connection anywhere in a cluster — and the waiters for replies that other
//! nodes send back.

use std::{
    fmt,
    future::Future,
    marker::PhantomData,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use futures_util::{Stream, StreamExt, stream::FuturesUnordered};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};

use crate::{
    cluster::{Link, Message as ClusterMessage, Target},
    codec::{CodecKind, EncodeOnce},
    conn::{
        Conn, ConnId,
        request::{DEFAULT_REQUEST_TIMEOUT, RequestError, Unregister, next_id, pending_for},
    },
    error::{DecodeError, EmitError, EncodeError},
    event::Events,
    protocol::{ErrorCode, ErrorPayload},
};

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
