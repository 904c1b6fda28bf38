//! Handlers, the dispatch table they go into, and hook functions.

use std::{fmt, future::Future, marker::PhantomData, pin::Pin};

use crate::{
    ack::{AckSlot, Outcome, reply_value},
    codec::RawPayload,
    conn::Conn,
    error::{BoxError, ExtractError},
    event::{EventKey, Events},
    extract::{ConnParts, FromConnParts},
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

/// A lifecycle hook (`on_connect`, `on_disconnect`): an async function whose
/// arguments are extractors.
///
/// Implemented for `async` closures and functions of up to eight
/// [`FromConnParts`] arguments; `M` is inferred.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a hook",
    note = "a hook is an async function whose arguments are extractors, such as `Conn<Out>`, `Server<In, Out>`, `State<T>` or `DisconnectReason`"
)]
pub trait Hook<In, Out, M>: Clone + Send + Sync + 'static {
    /// Extracts the arguments and starts the hook.
    fn call(&self, parts: &ConnParts<'_, In, Out>) -> Result<HookFuture, ExtractError>;
}

/// The future a hook returns.
pub type HookFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

macro_rules! impl_hook {
    ($($ty:ident),*) => {
        #[allow(non_snake_case, unused_variables)]
        impl<In, Out, F, Fut, $($ty,)*> Hook<In, Out, ($($ty,)*)> for F
        where
            F: Fn($($ty),*) -> Fut + Clone + Send + Sync + 'static,
            Fut: Future<Output = ()> + Send + 'static,
            $($ty: FromConnParts<In, Out>,)*
        {
            fn call(&self, parts: &ConnParts<'_, In, Out>) -> Result<HookFuture, ExtractError> {
                $(let $ty = $ty::from_conn_parts(parts)?;)*
                Ok(Box::pin((self)($($ty),*)))
            }
        }
    };
}

impl_hook!();
impl_hook!(E1);
impl_hook!(E1, E2);
impl_hook!(E1, E2, E3);
impl_hook!(E1, E2, E3, E4);
impl_hook!(E1, E2, E3, E4, E5);
impl_hook!(E1, E2, E3, E4, E5, E6);
impl_hook!(E1, E2, E3, E4, E5, E6, E7);
impl_hook!(E1, E2, E3, E4, E5, E6, E7, E8);

/// A hook with its marker erased, as the server stores it.
pub(crate) type BoxHook<In, Out> =
    Box<dyn Fn(&ConnParts<'_, In, Out>) -> Result<HookFuture, ExtractError> + Send + Sync>;

pub(crate) fn box_hook<In, Out, M, H: Hook<In, Out, M>>(hook: H) -> BoxHook<In, Out> {
    Box::new(move |parts| hook.call(parts))
}

/// The future of a guard: `Err` carries the refusal's text.
#[doc(hidden)]
pub type GuardFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'static>>;

/// A handler guard, named in `#[liweb::handler(In::Event, guard = path)]`:
/// an async function of extractors returning `Result<(), E>` where `E`
/// implements `Display`; `M` is inferred.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a handler guard",
    label = "not a guard",
    note = "a guard is an `async fn` whose arguments are extractors (such as `Conn<Out>`, `State<T>` or `User<U>`) returning `Result<(), E>` where `E: Display`"
)]
pub trait Guard<In, Out, M>: Send + Sync + 'static {
    /// Extracts the arguments and starts the check.
    fn check(&self, parts: &ConnParts<'_, In, Out>) -> Result<GuardFuture, ExtractError>;
}

macro_rules! impl_guard {
    ($($ty:ident),*) => {
        #[allow(non_snake_case, unused_variables)]
        impl<In, Out, F, Fut, E, $($ty,)*> Guard<In, Out, ($($ty,)*)> for F
        where
            F: Fn($($ty),*) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = Result<(), E>> + Send + 'static,
            E: fmt::Display,
            $($ty: FromConnParts<In, Out>,)*
        {
            fn check(&self, parts: &ConnParts<'_, In, Out>) -> Result<GuardFuture, ExtractError> {
                $(let $ty = $ty::from_conn_parts(parts)?;)*
                let future = (self)($($ty),*);
                Ok(Box::pin(async move { future.await.map_err(|err| err.to_string()) }))
            }
        }
    };
}

impl_guard!();
impl_guard!(E1);
impl_guard!(E1, E2);
impl_guard!(E1, E2, E3);
impl_guard!(E1, E2, E3, E4);
impl_guard!(E1, E2, E3, E4, E5);
impl_guard!(E1, E2, E3, E4, E5, E6);

/// Starts a guard of a handler call; written by `#[liweb::handler]`.
#[doc(hidden)]
pub fn start_guard<K, In, Out, M, G>(
    guard: G,
    parts: &crate::extract::EventParts<'_, K, In, Out>,
) -> Result<GuardFuture, ExtractError>
where
    K: EventKey<Events = In>,
    In: Events,
    Out: Events,
    G: Guard<In, Out, M>,
{
    guard.check(parts.conn_parts())
}
