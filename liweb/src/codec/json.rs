//! JSON text frames: `{"event": name, "payload": value}`, liwebjs compatible.

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::value::RawValue;

use super::{Codec, Input};
use crate::{
    error::{DecodeError, EncodeError},
    event::PayloadDecoder,
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
pub struct JsonPayload<'a>(&'a RawValue);

impl PayloadDecoder for JsonPayload<'_> {
    type Error = DecodeError;

    fn decode<T: DeserializeOwned>(self) -> Result<T, DecodeError> {
        // Tracking the field path costs on every value, so the path is only
        // worked out, by decoding again, for a payload that failed.
        serde_json::from_str(self.0.get()).map_err(|err| {
            let mut de = serde_json::Deserializer::from_str(self.0.get());
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
}

impl Codec for JsonCodec {
    const SUBPROTOCOL: &'static str = "liweb.json";
    const TEXT: bool = true;
    type Payload<'a> = JsonPayload<'a>;

    fn decode_frame(frame: Input<'_>) -> Result<(Cow<'_, str>, JsonPayload<'_>), DecodeError> {
        let envelope: Envelope<'_> = match frame {
            Input::Text(text) => serde_json::from_str(text),
            Input::Binary(bytes) => serde_json::from_slice(bytes),
        }
        .map_err(DecodeError::frame)?;
        let payload = envelope.payload.unwrap_or_else(|| null());
        Ok((envelope.event, JsonPayload(payload)))
    }

    fn encode<P: Serialize + ?Sized>(name: &str, payload: &P) -> Result<Bytes, EncodeError> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(b"{\"event\":");
        serde_json::to_writer(&mut out, name).map_err(EncodeError::new)?;
        out.extend_from_slice(b",\"payload\":");
        serde_json::to_writer(&mut out, payload).map_err(EncodeError::new)?;
        out.push(b'}');
        Ok(Bytes::from(out))
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
        Self(raw)
    }
}
