//! Middleware: async steps around the dispatch of every event.
//!
//! A middleware is an async function of the event's [`Envelope`] and the
//! [`Next`] step, in the style of axum's `middleware::from_fn`: it may look
//! at the event and its connection, do work before and after, and either
//! pass the event on with `next.run(envelope).await` or stop it by
//! returning an error (or by not calling `next`).
//!
//! ```
//! use liweb::prelude::*;
//! use liweb::middleware::{Envelope, Next};
//!
//! # #[derive(Events)] enum In { Ping }
//! # #[derive(Events)] enum Out { Pong }
//! async fn log(envelope: Envelope<Out>, next: Next<In, Out>) -> Result<(), std::convert::Infallible> {
//!     let event = envelope.event();
//!     let started = std::time::Instant::now();
//!     next.run(envelope).await;
//!     tracing::info!(event, took = ?started.elapsed(), "handled");
//!     Ok(())
//! }
//!
//! let server = Server::<In, Out>::builder().middleware(log).build();
//! ```
//!
//! Middleware runs after authentication and the rate limit, for events of
//! the server's `In` enum only (not for replies or `__auth`), in the order
//! added. Each step can have a timeout — how long it may take to pass the
//! event on or finish — and an [`ErrorPolicy`] for when it fails or times
//! out: the event is then dropped (a request gets an error reply with code
//! `rejected`), and the policy says what else happens.
//!
//! An event's envelope is read once, when it arrives; the payload is
//! decoded once, by the handlers, straight from the frame.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crate::{
    codec::incoming::Incoming,
    conn::{Conn, ConnId},
    error::BoxError,
    event::Events,
    handler::ack::AckSlot,
    server::Server,
};

/// The rest of a middleware chain from a position: set by `dispatch`, which
/// runs the chain, so that this module need not know how events are
/// dispatched.
pub(crate) type Rest<In, Out> =
    for<'a> fn(&'a Server<In, Out>, usize, Envelope<Out>) -> BoxFuture<'a, ()>;

/// One inbound event on its way through the middleware chain.
pub struct Envelope<Out> {
    pub(crate) conn: Conn<Out>,
    pub(crate) index: usize,
    pub(crate) event: &'static str,
    pub(crate) ack: Option<Arc<AckSlot>>,
    pub(crate) incoming: Incoming,
}

impl<Out: Events> Envelope<Out> {
    /// The connection that sent the event.
    pub fn conn(&self) -> &Conn<Out> {
        &self.conn
    }

    /// The event's wire name.
    pub fn event(&self) -> &'static str {
        self.event
    }

    /// The event's index in the server's `In` enum.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Whether the event is a request (carries an ack id).
    pub fn is_request(&self) -> bool {
        self.ack.is_some()
    }

    /// The size of the frame the event came in, in bytes.
    pub fn frame_len(&self) -> usize {
        self.incoming.len()
    }
}

impl<Out> fmt::Debug for Envelope<Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("conn", &self.conn.inner.id)
            .field("event", &self.event)
            .field("request", &self.ack.is_some())
            .finish()
    }
}

/// The rest of the middleware chain, ending with the event's handlers.
pub struct Next<In, Out> {
    pub(crate) server: Server<In, Out>,
    pub(crate) position: usize,
    /// Set when this step passes the event on, which stops its timeout.
    pub(crate) passed: Option<Arc<AtomicBool>>,
    pub(crate) rest: Rest<In, Out>,
}

impl<In, Out> fmt::Debug for Next<In, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Next")
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl<In: Events, Out: Events> Next<In, Out> {
    /// Runs the rest of the chain and the handlers.
    pub async fn run(self, envelope: Envelope<Out>) {
        if let Some(passed) = &self.passed {
            passed.store(true, Ordering::Release);
        }
        (self.rest)(&self.server, self.position, envelope).await;
    }
}

/// What happens when a middleware step fails (returns an error) or times
/// out. In every case the event goes no further, and a request gets an error
/// reply with code `rejected`.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum ErrorPolicy {
    /// The failure is logged through `tracing`; the connection stays open.
    #[default]
    Ignore,
    /// The connection is closed with [`CloseCode::PolicyViolation`](crate::CloseCode::PolicyViolation).
    Close,
    /// The function is called with the connection id and the error; the
    /// connection stays open.
    Callback(ErrorCallback),
}

impl ErrorPolicy {
    /// A [`ErrorPolicy::Callback`] from a function.
    pub fn callback(f: impl Fn(ConnId, &MiddlewareError) + Send + Sync + 'static) -> Self {
        Self::Callback(Arc::new(f))
    }
}

impl fmt::Debug for ErrorPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ignore => f.write_str("Ignore"),
            Self::Close => f.write_str("Close"),
            Self::Callback(_) => f.write_str("Callback(..)"),
        }
    }
}

/// The function of [`ErrorPolicy::Callback`].
pub type ErrorCallback = Arc<dyn Fn(ConnId, &MiddlewareError) + Send + Sync>;

/// How one middleware step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MiddlewareError {
    /// The step returned an error.
    #[error("middleware failed on `{event}`")]
    Failed {
        /// The event being handled.
        event: &'static str,
        /// The step's error.
        #[source]
        source: BoxError,
    },
    /// The step neither passed the event on nor finished in time.
    #[error("middleware timed out after {timeout:?} on `{event}`")]
    TimedOut {
        /// The event being handled.
        event: &'static str,
        /// The step's timeout.
        timeout: Duration,
    },
}

/// The options of one middleware step.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct MiddlewareOptions {
    /// How long the step may take to pass the event on or finish; none by
    /// default.
    pub timeout: Option<Duration>,
    /// What a failure or timeout does.
    pub on_error: ErrorPolicy,
}

impl MiddlewareOptions {
    /// Options with a timeout.
    pub fn timeout(timeout: Duration) -> Self {
        Self {
            timeout: Some(timeout),
            ..Self::default()
        }
    }

    /// Sets the error policy.
    pub fn on_error(mut self, policy: ErrorPolicy) -> Self {
        self.on_error = policy;
        self
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A middleware function; implemented for async functions of an
/// [`Envelope`] and a [`Next`] that return `Result<(), E>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a liweb middleware",
    note = "a middleware is an `async fn(Envelope<Out>, Next<In, Out>) -> Result<(), E>` where `E` converts into `Box<dyn Error + Send + Sync>`"
)]
pub trait Middleware<In, Out>: Send + Sync + 'static {
    /// Runs the step.
    fn call(
        &self,
        envelope: Envelope<Out>,
        next: Next<In, Out>,
    ) -> BoxFuture<'static, Result<(), BoxError>>;
}

impl<In, Out, F, Fut, E> Middleware<In, Out> for F
where
    In: 'static,
    Out: 'static,
    F: Fn(Envelope<Out>, Next<In, Out>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<BoxError>,
{
    fn call(
        &self,
        envelope: Envelope<Out>,
        next: Next<In, Out>,
    ) -> BoxFuture<'static, Result<(), BoxError>> {
        let future = self(envelope, next);
        Box::pin(async move { future.await.map_err(Into::into) })
    }
}

/// One step of the chain as the server keeps it.
pub(crate) struct Step<In, Out> {
    pub(crate) middleware: Box<dyn Middleware<In, Out>>,
    pub(crate) options: MiddlewareOptions,
}
