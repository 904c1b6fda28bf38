//! Extractors: what a handler's arguments can be.
//!
//! Two traits, as in axum: [`FromConnParts`] for values taken from the
//! connection and the server (any number of arguments), and the event's
//! payload, which is consumed. [`FromEvent`] joins them so the `#[handler]`
//! macro can ask for every argument the same way; the marker type `M` lets
//! the compiler pick the right one per argument.

use super::{
    Call,
    ack::{Ack, AckSlot},
};
use crate::{
    auth::{AuthFailure, AuthUser, User},
    conn::{Authenticated, Conn, ConnId, DisconnectReason, meta::ConnMeta},
    error::ExtractError,
    event::{EventKey, Events, PayloadDecoder},
    server::Server,
};

/// What extractors read from: the server, the connection, and for the
/// `on_disconnect` hook, the reason.
#[derive(Debug)]
pub struct ConnParts<'a, In, Out> {
    pub(crate) server: &'a Server<In, Out>,
    pub(crate) conn: &'a Conn<Out>,
    pub(crate) reason: Option<&'a DisconnectReason>,
    pub(crate) ack: Option<&'a std::sync::Arc<AckSlot>>,
    pub(crate) auth_failure: Option<&'a AuthFailure>,
}

impl<'a, In: Events, Out: Events> ConnParts<'a, In, Out> {
    /// The server handle.
    pub fn server(&self) -> &'a Server<In, Out> {
        self.server
    }

    /// The connection the event came from.
    pub fn conn(&self) -> &'a Conn<Out> {
        self.conn
    }

    /// Why the connection ended, in the `on_disconnect` hook.
    pub fn disconnect_reason(&self) -> Option<&'a DisconnectReason> {
        self.reason
    }
}

/// A handler or hook argument built from the connection and the server.
///
/// Implement it for your own types to use them as handler arguments:
///
/// ```
/// use liweb::prelude::*;
/// use liweb::{ConnParts, ExtractError};
///
/// /// The `x-user` header of the opening request.
/// struct UserHeader(String);
///
/// impl<In: Events, Out: Events> FromConnParts<In, Out> for UserHeader {
///     fn from_conn_parts(parts: &ConnParts<'_, In, Out>) -> Result<Self, ExtractError> {
///         let value = parts.conn().meta().headers().get("x-user")
///             .and_then(|v| v.to_str().ok())
///             .ok_or_else(|| ExtractError::custom("no `x-user` header"))?;
///         Ok(UserHeader(value.to_owned()))
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be extracted from a connection",
    label = "not an extractor",
    note = "extractors are `Conn<Out>`, `State<T>`, `Server<In, Out>`, `ConnMeta`, `ConnId`, or types implementing `FromConnParts`"
)]
pub trait FromConnParts<In, Out>: Sized {
    /// Builds the value, or explains why it cannot.
    fn from_conn_parts(parts: &ConnParts<'_, In, Out>) -> Result<Self, ExtractError>;
}

/// Extraction for one handler call: the parts plus the decoded payload.
#[doc(hidden)]
#[derive(Debug)]
pub struct EventParts<'a, K: EventKey, In, Out> {
    parts: ConnParts<'a, In, Out>,
    payload: Option<K::Payload>,
}

impl<'a, K: EventKey<Events = In>, In: Events, Out: Events> EventParts<'a, K, In, Out> {
    /// Decodes the payload as the event's payload type; a failure means no
    /// handler of this event runs.
    pub fn new(call: Call<'a, In, Out>) -> Result<Self, ExtractError> {
        let payload = call.payload.decode::<K::Payload>()?;
        Ok(Self {
            parts: ConnParts {
                server: call.server,
                conn: call.conn,
                reason: None,
                ack: call.ack,
                auth_failure: None,
            },
            payload: Some(payload),
        })
    }

    /// The connection parts, for guards.
    pub fn conn_parts(&self) -> &ConnParts<'a, In, Out> {
        &self.parts
    }
}

/// Picks [`FromConnParts`] for an argument.
#[doc(hidden)]
#[derive(Debug)]
pub enum ViaParts {}

/// Picks the payload for an argument.
#[doc(hidden)]
#[derive(Debug)]
pub enum ViaPayload {}

/// A handler argument: an extractor, or the event's payload.
///
/// The `#[handler]` macro asks every argument for this trait, with `P` the
/// event's payload type (named so compile errors can show it); `M` is inferred.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is neither an extractor nor `{P}`, the payload of event `{K}`",
    label = "not an extractor, and not this event's payload type",
    note = "a handler argument is the event's payload, or an extractor: `Conn<Out>`, `State<T>`, `Server<In, Out>`, `ConnMeta`, `ConnId`, or a type implementing `FromConnParts`"
)]
pub trait FromEvent<K: EventKey, P, In, Out, M>: Sized {
    /// Takes the argument's value.
    fn from_event(parts: &mut EventParts<'_, K, In, Out>) -> Result<Self, ExtractError>;
}

impl<K: EventKey, In, Out, T: FromConnParts<In, Out>> FromEvent<K, K::Payload, In, Out, ViaParts>
    for T
{
    fn from_event(parts: &mut EventParts<'_, K, In, Out>) -> Result<Self, ExtractError> {
        T::from_conn_parts(&parts.parts)
    }
}

impl<K: EventKey<Payload = P>, P, In, Out> FromEvent<K, P, In, Out, ViaPayload> for P {
    fn from_event(parts: &mut EventParts<'_, K, In, Out>) -> Result<Self, ExtractError> {
        parts.payload.take().ok_or(ExtractError::PayloadTaken)
    }
}

impl<In: Events, Out: Events> FromConnParts<In, Out> for Conn<Out> {
    fn from_conn_parts(parts: &ConnParts<'_, In, Out>) -> Result<Self, ExtractError> {
        Ok(parts.conn.clone())
    }
}

impl<In: Events, Out: Events> FromConnParts<In, Out> for Server<In, Out> {
    fn from_conn_parts(parts: &ConnParts<'_, In, Out>) -> Result<Self, ExtractError> {
        Ok(parts.server.clone())
    }
}

impl<In: Events, Out: Events> FromConnParts<In, Out> for ConnId {
    fn from_conn_parts(parts: &ConnParts<'_, In, Out>) -> Result<Self, ExtractError> {
        Ok(parts.conn.id())
    }
}

impl<In: Events, Out: Events> FromConnParts<In, Out> for ConnMeta {
    fn from_conn_parts(parts: &ConnParts<'_, In, Out>) -> Result<Self, ExtractError> {
        Ok(parts.conn.meta().clone())
    }
}

impl<In: Events, Out: Events> FromConnParts<In, Out> for DisconnectReason {
    fn from_conn_parts(parts: &ConnParts<'_, In, Out>) -> Result<Self, ExtractError> {
        parts.reason.cloned().ok_or_else(|| {
            ExtractError::custom("`DisconnectReason` is only available in `on_disconnect`")
        })
    }
}

/// Application state registered with [`ServerBuilder::state`](crate::ServerBuilder::state),
/// one value per type, cloned into each handler that asks for it.
///
/// ```
/// # use liweb::prelude::*;
/// # #[derive(Events)] enum In { Hit }
/// # #[derive(Events)] enum Out { Count(u64) }
/// use std::sync::{Arc, atomic::{AtomicU64, Ordering}};
///
/// #[derive(Clone, Default)]
/// struct Hits(Arc<AtomicU64>);
///
/// #[liweb::handler(In::Hit)]
/// async fn hit(conn: Conn<Out>, State(hits): State<Hits>) {
///     let n = hits.0.fetch_add(1, Ordering::Relaxed) + 1;
///     let _ = conn.emit(Out::Count(n));
/// }
///
/// let server = Server::<In, Out>::builder().state(Hits::default()).handler(hit).build();
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct State<T>(pub T);

impl<In: Events, Out: Events, T: Clone + Send + Sync + 'static> FromConnParts<In, Out>
    for State<T>
{
    fn from_conn_parts(parts: &ConnParts<'_, In, Out>) -> Result<Self, ExtractError> {
        parts
            .server
            .state::<T>()
            .map(State)
            .ok_or(ExtractError::MissingState(std::any::type_name::<T>()))
    }
}

impl<In: Events, Out: Events, U: AuthUser> FromConnParts<In, Out> for User<U> {
    fn from_conn_parts(parts: &ConnParts<'_, In, Out>) -> Result<Self, ExtractError> {
        parts
            .conn()
            .data::<Authenticated<U>>()
            .map(|user| User(user.0))
            .ok_or_else(|| {
                ExtractError::custom(format!(
                    "no authenticated user of type `{}` (is `ServerBuilder::auth` set with this user type?)",
                    std::any::type_name::<U>()
                ))
            })
    }
}

impl<In: Events, Out: Events> FromConnParts<In, Out> for AuthFailure {
    fn from_conn_parts(parts: &ConnParts<'_, In, Out>) -> Result<Self, ExtractError> {
        parts.auth_failure.cloned().ok_or_else(|| {
            ExtractError::custom("`AuthFailure` is only available in `on_auth_error`")
        })
    }
}

impl<In: Events, Out: Events> FromConnParts<In, Out> for Ack {
    fn from_conn_parts(parts: &ConnParts<'_, In, Out>) -> Result<Self, ExtractError> {
        Ok(Ack::new(parts.ack.cloned()))
    }
}

/// Hooks take the same extractors as handlers, without a payload.
pub(crate) fn parts<'a, In, Out>(
    server: &'a Server<In, Out>,
    conn: &'a Conn<Out>,
    reason: Option<&'a DisconnectReason>,
) -> ConnParts<'a, In, Out> {
    ConnParts {
        server,
        conn,
        reason,
        ack: None,
        auth_failure: None,
    }
}
