//! MessagePack binary frames: a map `{"event": name, "payload": value}` (with
//! `ack` and `error` as in JSON), standard MessagePack any language reads.

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};

use super::{
    depth::{Limited, MAX_PAYLOAD_DEPTH},
    format::{Codec, Decoded, Input},
};
use crate::{
    error::{DecodeError, EncodeError},
    event::PayloadDecoder,
    protocol::{ACK_EVENT, ErrorPayload},
};

/// The MessagePack codec (feature `msgpack`, subprotocol `liweb.msgpack`).
///
/// The envelope is walked without decoding anything but its keys, the event
/// name and the ack id: the payload stays a borrowed slice of the frame and
/// is then deserialized straight into its type, with no value tree between.
/// Structs are written as maps with their field names, so other languages
/// read them as objects.
#[derive(Debug, Clone, Copy, Default)]
pub struct MsgPackCodec;

/// A MessagePack payload, borrowed from its frame.
#[derive(Debug, Clone, Copy)]
pub struct MsgPackPayload<'a>(&'a [u8]);

impl<'a> MsgPackPayload<'a> {
    /// Wraps the bytes of one MessagePack value.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self(bytes)
    }

    /// The encoded bytes.
    pub(crate) fn as_bytes(&self) -> &'a [u8] {
        self.0
    }
}

/// MessagePack `nil`: the payload of a frame that has none.
pub(super) const NIL: &[u8] = &[0xc0];

impl PayloadDecoder for MsgPackPayload<'_> {
    type Error = DecodeError;

    fn decode<T: DeserializeOwned>(self) -> Result<T, DecodeError> {
        // As for JSON: the field path is worked out only for a failure.
        T::deserialize(Limited::new(&mut deserializer(self.0))).map_err(|err| {
            let mut de = deserializer(self.0);
            match serde_path_to_error::deserialize::<_, T>(Limited::new(&mut de)) {
                Err(err) => DecodeError::payload(err),
                Ok(_) => DecodeError::payload_message(err),
            }
        })
    }
}

/// A deserializer of `bytes` held to the payload depth limit: rmp-serde's
/// own (default 1024, deeper than a debug build's stack allows) counts
/// arrays and maps but not enums, so [`Limited`] counts every level too.
fn deserializer(
    bytes: &[u8],
) -> rmp_serde::Deserializer<rmp_serde::decode::ReadRefReader<'_, [u8]>> {
    let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
    de.set_max_depth(MAX_PAYLOAD_DEPTH);
    de
}

/// An outbound message; `ack` and `error` are left out when absent.
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

fn to_bytes<P: Serialize + ?Sized>(envelope: &OutEnvelope<'_, P>) -> Result<Bytes, EncodeError> {
    let mut out = Vec::with_capacity(64);
    envelope
        .serialize(&mut rmp_serde::Serializer::new(&mut out).with_struct_map())
        .map_err(EncodeError::new)?;
    Ok(Bytes::from(out))
}

impl Codec for MsgPackCodec {
    const SUBPROTOCOL: &'static str = "liweb.msgpack";
    const TEXT: bool = false;
    type Payload<'a> = MsgPackPayload<'a>;

    fn decode_frame(frame: Input<'_>) -> Result<Decoded<'_, MsgPackPayload<'_>>, DecodeError> {
        let bytes = match frame {
            Input::Binary(bytes) => bytes,
            Input::Text(text) => text.as_bytes(),
        };
        let mut reader = Reader { bytes, pos: 0 };
        let entries = reader.map_len().map_err(DecodeError::frame)?;
        let mut event = None;
        let mut payload = None;
        let mut ack = None;
        let mut error = None;
        for _ in 0..entries {
            let key = reader.str().map_err(DecodeError::frame)?;
            match key {
                "event" => event = Some(reader.str().map_err(DecodeError::frame)?),
                "payload" => payload = Some(reader.value().map_err(DecodeError::frame)?),
                "ack" => ack = reader.ack().map_err(DecodeError::frame)?,
                "error" => error = Some(reader.value().map_err(DecodeError::frame)?),
                _ => {
                    reader.value().map_err(DecodeError::frame)?;
                }
            }
        }
        if reader.pos != bytes.len() {
            return Err(DecodeError::frame("trailing bytes after the message"));
        }
        let event = event.ok_or_else(|| DecodeError::frame("missing field `event`"))?;
        Ok(Decoded {
            event: Cow::Borrowed(event),
            payload: MsgPackPayload(payload.unwrap_or(NIL)),
            ack,
            error: error.filter(|error| *error != NIL).map(MsgPackPayload),
        })
    }

    fn encode<P: Serialize + ?Sized>(
        name: &str,
        ack: Option<u64>,
        payload: &P,
    ) -> Result<Bytes, EncodeError> {
        to_bytes(&OutEnvelope {
            event: name,
            ack,
            payload: Some(payload),
            error: None,
        })
    }

    fn encode_error_reply(ack: u64, error: &ErrorPayload) -> Result<Bytes, EncodeError> {
        to_bytes(&OutEnvelope::<()> {
            event: ACK_EVENT,
            ack: Some(ack),
            payload: None,
            error: Some(error),
        })
    }
}

/// Walks MessagePack bytes without decoding values it only needs to skip.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

type ReadResult<T> = Result<T, &'static str>;

const TRUNCATED: &str = "truncated MessagePack";

impl<'a> Reader<'a> {
    fn byte(&mut self) -> ReadResult<u8> {
        let byte = *self.bytes.get(self.pos).ok_or(TRUNCATED)?;
        self.pos += 1;
        Ok(byte)
    }

    fn take(&mut self, len: usize) -> ReadResult<&'a [u8]> {
        let end = self.pos.checked_add(len).ok_or(TRUNCATED)?;
        let slice = self.bytes.get(self.pos..end).ok_or(TRUNCATED)?;
        self.pos = end;
        Ok(slice)
    }

    fn uint(&mut self, width: usize) -> ReadResult<u64> {
        Ok(self
            .take(width)?
            .iter()
            .fold(0, |acc, &byte| acc << 8 | u64::from(byte)))
    }

    fn map_len(&mut self) -> ReadResult<u64> {
        match self.byte()? {
            marker @ 0x80..=0x8f => Ok(u64::from(marker & 0x0f)),
            0xde => self.uint(2),
            0xdf => self.uint(4),
            _ => Err("the message is not a MessagePack map"),
        }
    }

    fn str(&mut self) -> ReadResult<&'a str> {
        let len = match self.byte()? {
            marker @ 0xa0..=0xbf => usize::from(marker & 0x1f),
            0xd9 => self.uint(1)? as usize,
            0xda => self.uint(2)? as usize,
            0xdb => self.uint(4)? as usize,
            _ => return Err("expected a string"),
        };
        std::str::from_utf8(self.take(len)?).map_err(|_| "a string is not valid UTF-8")
    }

    /// An `ack` id: a non-negative integer, or nil for none.
    fn ack(&mut self) -> ReadResult<Option<u64>> {
        let value = match self.byte()? {
            0xc0 => return Ok(None),
            marker @ 0x00..=0x7f => u64::from(marker),
            0xcc => self.uint(1)?,
            0xcd => self.uint(2)?,
            0xce => self.uint(4)?,
            0xcf => self.uint(8)?,
            marker @ 0xd0..=0xd3 => {
                let width = 1 << (marker - 0xd0);
                let raw = self.uint(width)?;
                let shift = 64 - 8 * width as u32;
                let signed = ((raw << shift) as i64) >> shift;
                u64::try_from(signed).map_err(|_| "`ack` is not an unsigned integer")?
            }
            _ => return Err("`ack` is not an unsigned integer"),
        };
        Ok(Some(value))
    }

    /// Skips one value, returning its bytes. Iterative, so nesting cannot
    /// overflow the stack.
    fn value(&mut self) -> ReadResult<&'a [u8]> {
        let start = self.pos;
        let mut remaining: u64 = 1;
        while remaining > 0 {
            remaining -= 1;
            let marker = self.byte()?;
            let (skip, children) = match marker {
                0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
                0x80..=0x8f => (0, 2 * u64::from(marker & 0x0f)),
                0x90..=0x9f => (0, u64::from(marker & 0x0f)),
                0xa0..=0xbf => (u64::from(marker & 0x1f), 0),
                0xc4 | 0xd9 => (self.uint(1)?, 0),
                0xc5 | 0xda => (self.uint(2)?, 0),
                0xc6 | 0xdb => (self.uint(4)?, 0),
                0xc7 => (self.uint(1)? + 1, 0),
                0xc8 => (self.uint(2)? + 1, 0),
                0xc9 => (self.uint(4)? + 1, 0),
                0xca => (4, 0),
                0xcb => (8, 0),
                0xcc | 0xd0 => (1, 0),
                0xcd | 0xd1 => (2, 0),
                0xce | 0xd2 => (4, 0),
                0xcf | 0xd3 => (8, 0),
                0xd4 => (2, 0),
                0xd5 => (3, 0),
                0xd6 => (5, 0),
                0xd7 => (9, 0),
                0xd8 => (17, 0),
                0xdc => (0, self.uint(2)?),
                0xdd => (0, self.uint(4)?),
                0xde => (0, 2 * self.uint(2)?),
                0xdf => (0, 2 * self.uint(4)?),
                // 0xc1 is never used.
                _ => return Err("invalid MessagePack marker"),
            };
            self.take(usize::try_from(skip).map_err(|_| TRUNCATED)?)?;
            remaining += children;
            // Every value takes at least a byte: more than are left is garbage.
            if remaining > (self.bytes.len() - self.pos) as u64 {
                return Err(TRUNCATED);
            }
        }
        Ok(&self.bytes[start..self.pos])
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Say {
        text: String,
        tags: Vec<String>,
    }

    #[test]
    fn an_envelope_round_trips_with_ack_and_a_nested_payload() {
        let say = Say {
            text: "hi".into(),
            tags: vec!["a".into(), "b".into()],
        };
        let bytes = MsgPackCodec::encode("say", Some(7), &say).unwrap();
        let decoded = MsgPackCodec::decode_frame(Input::Binary(&bytes)).unwrap();
        assert_eq!(decoded.event, "say");
        assert_eq!(decoded.ack, Some(7));
        assert!(decoded.error.is_none());
        assert_eq!(decoded.payload.decode::<Say>().unwrap(), say);
    }

    #[test]
    fn payloads_are_maps_with_field_names() {
        let bytes = MsgPackCodec::encode(
            "say",
            None,
            &Say {
                text: "x".into(),
                tags: vec![],
            },
        )
        .unwrap();
        let value: std::collections::BTreeMap<String, serde::de::IgnoredAny> =
            rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(value.keys().collect::<Vec<_>>(), ["event", "payload"]);
        let payload = MsgPackCodec::decode_frame(Input::Binary(&bytes))
            .unwrap()
            .payload;
        let fields: std::collections::BTreeMap<String, serde::de::IgnoredAny> =
            rmp_serde::from_slice(payload.0).unwrap();
        assert_eq!(fields.keys().collect::<Vec<_>>(), ["tags", "text"]);
    }

    #[test]
    fn a_missing_payload_is_nil_and_a_bad_one_names_its_path() {
        // {"event": "ping"}
        let frame = [
            0x81, 0xa5, b'e', b'v', b'e', b'n', b't', 0xa4, b'p', b'i', b'n', b'g',
        ];
        let decoded = MsgPackCodec::decode_frame(Input::Binary(&frame)).unwrap();
        decoded.payload.decode::<()>().unwrap();
        let bad =
            rmp_serde::to_vec_named(&serde_json::json!({"text": "x", "tags": ["a", 5]})).unwrap();
        let err = MsgPackPayload(&bad).decode::<Say>().unwrap_err();
        assert_eq!(err.path(), Some("tags[1]"));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for frame in [
            &b""[..],
            &[0xc1],
            &[0x81, 0xa5],
            &[0xdf, 0xff, 0xff, 0xff, 0xff],
            &[
                0x81, 0xa7, b'p', b'a', b'y', b'l', b'o', b'a', b'd', 0xdd, 0xff, 0xff, 0xff, 0xff,
            ],
            b"{\"event\":\"x\"}",
            &[0x80],
        ] {
            assert!(MsgPackCodec::decode_frame(Input::Binary(frame)).is_err());
        }
    }
}
