//! Replies to client requests: the reply slot of a request, the [`Ack`]
//! handle a handler answers through, and what a handler call ended with.

use std::{
    any::TypeId,
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use serde::Serialize;

use crate::{
    codec::{CodecKind, Frame},
    conn::ConnInner,
    error::Chain,
    error::{EmitError, EncodeError},
    protocol::{ACK_EVENT, ErrorCode, ErrorPayload},
};

/// A reply value, encoded on demand in the requester's codec.
pub(crate) type Reply = Box<dyn FnOnce(CodecKind, u64) -> Result<Frame, EncodeError> + Send>;

/// What a handler call ended with, when it did not fail.
#[doc(hidden)]
pub enum Outcome {
    /// The handler ran; `Some` is its reply value for a request.
    Done(Option<Reply>),
    /// One of the handler's guards refused the event, with this reason.
    Rejected(String),
}

impl fmt::Debug for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Done(reply) => f
                .debug_tuple("Done")
                .field(&reply.as_ref().map(|_| ".."))
                .finish(),
            Self::Rejected(reason) => f.debug_tuple("Rejected").field(reason).finish(),
        }
    }
}

/// A reply carrying `value`; unit values are no reply, so a handler
/// returning `Result<(), E>` leaves the answer to the others (or to `null`).
pub(crate) fn reply_value<T: Serialize + Send + 'static>(value: T) -> Option<Reply> {
    if TypeId::of::<T>() == TypeId::of::<()>() {
        return None;
    }
    Some(Box::new(move |codec: CodecKind, id| {
        codec.encode_parts(ACK_EVENT, Some(id), &value)
    }))
}

/// The pending reply of one client request: the id to answer, and whether
/// an answer went out.
pub(crate) struct AckSlot {
    id: u64,
    conn: Arc<ConnInner>,
    sent: AtomicBool,
}

impl fmt::Debug for AckSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AckSlot")
            .field("id", &self.id)
            .field("sent", &self.is_sent())
            .finish()
    }
}

impl AckSlot {
    pub(crate) fn new(id: u64, conn: Arc<ConnInner>) -> Arc<Self> {
        Arc::new(Self {
            id,
            conn,
            sent: AtomicBool::new(false),
        })
    }

    /// Whether a reply has gone out.
    pub(crate) fn is_sent(&self) -> bool {
        self.sent.load(Ordering::Acquire)
    }

    /// Claims the single reply; `false` when one went out already.
    fn claim(&self) -> bool {
        !self.sent.swap(true, Ordering::AcqRel)
    }

    /// Sends `reply` unless a reply went out already.
    pub(crate) fn reply(&self, reply: Reply) -> Result<bool, EmitError> {
        if !self.claim() {
            return Ok(false);
        }
        let frame = reply(self.conn.codec(), self.id)?;
        self.conn.send_frame(frame)?;
        Ok(true)
    }

    /// Sends `null` unless a reply went out already.
    pub(crate) fn reply_null(&self) {
        let _ = self.reply(Box::new(|codec: CodecKind, id| {
            codec.encode_parts(ACK_EVENT, Some(id), &())
        }));
    }

    /// Sends an error reply unless a reply went out already.
    pub(crate) fn reply_error(&self, code: ErrorCode, message: String, event: Option<&str>) {
        if !self.claim() {
            return;
        }
        let error = ErrorPayload {
            code,
            message,
            event: event.map(str::to_owned),
        };
        match self.conn.codec().encode_error_reply(self.id, &error) {
            Ok(frame) => {
                let _ = self.conn.send_frame(frame);
            }
            Err(err) => tracing::error!(err = %Chain(&err), "cannot encode an error reply"),
        }
    }
}

/// The reply handle of a client request, as a handler argument.
///
/// A handler answers a request by returning `Ok(value)`; `Ack` is for
/// answering before the handler ends (then work on) or from a handler that
/// returns `()`. The first answer wins: later ones, and the return value,
/// are not sent. When the event carried no ack id, [`Ack::requested`] is
/// `false` and sending does nothing.
///
/// ```
/// # use liweb::prelude::*;
/// # #[derive(Events)] enum In { Save(String) }
/// # #[derive(Events)] enum Out { Saved }
/// #[liweb::handler(In::Save)]
/// async fn save(ack: Ack, text: String) {
///     let _ = ack.send(&text.len()); // the client stops waiting here
///     // ... slow work the client need not wait for ...
/// }
/// ```
#[derive(Clone)]
pub struct Ack {
    slot: Option<Arc<AckSlot>>,
}

impl fmt::Debug for Ack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ack")
            .field("id", &self.slot.as_ref().map(|slot| slot.id))
            .field(
                "sent",
                &self.slot.as_ref().is_some_and(|slot| slot.is_sent()),
            )
            .finish()
    }
}

impl Ack {
    pub(crate) fn new(slot: Option<Arc<AckSlot>>) -> Self {
        Self { slot }
    }

    /// Whether the event was a request (carried an ack id) and still awaits
    /// its answer.
    pub fn requested(&self) -> bool {
        self.slot.as_ref().is_some_and(|slot| !slot.is_sent())
    }

    /// Answers the request with `value`. Returns `Ok(false)` when there is
    /// nothing to answer (no ack id, or answered already).
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<bool, EmitError> {
        let Some(slot) = &self.slot else {
            return Ok(false);
        };
        if !slot.claim() {
            return Ok(false);
        }
        let frame = slot
            .conn
            .codec()
            .encode_parts(ACK_EVENT, Some(slot.id), value)?;
        slot.conn.send_frame(frame)?;
        Ok(true)
    }

    /// Answers the request with an error reply carrying `message`
    /// (code `handler_failed`). Returns whether an answer went out.
    pub fn send_error(&self, message: impl Into<String>) -> bool {
        match &self.slot {
            Some(slot) if !slot.is_sent() => {
                slot.reply_error(ErrorCode::HandlerFailed, message.into(), None);
                true
            }
            _ => false,
        }
    }
}
