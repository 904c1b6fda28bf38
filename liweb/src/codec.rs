//! Wire codecs: how a message `{event, payload}` becomes bytes and back.
//!
//! The dispatch code only sees [`RawFrame`] (a wire name and a
//! [`RawPayload`]) and [`Frame`] (encoded bytes); adding a codec means a
//! [`CodecKind`] variant, a [`RawPayload`] variant and the two functions here.

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::value::RawValue;

use crate::{
    error::{DecodeError, EncodeError},
    event::{Events, PayloadDecoder, PayloadOf},
};

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

    /// Encodes one event.
    pub(crate) fn encode<E: Events>(self, event: &E) -> Result<Frame, EncodeError> {
        self.encode_parts(event.name(), &PayloadOf(event))
    }

    /// Encodes a message from its wire name and payload.
    pub(crate) fn encode_parts<P: serde::Serialize + ?Sized>(
        self,
        name: &str,
        payload: &P,
    ) -> Result<Frame, EncodeError> {
        match self {
            Self::Json => encode_json(name, payload),
        }
    }

    /// Reads the envelope of one inbound frame, leaving the payload undecoded.
    pub(crate) fn decode_frame(self, bytes: &[u8]) -> Result<RawFrame<'_>, DecodeError> {
        match self {
            Self::Json => {
                let frame: JsonFrame<'_> =
                    serde_json::from_slice(bytes).map_err(DecodeError::frame)?;
                Ok(RawFrame {
                    event: frame.event,
                    payload: RawPayload::Json(frame.payload.unwrap_or_else(|| null_payload())),
                })
            }
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
    Json(&'a RawValue),
}

impl PayloadDecoder for RawPayload<'_> {
    type Error = DecodeError;

    fn decode<T: DeserializeOwned>(self) -> Result<T, DecodeError> {
        match self {
            Self::Json(raw) => {
                let mut de = serde_json::Deserializer::from_str(raw.get());
                serde_path_to_error::deserialize(&mut de).map_err(DecodeError::payload)
            }
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

#[derive(Deserialize)]
struct JsonFrame<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
}

/// The payload of a frame that has none. `RawValue` cannot be built in a
/// const, so it is parsed once.
fn null_payload() -> &'static RawValue {
    static NULL: std::sync::LazyLock<Box<RawValue>> = std::sync::LazyLock::new(|| {
        RawValue::from_string("null".to_owned()).expect("`null` is valid JSON")
    });
    &NULL
}

pub(crate) fn encode_json<P: serde::Serialize + ?Sized>(
    name: &str,
    payload: &P,
) -> Result<Frame, EncodeError> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"{\"event\":");
    serde_json::to_writer(&mut out, name).map_err(EncodeError::new)?;
    out.extend_from_slice(b",\"payload\":");
    serde_json::to_writer(&mut out, payload).map_err(EncodeError::new)?;
    out.push(b'}');
    Ok(Frame {
        bytes: Bytes::from(out),
        text: true,
    })
}
