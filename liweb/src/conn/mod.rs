//! One connection as the application sees it: [`Conn`], its id, metadata,
//! typed data, rooms, outbound queue and pending requests.
//!
//! This module knows nothing of the server: the task that runs a connection
//! is `session`, and what arrives is dispatched by `dispatch`.

pub(crate) mod meta;
pub(crate) mod pending;
pub(crate) mod queue;
pub(crate) mod request;

use std::{
    fmt,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicU8, Ordering},
    },
};

use http::HeaderMap;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use self::{
    meta::{ConnMeta, Transport},
    pending::PendingRequests,
    queue::{Budget, OutQueue},
};
use crate::{
    codec::{CodecKind, Frame},
    error::Chain,
    error::EmitError,
    event::Events,
    protocol::{CloseCode, ERROR_EVENT, ErrorCode, ErrorPayload},
    room::key::RoomKey,
    transport::item::Outbound,
};
/// The id of a connection: a random (v4) UUID, serialized as its string form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConnId(Uuid);

impl ConnId {
    pub(crate) fn new() -> Self {
        Self(Uuid::new_v4())
    }

    /// The UUID.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl From<Uuid> for ConnId {
    fn from(uuid: Uuid) -> Self {
        Self(uuid)
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnId({})", self.0)
    }
}

/// What the connection's typed data holds once authenticated: the user
/// the auth strategy accepted.
#[derive(Clone)]
pub(crate) struct Authenticated<U>(pub(crate) U);

/// Where a connection stands with authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum AuthState {
    /// No authentication needed, or it succeeded: the connection is open to
    /// the application.
    Open = 0,
    /// Authentication is configured and has not succeeded yet.
    Pending = 1,
    /// Authentication failed or timed out; the connection is closing.
    Failed = 2,
}

impl AuthState {
    fn from_u8(value: u8) -> Self {
        match value {
            0 => Self::Open,
            1 => Self::Pending,
            _ => Self::Failed,
        }
    }
}

pub(crate) struct ConnInner {
    pub(crate) id: ConnId,
    meta: ConnMeta,
    /// What the writer is to send, in order, and how many bytes of it.
    pub(crate) queue: OutQueue,
    pub(crate) closing: AtomicBool,
    /// The code of the close the server started, if it did.
    pub(crate) close_code: std::sync::OnceLock<CloseCode>,
    /// Notified when a close was requested, so the connection task can bound
    /// how long it waits for the peer to answer it.
    pub(crate) close_requested: futures_util::task::AtomicWaker,
    data: RwLock<http::Extensions>,
    /// The rooms this connection is in: the other half of each room's
    /// member index, so a connection that ends leaves them all at once.
    rooms: std::sync::Mutex<Vec<RoomKey>>,
    /// Requests this server sent the connection, awaiting replies.
    pub(crate) requests: PendingRequests,
    /// An [`AuthState`], stored as its `u8`.
    auth: AtomicU8,
    /// Why the connection ended, set once by its session at teardown.
    ended: std::sync::OnceLock<DisconnectReason>,
    /// Wakes [`Conn::closed`] when `ended` is set.
    ended_notify: tokio::sync::Notify,
}

impl ConnInner {
    pub(crate) fn rooms(&self) -> std::sync::MutexGuard<'_, Vec<RoomKey>> {
        self.rooms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn codec(&self) -> CodecKind {
        self.meta.codec()
    }

    pub(crate) fn auth_state(&self) -> AuthState {
        AuthState::from_u8(self.auth.load(Ordering::Acquire))
    }

    /// Whether the application may see the connection: authenticated, or
    /// the server has no authentication.
    pub(crate) fn is_open(&self) -> bool {
        self.auth_state() == AuthState::Open
    }

    /// Whether authentication is still awaited.
    pub(crate) fn is_auth_pending(&self) -> bool {
        self.auth_state() == AuthState::Pending
    }

    /// Ends a pending authentication, successfully or not; `false` when it
    /// had already ended (a timeout and a late verdict race for it).
    pub(crate) fn settle_auth(&self, success: bool) -> bool {
        let to = if success {
            AuthState::Open
        } else {
            AuthState::Failed
        };
        self.auth
            .compare_exchange(
                AuthState::Pending as u8,
                to as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    pub(crate) fn insert_data<T: Clone + Send + Sync + 'static>(&self, value: T) {
        self.data
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(value);
    }

    pub(crate) fn send_frame(&self, frame: Frame) -> Result<(), EmitError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(EmitError::Closed);
        }
        if self.queue.push_frame(frame).is_err() {
            self.close_now(CloseCode::SlowConsumer, "outbound queue full");
            return Err(EmitError::SlowConsumer);
        }
        Ok(())
    }

    /// Records why the connection ended and wakes every [`Conn::closed`];
    /// the first reason stays.
    pub(crate) fn end(&self, reason: DisconnectReason) {
        let _ = self.ended.set(reason);
        self.ended_notify.notify_waiters();
    }

    /// Closes after what is already queued: the application's close, a
    /// shutdown, a timeout.
    pub(crate) fn close(&self, code: CloseCode, reason: &str) -> bool {
        self.close_with(code, reason, false)
    }

    /// A policy close (slow consumer, frame too large, protocol error, the
    /// server's outbound budget): the backlog is dropped and the close frame
    /// goes out first, so the peer learns why instead of waiting behind
    /// what made it too slow.
    pub(crate) fn close_now(&self, code: CloseCode, reason: &str) -> bool {
        self.close_with(code, reason, true)
    }

    fn close_with(&self, code: CloseCode, reason: &str, urgent: bool) -> bool {
        if self.closing.swap(true, Ordering::AcqRel) {
            return false;
        }
        let _ = self.close_code.set(code);
        // WebSocket close reasons are at most 123 bytes; cut on a char boundary.
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let close = Outbound::Close(code, reason[..end].to_owned());
        if urgent {
            self.queue.abort_with(close);
        } else {
            self.queue.push(close);
        }
        // `closing` is set above; the connection task checks it after
        // registering, so a wake before it waits is not lost.
        self.close_requested.wake();
        true
    }
}

/// A handle to one connection, typed by the events the server sends.
///
/// Cheap to clone; every clone refers to the same connection. Sending to a
/// connection that has closed returns [`EmitError::Closed`] and does nothing.
pub struct Conn<Out> {
    pub(crate) inner: Arc<ConnInner>,
    _out: std::marker::PhantomData<fn(Out)>,
}

impl<Out> Clone for Conn<Out> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            _out: std::marker::PhantomData,
        }
    }
}

impl<Out> fmt::Debug for Conn<Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("id", &self.inner.id)
            .field("meta", &self.inner.meta)
            .field("closing", &self.inner.closing.load(Ordering::Relaxed))
            .finish()
    }
}

impl<Out: Events> Conn<Out> {
    /// The connection's id.
    pub fn id(&self) -> ConnId {
        self.inner.id
    }

    /// The connection's metadata.
    pub fn meta(&self) -> &ConnMeta {
        &self.inner.meta
    }

    /// Sends one event to this connection.
    ///
    /// The event is queued for the connection's writer; an error means it was
    /// not queued: the connection is closed, its queue is over the limit (it
    /// is then closed as a slow consumer), or the event cannot be serialized.
    pub fn emit(&self, event: Out) -> Result<(), EmitError> {
        let frame = self.inner.meta.codec().encode(&event)?;
        self.inner.send_frame(frame)
    }

    pub(crate) fn send_encoded(&self, frame: Frame) -> Result<(), EmitError> {
        self.inner.send_frame(frame)
    }

    /// Closes the connection with a code and a reason (at most 123 bytes;
    /// longer reasons are cut). Events already queued are sent first.
    ///
    /// Returns `false` when the connection was already closing.
    pub fn close(&self, code: CloseCode, reason: &str) -> bool {
        self.inner.close(code, reason)
    }

    /// Whether the connection is closed or closing.
    pub fn is_closed(&self) -> bool {
        self.inner.closing.load(Ordering::Acquire)
    }

    /// Waits until the connection has ended, and tells why: the reason the
    /// `on_disconnect` hook gets.
    ///
    /// It resolves once the connection's task has torn it down (its last
    /// events handled, its rooms left), just before `on_disconnect` runs, and
    /// at once on a connection that has already ended. [`Conn::close`] only
    /// starts a close: this waits for its end. A connection that ends before
    /// it authenticated fires no `on_disconnect`, but this resolves for it
    /// all the same. Every clone of the handle
    /// waits for the same end, so spawn a task with a clone to act when
    /// one connection goes, without a server-wide hook:
    ///
    /// ```
    /// # use liweb::prelude::*;
    /// # #[derive(Events)] enum In { Watch }
    /// # #[derive(Events)] enum Out { Tick }
    /// #[liweb::handler(In::Watch)]
    /// async fn watch(conn: Conn<Out>) {
    ///     tokio::spawn(async move {
    ///         let reason = conn.closed().await;
    ///         println!("{} ended: {reason:?}", conn.id());
    ///     });
    /// }
    /// ```
    pub async fn closed(&self) -> DisconnectReason {
        loop {
            // Registered before `ended` is read, so an end between the read
            // and the wait still wakes this.
            let notified = self.inner.ended_notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if let Some(reason) = self.inner.ended.get() {
                return reason.clone();
            }
            notified.await;
        }
    }

    /// The rooms this connection is in.
    pub fn rooms(&self) -> Vec<RoomKey> {
        self.inner.rooms().clone()
    }

    /// How many rooms this connection is in.
    pub fn room_count(&self) -> usize {
        self.inner.rooms().len()
    }

    /// Bytes queued for this connection and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.inner.queue.queued_bytes()
    }

    /// Stores a value in the connection's typed data (one value per type),
    /// returning the previous one. Read it back with [`Conn::data`], for
    /// example in a [`Server::broadcast_filter`](crate::Server::broadcast_filter) predicate.
    pub fn set_data<T: Clone + Send + Sync + 'static>(&self, value: T) -> Option<T> {
        self.inner
            .data
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(value)
    }

    /// Removes and returns the connection's data of type `T`.
    pub fn remove_data<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.inner
            .data
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove::<T>()
    }

    /// A copy of the connection's data of type `T`, if set.
    pub fn data<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.inner
            .data
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get::<T>()
            .cloned()
    }

    /// The authenticated user of this connection, if the server has auth and
    /// its user type is `U` (an [`AuthUser`](crate::auth::AuthUser)).
    pub fn user<U: Clone + Send + Sync + 'static>(&self) -> Option<U> {
        self.data::<Authenticated<U>>().map(|user| user.0)
    }

    /// Sends the reserved `error` event.
    pub(crate) fn send_error(&self, code: ErrorCode, message: String, event: Option<&str>) {
        let payload = ErrorPayload {
            code,
            message,
            event: event.map(str::to_owned),
        };
        match self
            .inner
            .meta
            .codec()
            .encode_parts(ERROR_EVENT, None, &payload)
        {
            Ok(frame) => {
                let _ = self.inner.send_frame(frame);
            }
            Err(err) => tracing::error!(err = %Chain(&err), "cannot encode an error event"),
        }
    }
}

/// Why a connection ended; given to the `on_disconnect` hook.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The client closed, with the code and reason of its close frame if it sent one.
    ClientClosed(Option<(CloseCode, String)>),
    /// The server closed it (application, limit or policy) with this code.
    ServerClosed(CloseCode),
    /// The transport failed (reset, broken pipe, protocol error).
    TransportError(String),
}

impl<Out: Events> Conn<Out> {
    /// A connection with no transport behind it, for benchmarks and tests of
    /// dispatch: what it is sent is queued on the returned receiver.
    ///
    /// No task runs it, so it never ends: [`Conn::closed`] on it never
    /// resolves, not even after [`Conn::close`].
    #[doc(hidden)]
    pub fn detached(codec: CodecKind) -> (Self, Outgoing) {
        let meta = ConnMeta::new(
            &HeaderMap::new(),
            None,
            String::new(),
            None,
            Transport::WebSocket,
            codec,
        );
        let conn = Self::new(meta, usize::MAX, Arc::new(Budget::new(usize::MAX)), false);
        let outgoing = Outgoing(Arc::clone(&conn.inner));
        (conn, outgoing)
    }

    pub(crate) fn new(
        meta: ConnMeta,
        max_queue: usize,
        budget: Arc<Budget>,
        auth_pending: bool,
    ) -> Self {
        Conn {
            inner: Arc::new(ConnInner {
                id: ConnId::new(),
                meta,
                queue: OutQueue::new(max_queue, budget),
                closing: AtomicBool::new(false),
                close_code: std::sync::OnceLock::new(),
                close_requested: futures_util::task::AtomicWaker::new(),
                data: RwLock::new(http::Extensions::new()),
                rooms: std::sync::Mutex::new(Vec::new()),
                requests: PendingRequests::default(),
                auth: AtomicU8::new(if auth_pending {
                    AuthState::Pending
                } else {
                    AuthState::Open
                } as u8),
                ended: std::sync::OnceLock::new(),
                ended_notify: tokio::sync::Notify::new(),
            }),
            _out: std::marker::PhantomData,
        }
    }
}

/// What a [`Conn::detached`] connection was sent, for tests and benchmarks.
#[doc(hidden)]
pub struct Outgoing(Arc<ConnInner>);

impl fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outgoing")
            .field("conn", &self.0.id)
            .field("queued", &self.0.queue.len())
            .finish()
    }
}

/// [`Outgoing::try_recv`] found nothing queued.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Empty;

impl Outgoing {
    /// The oldest queued item, if any.
    pub fn try_recv(&mut self) -> Result<Outbound, Empty> {
        self.0.queue.pop().ok_or(Empty)
    }
}
