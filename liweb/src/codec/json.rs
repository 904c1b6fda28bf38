//! JSON text frames: `{"event": name, "payload": value}`, liwebjs compatible.

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::value::RawValue;

use super::format::{Codec, Decoded, Input};
use crate::{
    error::{DecodeError, EncodeError},
    event::PayloadDecoder,
    protocol::{ACK_EVENT, ErrorPayload},
};

/// The JSON codec, the default.
///
/// The envelope is read with the payload kept as a borrowed [`RawValue`], and
/// the payload is then deserialized straight into its type: no
/// `serde_json::Value` tree is built.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonCodec;

/// A JSON payload, borrowed from its frame.
#[derive(Debug, Clone, Copy)]
pub struct JsonPayload<'a>(&'a str);

impl PayloadDecoder for JsonPayload<'_> {
    type Error = DecodeError;

    fn decode<T: DeserializeOwned>(self) -> Result<T, DecodeError> {
        // Tracking the field path costs on every value, so the path is only
        // worked out, by decoding again, for a payload that failed.
        serde_json::from_str(self.0).map_err(|err| {
            let mut de = serde_json::Deserializer::from_str(self.0);
            match serde_path_to_error::deserialize::<_, T>(&mut de) {
                Err(err) => DecodeError::payload(err),
                // Cannot happen (the same bytes, the same type); keep the
                // first error rather than invent a path.
                Ok(_) => DecodeError::payload_message(err),
            }
        })
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
    #[serde(default)]
    ack: Option<u64>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

/// An outbound message. `ack` and `error` are left out when absent, so a
/// plain event is exactly `{"event":..,"payload":..}`.
#[derive(Serialize)]
struct OutEnvelope<'a, P: ?Sized> {
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ack: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a P>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a ErrorPayload>,
}

impl Codec for JsonCodec {
    const SUBPROTOCOL: &'static str = "liweb.json";
    const TEXT: bool = true;
    type Payload<'a> = JsonPayload<'a>;

    fn decode_frame(frame: Input<'_>) -> Result<Decoded<'_, JsonPayload<'_>>, DecodeError> {
        let envelope: Envelope<'_> = match frame {
            Input::Text(text) => serde_json::from_str(text),
            Input::Binary(bytes) => serde_json::from_slice(bytes),
        }
        .map_err(DecodeError::frame)?;
        let payload = envelope.payload.unwrap_or_else(|| null());
        Ok(Decoded {
            event: envelope.event,
            payload: JsonPayload(payload.get()),
            ack: envelope.ack,
            error: envelope.error.map(|error| JsonPayload(error.get())),
        })
    }

    fn encode<P: Serialize + ?Sized>(
        name: &str,
        ack: Option<u64>,
        payload: &P,
    ) -> Result<Bytes, EncodeError> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(b"{\"event\":");
        serde_json::to_writer(&mut out, name).map_err(EncodeError::new)?;
        if let Some(ack) = ack {
            out.extend_from_slice(b",\"ack\":");
            serde_json::to_writer(&mut out, &ack).map_err(EncodeError::new)?;
        }
        out.extend_from_slice(b",\"payload\":");
        serde_json::to_writer(&mut out, payload).map_err(EncodeError::new)?;
        out.push(b'}');
        Ok(Bytes::from(out))
    }

    fn encode_error_reply(ack: u64, error: &ErrorPayload) -> Result<Bytes, EncodeError> {
        let envelope = OutEnvelope::<()> {
            event: ACK_EVENT,
            ack: Some(ack),
            payload: None,
            error: Some(error),
        };
        serde_json::to_vec(&envelope)
            .map(Bytes::from)
            .map_err(EncodeError::new)
    }
}

/// The payload of a frame that has none. `RawValue` cannot be built in a
/// const, so it is parsed once.
fn null() -> &'static RawValue {
    static NULL: std::sync::LazyLock<Box<RawValue>> = std::sync::LazyLock::new(|| {
        RawValue::from_string("null".to_owned()).expect("`null` is valid JSON")
    });
    &NULL
}

impl<'a> JsonPayload<'a> {
    /// Wraps a raw JSON value.
    pub fn new(raw: &'a RawValue) -> Self {
        Self(raw.get())
    }

    /// A payload from JSON text already known to be one valid value (a
    /// part of a frame whose envelope was read).
    pub(crate) fn from_json_text(json: &'a str) -> Self {
        Self(json)
    }

    /// The JSON text.
    pub(crate) fn as_str(&self) -> &'a str {
        self.0
    }
}
