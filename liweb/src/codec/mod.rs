//! Wire codecs: how a message `{event, payload}` becomes bytes and back.
//!
//! Each codec implements [`Codec`]. The dispatch code never names a codec: it
//! asks the connection's [`CodecKind`] to read an envelope ([`RawFrame`]: the
//! wire name and a still-encoded [`RawPayload`]) and to encode outbound
//! messages ([`Frame`]). Adding a codec (MessagePack, bincode) means a type
//! implementing [`Codec`], a [`CodecKind`] variant and a [`RawPayload`]
//! variant, all in this module.

mod json;

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};

pub use self::json::{JsonCodec, JsonPayload};
use crate::{
    error::{DecodeError, EncodeError},
    event::{Events, PayloadDecoder, PayloadOf},
};

/// A wire format for liweb messages.
pub trait Codec: Send + Sync + 'static {
    /// The WebSocket subprotocol that selects this codec.
    const SUBPROTOCOL: &'static str;
    /// Whether frames are text (UTF-8) rather than binary.
    const TEXT: bool;
    /// A payload still in this codec's format, borrowed from its frame.
    type Payload<'a>: PayloadDecoder<Error = DecodeError> + Copy;

    /// Reads one frame's envelope: the wire name and the undecoded payload.
    fn decode_frame(bytes: &[u8]) -> Result<(Cow<'_, str>, Self::Payload<'_>), DecodeError>;

    /// Encodes one message from its wire name and payload.
    fn encode<P: Serialize + ?Sized>(name: &str, payload: &P) -> Result<Bytes, EncodeError>;
}

/// The wire format of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum CodecKind {
    /// JSON text frames `{"event": name, "payload": value}` (liwebjs compatible).
    #[default]
    Json,
}

impl CodecKind {
    /// How many codecs exist; sizes the per-codec caches of a broadcast.
    pub(crate) const COUNT: usize = 1;

    pub(crate) const fn slot(self) -> usize {
        match self {
            Self::Json => 0,
        }
    }

    /// Whether this codec's frames are text (else binary).
    pub const fn is_text(self) -> bool {
        match self {
            Self::Json => JsonCodec::TEXT,
        }
    }

    /// The WebSocket subprotocol naming this codec.
    pub const fn subprotocol(self) -> &'static str {
        match self {
            Self::Json => JsonCodec::SUBPROTOCOL,
        }
    }

    /// Encodes one event.
    pub(crate) fn encode<E: Events>(self, event: &E) -> Result<Frame, EncodeError> {
        self.encode_parts(event.name(), &PayloadOf(event))
    }

    /// Encodes a message from its wire name and payload.
    pub(crate) fn encode_parts<P: Serialize + ?Sized>(
        self,
        name: &str,
        payload: &P,
    ) -> Result<Frame, EncodeError> {
        let bytes = match self {
            Self::Json => JsonCodec::encode(name, payload)?,
        };
        Ok(Frame {
            bytes,
            text: self.is_text(),
        })
    }

    /// Reads the envelope of one inbound frame, leaving the payload undecoded.
    pub(crate) fn decode_frame(self, bytes: &[u8]) -> Result<RawFrame<'_>, DecodeError> {
        match self {
            Self::Json => JsonCodec::decode_frame(bytes).map(|(event, payload)| RawFrame {
                event,
                payload: RawPayload::Json(payload),
            }),
        }
    }
}

/// The envelope of an inbound message: the wire name and the payload, still
/// in its codec's format.
#[derive(Debug)]
pub(crate) struct RawFrame<'a> {
    pub(crate) event: Cow<'a, str>,
    pub(crate) payload: RawPayload<'a>,
}

/// A payload not yet decoded, borrowed from the frame it arrived in.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum RawPayload<'a> {
    /// A JSON value (`null` when the frame had no `payload`).
    Json(JsonPayload<'a>),
}

impl PayloadDecoder for RawPayload<'_> {
    type Error = DecodeError;

    fn decode<T: DeserializeOwned>(self) -> Result<T, DecodeError> {
        match self {
            Self::Json(payload) => payload.decode(),
        }
    }
}

/// An encoded outbound message, shared by every connection it goes to.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct Frame {
    pub(crate) bytes: Bytes,
    /// A text frame (UTF-8) rather than a binary one.
    pub(crate) text: bool,
}

impl Frame {
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The encoded bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
}
