//! Hooks and guards: async functions of extractors, run at a connection's
//! lifecycle events (hooks) or before a handler (guards).
//!
//! Both are implemented for functions of up to eight extractor arguments
//! by one macro, so the two always accept the same arities.

use std::{fmt, future::Future, pin::Pin};

use super::extract::{ConnParts, EventParts, FromConnParts};
use crate::{
    error::ExtractError,
    event::{EventKey, Events},
};

/// Calls `$m!` once per arity from none to eight arguments, the
/// way axum's `all_the_tuples!` does.
macro_rules! all_the_tuples {
    ($m:ident) => {
        $m!();
        $m!(E1);
        $m!(E1, E2);
        $m!(E1, E2, E3);
        $m!(E1, E2, E3, E4);
        $m!(E1, E2, E3, E4, E5);
        $m!(E1, E2, E3, E4, E5, E6);
        $m!(E1, E2, E3, E4, E5, E6, E7);
        $m!(E1, E2, E3, E4, E5, E6, E7, E8);
    };
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

all_the_tuples!(impl_hook);

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

all_the_tuples!(impl_guard);

/// Starts a guard of a handler call; written by `#[liweb::handler]`.
#[doc(hidden)]
pub fn start_guard<K, In, Out, M, G>(
    guard: G,
    parts: &EventParts<'_, K, In, Out>,
) -> Result<GuardFuture, ExtractError>
where
    K: EventKey<Events = In>,
    In: Events,
    Out: Events,
    G: Guard<In, Out, M>,
{
    guard.check(parts.conn_parts())
}
