//! Handlers, the dispatch table they go into, and hook functions.

use std::{fmt, future::Future, marker::PhantomData, pin::Pin};

use crate::{
    codec::RawPayload,
    conn::Conn,
    error::{BoxError, ExtractError},
    event::{EventKey, Events},
    extract::{ConnParts, FromConnParts},
    server::Server,
};

/// The future a handler call returns.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + 'static>>;

/// One handler call's input: the server, the connection and the raw payload.
#[derive(Debug)]
pub struct Call<'a, In, Out> {
    pub(crate) server: &'a Server<In, Out>,
    pub(crate) conn: &'a Conn<Out>,
    pub(crate) payload: RawPayload<'a>,
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

/// What a handler may return: `()` or `Result<(), E>`.
#[diagnostic::on_unimplemented(
    message = "handlers must return `()` or `Result<(), E>`, not `{Self}`",
    label = "this return type is not allowed",
    note = "an `Err(e)` is given to the server's `on_error` hook; `E` must convert into `Box<dyn Error + Send + Sync>`"
)]
pub trait IntoHandlerResult {
    /// Converts the return value.
    fn into_handler_result(self) -> Result<(), BoxError>;
}

impl IntoHandlerResult for () {
    fn into_handler_result(self) -> Result<(), BoxError> {
        Ok(())
    }
}

impl<E: Into<BoxError>> IntoHandlerResult for Result<(), E> {
    fn into_handler_result(self) -> Result<(), BoxError> {
        self.map_err(Into::into)
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
