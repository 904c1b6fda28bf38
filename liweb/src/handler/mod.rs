//! What users write: handlers of events, the lists they are registered in,
//! the extractors their arguments are, hooks, guards and the reply handle.
//!
//! A handler is an `async fn` marked `#[liweb::handler(In::Variant)]`; the
//! macro turns its name into a type implementing [`Handler`], which
//! [`ServerBuilder::handler`](crate::ServerBuilder::handler) puts in the
//! slot of its event.

pub(crate) mod ack;
pub(crate) mod extract;
pub(crate) mod hook;

use std::{fmt, future::Future, marker::PhantomData, pin::Pin};

use self::ack::{AckSlot, Outcome, reply_value};
use crate::{
    codec::RawPayload,
    conn::Conn,
    error::{BoxError, ExtractError},
    event::{EventKey, Events},
    server::Server,
};

/// The future a handler call returns.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Outcome, BoxError>> + Send + 'static>>;

/// One handler call's input: the server, the connection, the raw payload
/// and, for a request, its reply slot.
#[derive(Debug)]
pub struct Call<'a, In, Out> {
    pub(crate) server: &'a Server<In, Out>,
    pub(crate) conn: &'a Conn<Out>,
    pub(crate) payload: RawPayload<'a>,
    pub(crate) ack: Option<&'a std::sync::Arc<AckSlot>>,
}

/// A handler of one event of `In`, on a server sending `Out`.
///
/// Written by `#[liweb::handler(In::Variant)]`; the event is
/// [`Handler::Event`] and the handler goes in that event's slot of the
/// dispatch table.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a handler for a server of `{In}` events sending `{Out}`",
    label = "not a handler of this server",
    note = "a handler is an `async fn` marked `#[liweb::handler({In}::Variant)]`; its `Conn<Out>` or `Server<In, Out>` arguments must name this server's event types"
)]
pub trait Handler<In: Events, Out: Events>: Send + Sync + 'static {
    /// The event this handler handles.
    type Event: EventKey<Events = In>;

    /// Decodes the payload, extracts the arguments and starts the handler.
    ///
    /// An `Err` means the handler did not run.
    fn call(&self, call: Call<'_, In, Out>) -> Result<HandlerFuture, ExtractError>;
}

/// The event a handler value handles, whatever server it is used with; lets
/// [`handlers!`](crate::handlers) check coverage at compile time.
#[doc(hidden)]
pub trait HandlerEvent {
    type Event: EventKey;
}

/// The argument of the function `#[liweb::handler]` writes under the
/// handler's name; its type parameter is the handler type, so passing the
/// function to [`ServerBuilder::handler`](crate::ServerBuilder::handler)
/// names the handler.
#[doc(hidden)]
#[derive(Debug)]
pub struct HandlerTag<H>(PhantomData<fn() -> H>);

/// A handler as passed to the builder: the function `#[liweb::handler]`
/// writes, or a [`Handler`] value.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a liweb handler",
    label = "expected a function marked `#[liweb::handler(In::Event)]`",
    note = "mark the `async fn` with `#[liweb::handler(In::Event)]` and pass it by name"
)]
pub trait IntoHandler<H> {
    /// The handler value.
    fn into_handler(self) -> H;
}

impl<H, F: FnOnce(HandlerTag<H>) -> H> IntoHandler<H> for F {
    fn into_handler(self) -> H {
        self(HandlerTag(PhantomData))
    }
}

/// The object-safe face of [`Handler`] that the dispatch table stores.
pub(crate) trait DynHandler<In, Out>: Send + Sync + 'static {
    fn call(&self, call: Call<'_, In, Out>) -> Result<HandlerFuture, ExtractError>;
}

impl<In: Events, Out: Events, H: Handler<In, Out>> DynHandler<In, Out> for H {
    fn call(&self, call: Call<'_, In, Out>) -> Result<HandlerFuture, ExtractError> {
        Handler::call(self, call)
    }
}

/// What a handler may return: `()` or `Result<T, E>`.
///
/// When the event was a request (it carried an ack id), `Ok(value)` is the
/// reply (`Ok(())` leaves the reply to the event's other handlers, else it
/// is `null`) and `Err(e)` an error reply carrying `e`'s `Display` text.
#[diagnostic::on_unimplemented(
    message = "handlers must return `()` or `Result<T, E>`, not `{Self}`",
    label = "this return type is not allowed",
    note = "`T` is the reply to a request and must be `Serialize`; an `Err(e)` is given to the server's `on_error` hook, so `E` must convert into `Box<dyn Error + Send + Sync>`"
)]
pub trait IntoHandlerResult {
    /// Converts the return value.
    fn into_handler_result(self) -> Result<Outcome, BoxError>;
}

impl IntoHandlerResult for () {
    fn into_handler_result(self) -> Result<Outcome, BoxError> {
        Ok(Outcome::Done(None))
    }
}

impl<T: serde::Serialize + Send + 'static, E: Into<BoxError>> IntoHandlerResult for Result<T, E> {
    fn into_handler_result(self) -> Result<Outcome, BoxError> {
        match self {
            Ok(value) => Ok(Outcome::Done(reply_value(value))),
            Err(err) => Err(err.into()),
        }
    }
}

/// Handlers gathered before they go into a server; see [`handlers!`](crate::handlers).
pub struct HandlerList<In, Out> {
    pub(crate) entries: Vec<(usize, Box<dyn DynHandler<In, Out>>)>,
}

impl<In: Events, Out: Events> HandlerList<In, Out> {
    /// An empty list.
    pub fn new() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    /// Appends a handler: a function marked `#[liweb::handler(In::Event)]`.
    pub fn push<H: Handler<In, Out>>(&mut self, handler: impl IntoHandler<H>) {
        self.entries.push((
            <H::Event as EventKey>::INDEX,
            Box::new(handler.into_handler()),
        ));
    }
}

impl<In: Events, Out: Events> Default for HandlerList<In, Out> {
    fn default() -> Self {
        Self::new()
    }
}

impl<In, Out> fmt::Debug for HandlerList<In, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerList")
            .field("len", &self.entries.len())
            .finish()
    }
}

/// Fails compilation (when evaluated in a `const`) if an event index has no
/// handler in `covered`.
#[doc(hidden)]
pub const fn assert_exhaustive<E: Events>(covered: &[usize]) {
    let mut index = 0;
    while index < E::NAMES.len() {
        let mut found = false;
        let mut i = 0;
        while i < covered.len() {
            if covered[i] == index {
                found = true;
            }
            i += 1;
        }
        if !found {
            panic!("{}", E::MISSING_HANDLER[index]);
        }
        index += 1;
    }
}
