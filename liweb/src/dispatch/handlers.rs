//! The end of dispatch: the handlers of one event run in registration
//! order, and what they end with becomes the reply, an error, a report.

use std::{panic::AssertUnwindSafe, sync::Arc};

use futures_util::FutureExt;

use super::reply::answer;
use crate::{
    codec::RawPayload,
    conn::Conn,
    error::Chain,
    error::{ExtractError, HandlerError, Refused, panic_message},
    event::Events,
    handler::{
        Call,
        ack::{AckSlot, Outcome},
    },
    protocol::ErrorCode,
    server::Server,
};

/// Runs the handlers of event `index` in registration order, answering a
/// request with the first reply (or `null`, or the first error).
pub(super) async fn run<In: Events, Out: Events>(
    server: &Server<In, Out>,
    conn: &Conn<Out>,
    index: usize,
    payload: RawPayload<'_>,
    ack: Option<&Arc<AckSlot>>,
) {
    let name = In::NAMES[index];
    // The table has one slot per event index, built from `In::NAMES`.
    let handlers = server
        .inner
        .table
        .get(index)
        .map_or(&[][..], |slot| &slot[..]);
    if handlers.is_empty() {
        if let Some(slot) = ack {
            let message = format!("event `{name}` has no handler");
            slot.reply_error(ErrorCode::NoHandler, message, Some(name));
        }
        return;
    }
    for handler in handlers {
        let call = Call {
            server,
            conn,
            payload,
            ack,
        };
        let outcome = match std::panic::catch_unwind(AssertUnwindSafe(|| handler.call(call))) {
            Ok(Ok(future)) => match AssertUnwindSafe(future).catch_unwind().await {
                Ok(result) => result.map_err(HandlerError::Returned),
                Err(panic) => Err(HandlerError::Panicked(panic_message(&*panic))),
            },
            Ok(Err(ExtractError::Decode(err))) => {
                // Every handler of the slot decodes the same type: none can run.
                let message = err.to_string();
                answer(
                    conn,
                    ack.map(|slot| &**slot),
                    ErrorCode::BadPayload,
                    message,
                    Some(name),
                );
                return;
            }
            Ok(Err(err)) => Err(HandlerError::Extract(err)),
            Err(panic) => Err(HandlerError::Panicked(panic_message(&*panic))),
        };
        match outcome {
            Ok(Outcome::Done(reply)) => {
                if let (Some(slot), Some(reply)) = (ack, reply)
                    && let Err(err) = slot.reply(reply)
                {
                    tracing::debug!(conn = %conn.id(), event = name, err = %Chain(&err), "reply not sent");
                }
            }
            Ok(Outcome::Rejected(reason)) => {
                answer(
                    conn,
                    ack.map(|slot| &**slot),
                    ErrorCode::Forbidden,
                    reason,
                    Some(name),
                );
            }
            Err(HandlerError::Returned(err)) if refusal(&*err).is_some() => {
                let message = refusal(&*err).map(|refused| refused.message().to_owned());
                answer(
                    conn,
                    ack.map(|slot| &**slot),
                    ErrorCode::Refused,
                    message.unwrap_or_default(),
                    Some(name),
                );
                return;
            }
            Err(error) => {
                // A request hears that it failed; the details go to the error
                // hook, which also hears of failed events that were not requests.
                if let Some(slot) = ack {
                    slot.reply_error(ErrorCode::HandlerFailed, client_message(&error), Some(name));
                }
                server.report(conn, Some(name), error);
            }
        }
    }
    if let Some(slot) = ack {
        slot.reply_null();
    }
}

/// The [`Refused`] a handler's error is, or has among its sources: an
/// application's own error type can carry a refusal as a variant.
fn refusal<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    std::iter::successors(Some(err), |err| err.source())
        .find_map(|err| err.downcast_ref::<Refused>())
}

/// What the client is told of a failed handler: the error a handler
/// returned (its own words), never a panic message or an extractor's detail.
fn client_message(error: &HandlerError) -> String {
    match error {
        HandlerError::Returned(err) => err.to_string(),
        HandlerError::Extract(_) => "handler not run".to_owned(),
        HandlerError::Panicked(_) | HandlerError::HookPanicked(_) => "handler panicked".to_owned(),
    }
}
