//! Inbound: one frame from a connection to the handlers of its event.
//!
//! The envelope is decoded once here: a reply (`__ack`) resolves its
//! request, `__auth` runs the authentication flow, anything else is gated
//! on authentication, named by `index_of`, and goes through the middleware
//! chain (if any) to the handlers.

pub(crate) mod auth;
mod chain;
mod handlers;
pub(crate) mod reply;

use std::{future::Future, panic::AssertUnwindSafe, sync::Arc};

use futures_util::future::Either;

use self::reply::answer;
use crate::{
    auth::{self as strategies, AuthConfig},
    codec::{
        CodecKind, InFrame,
        incoming::{Incoming, Reserved},
    },
    conn::Conn,
    error::{HandlerError, panic_message},
    event::Events,
    handler::ack::AckSlot,
    middleware::Envelope,
    protocol::{ACK_EVENT, ErrorCode},
    server::Server,
};

impl<In: Events, Out: Events> Server<In, Out> {
    /// Dispatches one text frame as if `conn` had sent it; for benchmarks.
    #[doc(hidden)]
    pub async fn dispatch_text(&self, conn: &Conn<Out>, text: &'static str) {
        let codec = conn.meta().codec();
        if let Some(arrival) = arrive(conn, codec, InFrame::from_static(text)) {
            dispatch(self, conn, arrival).await;
        }
    }
}

/// A frame as it waits for its turn (answered in turn, so errors keep their
/// place among the replies).
#[derive(Debug)]
pub(crate) enum Arrival {
    /// A frame that cannot be a reply: its envelope is read when its turn
    /// comes, once.
    Frame(InFrame),
    /// A frame whose envelope was read on arrival, to see whether it was a
    /// reply; it was not. Boxed, as it is rare: every connection's task
    /// has room for one waiting frame, and it stays the size of a frame.
    Event(Box<Incoming>),
    /// A frame that is not an envelope of the connection's codec.
    Bad(ErrorCode, String),
}

/// Takes a frame that just arrived. A reply (`__ack`) is handed to its
/// request at once, not queued behind the handler that may be waiting for
/// it: `None`. Anything else waits for its turn in arrival order.
///
/// Only a frame that may be a reply (`CodecKind::may_be_reply`, a superset
/// of the replies, looked at without decoding) is read here; the others are
/// read in their turn. Either way a frame's envelope is read once.
pub(crate) fn arrive<Out: Events>(
    conn: &Conn<Out>,
    codec: CodecKind,
    frame: InFrame,
) -> Option<Arrival> {
    let text = frame.is_text();
    if text != codec.is_text() {
        let message = if text {
            "text frames are not accepted on a binary connection"
        } else {
            "binary frames are not accepted on a JSON connection"
        };
        return Some(Arrival::Bad(
            ErrorCode::UnsupportedFrame,
            message.to_owned(),
        ));
    }
    if !codec.may_be_reply(frame.input()) {
        return Some(Arrival::Frame(frame));
    }
    let incoming = match Incoming::decode(codec, frame) {
        Ok(incoming) => incoming,
        Err(err) => return Some(Arrival::Bad(ErrorCode::BadFrame, err.to_string())),
    };
    if incoming.reserved() != Reserved::Ack {
        return Some(Arrival::Event(Box::new(incoming)));
    }
    match incoming.ack() {
        Some(id) => conn
            .inner
            .requests
            .resolve(id, incoming.payload(), incoming.error()),
        None => conn.send_error(
            ErrorCode::BadFrame,
            "`__ack` needs the `ack` id of the request it answers".to_owned(),
            Some(ACK_EVENT),
        ),
    }
    None
}

/// Runs one event that arrived: `__auth` through the authentication flow,
/// any other through the gate, the middleware chain and the handlers of its
/// event in registration order. Bad input is answered with an `error` event
/// (or, for a request, an error reply).
///
/// The connection's task holds this future for its whole life, so its size
/// is every connection's: an event read in place runs inline, the rarer
/// arrivals in a box of their own.
pub(crate) fn dispatch<'a, In: Events, Out: Events>(
    server: &'a Server<In, Out>,
    conn: &'a Conn<Out>,
    arrival: Arrival,
) -> impl Future<Output = ()> + Send + 'a {
    // Two futures rather than one `async fn` with a `match`: an async fn
    // keeps its argument beside whatever is moved out of it, and this
    // future's size is every connection's (see above).
    match arrival {
        Arrival::Frame(frame) if server.inner.middleware.is_empty() => {
            Either::Left(in_place(server, conn, frame))
        }
        other => Either::Right(Box::pin(other_arrival(server, conn, other))),
    }
}

/// An event without middleware: its envelope read in place, borrowed from
/// the frame, and the handlers decode the payload from it.
async fn in_place<In: Events, Out: Events>(
    server: &Server<In, Out>,
    conn: &Conn<Out>,
    frame: InFrame,
) {
    let raw = match conn.meta().codec().decode_frame(frame.input()) {
        Ok(raw) => raw,
        Err(err) => return conn.send_error(ErrorCode::BadFrame, err.to_string(), None),
    };
    match route(server, conn, &raw.event, raw.ack, Reserved::of(&raw.event)) {
        Route::Run(index, ack) => {
            handlers::run(server, conn, index, raw.payload, ack.as_ref()).await;
        }
        Route::Authenticate(auth) => {
            // Boxed: it runs once per connection, and inline it would grow
            // every connection's task for its whole life.
            Box::pin(auth::authenticate(server, auth, conn, raw.payload)).await;
        }
        Route::Done => {}
    }
}

/// The rarer arrivals, in a box: a bad frame, an event read on arrival,
/// and events the middleware chain carries (which boxes its steps anyway).
async fn other_arrival<In: Events, Out: Events>(
    server: &Server<In, Out>,
    conn: &Conn<Out>,
    arrival: Arrival,
) {
    match arrival {
        Arrival::Bad(code, message) => conn.send_error(code, message, None),
        Arrival::Event(incoming) => carried(server, conn, *incoming).await,
        // Middleware carries the event, so it is read into an owned form.
        Arrival::Frame(frame) => match Incoming::decode(conn.meta().codec(), frame) {
            Ok(incoming) => carried(server, conn, incoming).await,
            Err(err) => conn.send_error(ErrorCode::BadFrame, err.to_string(), None),
        },
    }
}

/// An event read on arrival, or one the middleware chain carries.
async fn carried<In: Events, Out: Events>(
    server: &Server<In, Out>,
    conn: &Conn<Out>,
    incoming: Incoming,
) {
    match route(
        server,
        conn,
        incoming.event(),
        incoming.ack(),
        incoming.reserved(),
    ) {
        Route::Run(index, ack) if server.inner.middleware.is_empty() => {
            handlers::run(server, conn, index, incoming.payload(), ack.as_ref()).await;
        }
        Route::Run(index, ack) => {
            let envelope = Envelope {
                conn: conn.clone(),
                index,
                event: In::NAMES[index],
                ack,
                incoming,
            };
            chain::run(server, 0, envelope).await;
        }
        Route::Authenticate(auth) => {
            auth::authenticate(server, auth, conn, incoming.payload()).await;
        }
        Route::Done => {}
    }
}

/// Where an event goes.
enum Route<'a> {
    /// To the handlers of event `index`, with its reply slot if a request.
    Run(usize, Option<Arc<AckSlot>>),
    /// `__auth` while authentication is pending: to the strategy.
    Authenticate(&'a AuthConfig),
    /// Nowhere more: answered or ignored.
    Done,
}

/// Routes one event by its envelope: `__auth` to the authentication flow
/// (a second one, or one to a server without auth, is ignored), an event
/// before authentication to `auth:error`, an unknown event to an error; the
/// `on_message` hook hears the rest.
fn route<'s, In: Events, Out: Events>(
    server: &'s Server<In, Out>,
    conn: &Conn<Out>,
    event: &str,
    ack: Option<u64>,
    reserved: Reserved,
) -> Route<'s> {
    if reserved == Reserved::Auth {
        return match (&server.inner.auth, conn.inner.is_auth_pending()) {
            (Some(auth), true) => Route::Authenticate(auth),
            _ => Route::Done,
        };
    }
    if !conn.inner.is_open() {
        if let Ok(frame) =
            strategies::error_frame(conn.meta().codec(), strategies::NOT_AUTHENTICATED)
        {
            let _ = conn.send_encoded(frame);
        }
        return Route::Done;
    }
    let ack = ack.map(|id| AckSlot::new(id, Arc::clone(&conn.inner)));
    let Some(index) = In::index_of(event) else {
        let message = format!("unknown event `{event}`");
        answer(
            conn,
            ack.as_deref(),
            ErrorCode::UnknownEvent,
            message,
            Some(event),
        );
        return Route::Done;
    };
    let name = In::NAMES[index];
    if let Some(hook) = &server.inner.on_message
        && let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| hook(conn, name)))
    {
        server.report(
            conn,
            Some(name),
            HandlerError::HookPanicked(panic_message(&*panic)),
        );
    }
    Route::Run(index, ack)
}
