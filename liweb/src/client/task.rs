//! The task that runs a client's connection: sends what the handles queue,
//! answers pings, and turns what arrives into [`Incoming`] items, replies,
//! listener calls and the authentication verdict.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::mpsc;

use super::{ClientError, Incoming, Responder, Shared, lock, send};
use crate::{
    codec::Input,
    error::DecodeError,
    event::{Events, PayloadDecoder},
    protocol::{ACK_EVENT, AUTH_ERROR, AUTH_SUCCESS, ERROR_EVENT, ErrorCode, ErrorPayload},
    transport::item::{Inbound, Outbound},
};

/// The close code a transport reports for a close without one (RFC 6455
/// § 7.1.5, "no status code present"); [`Incoming::Closed`] then has none.
pub(super) const NO_STATUS: u16 = 1005;

/// Runs the connection until it ends: what the handles queue goes out,
/// pings are answered, and what arrives is decoded for the handles.
pub(super) async fn run<Rx: Events, S>(
    mut socket: S,
    mut commands: mpsc::UnboundedReceiver<Inbound>,
    command_tx: mpsc::WeakUnboundedSender<Inbound>,
    incoming: mpsc::UnboundedSender<Incoming<Rx>>,
    shared: Arc<Shared>,
) where
    S: Stream<Item = Outbound> + Sink<Inbound> + Unpin,
{
    let mut close = None;
    let mut commands_open = true;
    loop {
        tokio::select! {
            command = commands.recv(), if commands_open => match command {
                Some(item @ Inbound::Close(_)) => {
                    // The server answers and closes; keep reading until then.
                    let _ = socket.send(item).await;
                }
                Some(item) => {
                    if socket.send(item).await.is_err() {
                        break;
                    }
                }
                // Every handle is gone: say goodbye and stop.
                None => {
                    commands_open = false;
                    let _ = socket.send(Inbound::Close(None)).await;
                }
            },
            item = socket.next() => match item {
                Some(Outbound::Frame(frame)) if frame.is_text() == shared.codec.is_text() => {
                    let Some(commands) = command_tx.upgrade() else { continue };
                    if let Some(item) = decode::<Rx>(frame.input(), &shared, &commands) {
                        let _ = incoming.send(item);
                    }
                }
                Some(Outbound::Frame(frame)) => {
                    let message = if frame.is_text() {
                        "text frame on a binary connection"
                    } else {
                        "binary frame on a JSON connection"
                    };
                    let _ = incoming.send(Incoming::Malformed {
                        event: None,
                        error: DecodeError::frame(message),
                    });
                }
                Some(Outbound::Ping) => {
                    if socket.send(Inbound::Pong).await.is_err() {
                        break;
                    }
                }
                Some(Outbound::Close(code, reason)) => {
                    close = (code.as_u16() != NO_STATUS).then_some((code, reason));
                }
                None => break,
            },
        }
    }
    // Waiting requests see the connection closed.
    lock(&shared.waiters).clear();
    lock(&shared.auth).take();
    let _ = incoming.send(Incoming::Closed(close));
}

/// The `auth:error` payload, `{"reason": ..}`.
#[derive(serde::Deserialize)]
struct AuthError {
    reason: String,
}

fn input_bytes<'a>(input: &Input<'a>) -> &'a [u8] {
    match *input {
        Input::Text(text) => text.as_bytes(),
        Input::Binary(bytes) => bytes,
    }
}

pub(super) fn decode<Rx: Events>(
    input: Input<'_>,
    shared: &Shared,
    commands: &mpsc::UnboundedSender<Inbound>,
) -> Option<Incoming<Rx>> {
    let frame = match shared.codec.decode_frame(input) {
        Ok(frame) => frame,
        Err(error) => return Some(Incoming::Malformed { event: None, error }),
    };
    let malformed = |error| Incoming::Malformed {
        event: Some(frame.event.to_string()),
        error,
    };
    match &*frame.event {
        ERROR_EVENT => {
            return Some(match frame.payload.decode::<ErrorPayload>() {
                Ok(error) => Incoming::Error(error),
                Err(error) => malformed(error),
            });
        }
        ACK_EVENT => {
            let waiter = frame.ack.and_then(|id| lock(&shared.waiters).remove(&id));
            if let Some(waiter) = waiter {
                let result = match frame.error {
                    None => Ok(frame.payload),
                    Some(error) => {
                        Err(error
                            .decode::<ErrorPayload>()
                            .unwrap_or_else(|err| ErrorPayload {
                                code: ErrorCode::HandlerFailed,
                                message: format!("malformed error reply: {err}"),
                                event: None,
                            }))
                    }
                };
                waiter(result);
            }
            return None;
        }
        AUTH_SUCCESS | AUTH_ERROR => {
            // The user's type is known only to the waiter, which decodes
            // the frame again; this is once per connection.
            let verdict = if frame.event == AUTH_SUCCESS {
                Ok(Bytes::copy_from_slice(input_bytes(&input)))
            } else {
                match frame.payload.decode::<AuthError>() {
                    Ok(error) => Err(error.reason),
                    Err(error) => return Some(malformed(error)),
                }
            };
            match (lock(&shared.auth).take(), verdict) {
                (Some(waiter), verdict) => {
                    let _ = waiter.send(verdict);
                    return None;
                }
                (None, Err(reason)) => return Some(Incoming::AuthError(reason)),
                (None, Ok(_)) => return None,
            }
        }
        _ => {}
    }
    let Some(index) = Rx::index_of(&frame.event) else {
        return Some(malformed(DecodeError::frame(format_args!(
            "unknown event `{}`",
            frame.event
        ))));
    };
    if let Some(id) = frame.ack {
        {
            let responders = lock(&shared.responders);
            if let Some(respond) = responders.get(&index) {
                match respond(frame.payload, id) {
                    Ok(reply) => {
                        let _ = send(commands, reply);
                        return None;
                    }
                    Err(ClientError::Decode(error)) => return Some(malformed(error)),
                    Err(_) => return None,
                }
            }
        }
        return match Rx::decode(index, frame.payload) {
            Some(Ok(event)) => Some(Incoming::Request(
                event,
                Responder {
                    id,
                    codec: shared.codec,
                    commands: commands.clone(),
                },
            )),
            Some(Err(error)) => Some(malformed(error)),
            None => Some(malformed(DecodeError::frame("event index out of range"))),
        };
    }
    {
        let listeners = lock(&shared.listeners);
        if let Some(listeners) = listeners.get(&index).filter(|list| !list.is_empty()) {
            for listener in listeners {
                if let Err(error) = listener(frame.payload) {
                    return Some(malformed(error));
                }
            }
            return None;
        }
    }
    match Rx::decode(index, frame.payload) {
        Some(Ok(event)) => Some(Incoming::Event(event)),
        Some(Err(error)) => Some(malformed(error)),
        None => Some(malformed(DecodeError::frame("event index out of range"))),
    }
}
