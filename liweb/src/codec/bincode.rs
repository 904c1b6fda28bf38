//! bincode binary frames, Rust to Rust: a small header (event name, ack id,
//! whether an error follows) and then the payload, each in bincode 2's
//! standard configuration.

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::{
    depth::{Limited, LimitedSeed},
    format::{Codec, Decoded, Input},
};
use crate::{
    error::{DecodeError, EncodeError},
    event::PayloadDecoder,
    protocol::{ACK_EVENT, ErrorPayload},
};

/// The most bytes one decode may claim. bincode allocates a string or a
/// vector at the length its prefix announces; the limit keeps a garbage
/// prefix from asking for more.
const LIMIT: usize = 16 * 1024 * 1024;

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<LIMIT>,
>;

const fn config() -> Config {
    bincode::config::standard().with_limit::<LIMIT>()
}

/// The bincode codec (feature `bincode`, subprotocol `liweb.bincode`).
///
/// bincode is not self-describing: both ends must use the same Rust types,
/// so it suits Rust clients ([`Client`](crate::client::Client) with this
/// codec). A frame is a header `(event: &str, ack: Option<u64>, error:
/// bool)` followed by the payload (or, when `error` is set, the error of an
/// error reply) taking the rest of the frame. Only the header is decoded
/// first; the payload is then decoded straight into its type.
#[derive(Debug, Clone, Copy, Default)]
pub struct BincodeCodec;

/// A bincode payload, borrowed from its frame: the rest of the frame after
/// the header (empty for a unit payload).
#[derive(Debug, Clone, Copy)]
pub struct BincodePayload<'a>(&'a [u8]);

impl<'a> BincodePayload<'a> {
    /// Wraps the bytes of one bincode value.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self(bytes)
    }

    /// The encoded bytes.
    pub(crate) fn as_bytes(&self) -> &'a [u8] {
        self.0
    }
}

impl PayloadDecoder for BincodePayload<'_> {
    type Error = DecodeError;

    fn decode<T: DeserializeOwned>(self) -> Result<T, DecodeError> {
        // bincode has no nesting limit: a recursive type (a tree enum) nests
        // a level per byte, so the decoder goes through the depth limit.
        match bincode::serde::seed_decode_from_slice(LimitedSeed::<T>::new(), self.0, config()) {
            Ok((value, read)) if read == self.0.len() => Ok(value),
            Ok(_) => Err(DecodeError::payload_message(
                "trailing bytes after the payload",
            )),
            // As for JSON: the field path is worked out only for a failure.
            Err(err) => {
                let mut decoder =
                    bincode::serde::BorrowedSerdeDecoder::from_slice(self.0, config(), ());
                match serde_path_to_error::deserialize::<_, T>(Limited::new(
                    decoder.as_deserializer(),
                )) {
                    Err(err) => Err(DecodeError::payload(err)),
                    Ok(_) => Err(DecodeError::payload_message(err)),
                }
            }
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    ack: Option<u64>,
    error: bool,
}

fn encode_into<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), EncodeError> {
    bincode::serde::encode_into_std_write(value, out, config())
        .map(drop)
        .map_err(EncodeError::new)
}

impl Codec for BincodeCodec {
    const SUBPROTOCOL: &'static str = "liweb.bincode";
    const TEXT: bool = false;
    type Payload<'a> = BincodePayload<'a>;

    fn decode_frame(frame: Input<'_>) -> Result<Decoded<'_, BincodePayload<'_>>, DecodeError> {
        let bytes = match frame {
            Input::Binary(bytes) => bytes,
            Input::Text(text) => text.as_bytes(),
        };
        let (header, read): (Header<'_>, usize) =
            bincode::serde::borrow_decode_from_slice(bytes, config())
                .map_err(DecodeError::frame)?;
        let rest = BincodePayload(&bytes[read..]);
        let (payload, error) = if header.error {
            (BincodePayload(&[]), Some(rest))
        } else {
            (rest, None)
        };
        Ok(Decoded {
            event: header.event,
            payload,
            ack: header.ack,
            error,
        })
    }

    fn encode<P: Serialize + ?Sized>(
        name: &str,
        ack: Option<u64>,
        payload: &P,
    ) -> Result<Bytes, EncodeError> {
        let mut out = Vec::with_capacity(64);
        let header = Header {
            event: Cow::Borrowed(name),
            ack,
            error: false,
        };
        encode_into(&mut out, &header)?;
        encode_into(&mut out, payload)?;
        Ok(Bytes::from(out))
    }

    fn encode_error_reply(ack: u64, error: &ErrorPayload) -> Result<Bytes, EncodeError> {
        let mut out = Vec::with_capacity(64);
        let header = Header {
            event: Cow::Borrowed(ACK_EVENT),
            ack: Some(ack),
            error: true,
        };
        encode_into(&mut out, &header)?;
        // `ErrorPayload` writes every field in a binary format.
        encode_into(&mut out, error)?;
        Ok(Bytes::from(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorCode;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Say {
        text: String,
        tags: Vec<String>,
    }

    #[test]
    fn an_envelope_round_trips_with_ack_and_payload() {
        let say = Say {
            text: "hi".into(),
            tags: vec!["a".into()],
        };
        let bytes = BincodeCodec::encode("say", Some(300), &say).unwrap();
        let decoded = BincodeCodec::decode_frame(Input::Binary(&bytes)).unwrap();
        assert_eq!(decoded.event, "say");
        assert_eq!(decoded.ack, Some(300));
        assert!(decoded.error.is_none());
        assert_eq!(decoded.payload.decode::<Say>().unwrap(), say);
        // A unit payload takes no bytes.
        let unit = BincodeCodec::encode("ping", None, &()).unwrap();
        let decoded = BincodeCodec::decode_frame(Input::Binary(&unit)).unwrap();
        decoded.payload.decode::<()>().unwrap();
    }

    #[test]
    fn an_error_reply_decodes_as_an_error_payload_even_without_an_event() {
        let error = ErrorPayload {
            code: ErrorCode::NoHandler,
            message: "none".into(),
            event: None,
        };
        let bytes = BincodeCodec::encode_error_reply(9, &error).unwrap();
        let decoded = BincodeCodec::decode_frame(Input::Binary(&bytes)).unwrap();
        assert_eq!(decoded.event, ACK_EVENT);
        assert_eq!(decoded.ack, Some(9));
        assert_eq!(
            decoded.error.unwrap().decode::<ErrorPayload>().unwrap(),
            error
        );
    }

    #[test]
    fn wrong_shapes_and_garbage_are_errors_not_panics() {
        let bytes = BincodeCodec::encode("say", None, &("x", 5u8)).unwrap();
        let decoded = BincodeCodec::decode_frame(Input::Binary(&bytes)).unwrap();
        assert!(decoded.payload.decode::<Say>().is_err());
        let longer = BincodeCodec::encode("say", None, &(1u8, 2u8)).unwrap();
        let decoded = BincodeCodec::decode_frame(Input::Binary(&longer)).unwrap();
        assert!(decoded.payload.decode::<u8>().is_err());
        for frame in [
            &b""[..],
            &[0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
            &[3, 0xff, 0xfe, 0xfd],
        ] {
            assert!(BincodeCodec::decode_frame(Input::Binary(frame)).is_err());
        }
        let huge = [0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(BincodePayload(&huge).decode::<String>().is_err());
    }
}
