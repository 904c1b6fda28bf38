//! The one place that answers a bad or refused event: with an error reply
//! when the event was a request, else with an `error` event.

use crate::{conn::Conn, event::Events, handler::ack::AckSlot, protocol::ErrorCode};

/// Tells the client an event failed: an error reply to the request `ack`
/// if the event was one, else an `error` event on the connection.
pub(crate) fn answer<Out: Events>(
    conn: &Conn<Out>,
    ack: Option<&AckSlot>,
    code: ErrorCode,
    message: String,
    event: Option<&str>,
) {
    match ack {
        Some(slot) => slot.reply_error(code, message, event),
        None => conn.send_error(code, message, event),
    }
}
