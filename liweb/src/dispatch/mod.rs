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

use std::{panic::AssertUnwindSafe, sync::Arc};

use self::reply::answer;
use crate::{
    auth as strategies,
    codec::{
        CodecKind, InFrame, RawPayload,
        incoming::{Incoming, Reserved},
    },
    conn::{Conn, request},
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
    /// reply; it was not.
    Event(Incoming),
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
        return Some(Arrival::Event(incoming));
    }
    match incoming.ack() {
        Some(id) => request::resolve(&conn.inner, id, incoming.payload(), incoming.error()),
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
pub(crate) async fn dispatch<In: Events, Out: Events>(
    server: &Server<In, Out>,
    conn: &Conn<Out>,
    arrival: Arrival,
) {
    let codec = conn.meta().codec();
    let incoming = match arrival {
        Arrival::Bad(code, message) => return conn.send_error(code, message, None),
        Arrival::Event(incoming) => incoming,
        // Middleware carries the event, so it is read into an owned form.
        Arrival::Frame(frame) if !server.inner.middleware.is_empty() => {
            match Incoming::decode(codec, frame) {
                Ok(incoming) => incoming,
                Err(err) => return conn.send_error(ErrorCode::BadFrame, err.to_string(), None),
            }
        }
        // Without middleware the envelope is read in place, borrowed from
        // the frame, and the handlers decode the payload from it.
        Arrival::Frame(frame) => {
            let raw = match codec.decode_frame(frame.input()) {
                Ok(raw) => raw,
                Err(err) => return conn.send_error(ErrorCode::BadFrame, err.to_string(), None),
            };
            let event = View {
                event: &raw.event,
                ack: raw.ack,
                payload: raw.payload,
                reserved: Reserved::of(&raw.event),
            };
            if let Some((index, ack)) = route(server, conn, &event).await {
                handlers::run(server, conn, index, raw.payload, ack.as_ref()).await;
            }
            return;
        }
    };
    let event = View {
        event: incoming.event(),
        ack: incoming.ack(),
        payload: incoming.payload(),
        reserved: incoming.reserved(),
    };
    let Some((index, ack)) = route(server, conn, &event).await else {
        return;
    };
    if server.inner.middleware.is_empty() {
        handlers::run(server, conn, index, incoming.payload(), ack.as_ref()).await;
    } else {
        let envelope = Envelope {
            conn: conn.clone(),
            index,
            event: In::NAMES[index],
            ack,
            incoming,
        };
        chain::run(server, 0, envelope).await;
    }
}

/// What routing needs of an event's envelope, however it was read.
struct View<'a> {
    event: &'a str,
    ack: Option<u64>,
    payload: RawPayload<'a>,
    reserved: Reserved,
}

/// Routes one event: `__auth` to the authentication flow, an event before
/// authentication to `auth:error`, an unknown event to an error; the
/// `on_message` hook hears the rest. `Some` with the event's index and its
/// reply slot when its handlers are to run.
async fn route<In: Events, Out: Events>(
    server: &Server<In, Out>,
    conn: &Conn<Out>,
    event: &View<'_>,
) -> Option<(usize, Option<Arc<AckSlot>>)> {
    // A second `__auth`, or one to a server without auth, is ignored.
    if event.reserved == Reserved::Auth {
        if let (Some(auth), true) = (&server.inner.auth, conn.inner.is_auth_pending()) {
            // Boxed: it runs once per connection, and inline it would
            // grow every connection's task for its whole life.
            Box::pin(auth::authenticate(server, auth, conn, event.payload)).await;
        }
        return None;
    }
    if !conn.inner.is_open() {
        if let Ok(frame) =
            strategies::error_frame(conn.meta().codec(), strategies::NOT_AUTHENTICATED)
        {
            let _ = conn.send_encoded(frame);
        }
        return None;
    }
    let ack = event
        .ack
        .map(|id| AckSlot::new(id, Arc::clone(&conn.inner)));
    let Some(index) = In::index_of(event.event) else {
        let message = format!("unknown event `{}`", event.event);
        answer(
            conn,
            ack.as_deref(),
            ErrorCode::UnknownEvent,
            message,
            Some(event.event),
        );
        return None;
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
    Some((index, ack))
}
