//! An inbound frame whose envelope has been read: decoded once, when it
//! arrives, and carried as it is to the handlers (through the middleware
//! chain, if any), which decode the payload straight from the frame.

use std::{borrow::Cow, ops::Range};

use super::{CodecKind, InFrame, RawPayload, json::JsonPayload};
use crate::error::DecodeError;

/// One inbound message: the frame it arrived in, its wire name and
/// acknowledgement id, and where in the frame its payload (and, for an
/// error reply, its error) is.
#[derive(Debug, Clone)]
pub(crate) struct Incoming {
    frame: InFrame,
    codec: CodecKind,
    event: Name,
    ack: Option<u64>,
    /// `None`: the frame has no payload (the codec's null stands in).
    payload: Option<Range<usize>>,
    /// Only on an error reply: `Some(None)` for an error without bytes in
    /// the frame (not produced by the codecs, kept for completeness).
    error: Option<Option<Range<usize>>>,
}

/// The wire name: where it is in the frame, or a copy when the codec had to
/// unescape it.
#[derive(Debug, Clone)]
enum Name {
    At(Range<usize>),
    Owned(Box<str>),
}

impl Incoming {
    /// Reads the envelope of `frame` in `codec`'s format, leaving the
    /// payload undecoded.
    pub(crate) fn decode(codec: CodecKind, frame: InFrame) -> Result<Self, DecodeError> {
        let raw = codec.decode_frame(frame.input())?;
        let bytes = input_bytes(&frame);
        let event = match &raw.event {
            Cow::Borrowed(name) => match span(bytes, name.as_bytes()) {
                Some(at) => Name::At(at),
                None => Name::Owned((*name).into()),
            },
            Cow::Owned(name) => Name::Owned(name.as_str().into()),
        };
        let payload = span(bytes, payload_bytes(&raw.payload));
        let error = raw.error.map(|error| span(bytes, payload_bytes(&error)));
        let ack = raw.ack;
        drop(raw);
        Ok(Self {
            frame,
            codec,
            event,
            ack,
            payload,
            error,
        })
    }

    /// The wire name.
    pub(crate) fn event(&self) -> &str {
        match &self.event {
            // The range was cut from a `&str` of this very frame, so it lies
            // on character boundaries and is UTF-8.
            Name::At(at) => {
                std::str::from_utf8(&input_bytes(&self.frame)[at.clone()]).unwrap_or_default()
            }
            Name::Owned(name) => name,
        }
    }

    /// The acknowledgement id: on a request, the id its reply must carry; on
    /// a reply (`__ack`), the id of the request it answers.
    pub(crate) fn ack(&self) -> Option<u64> {
        self.ack
    }

    /// The payload, still encoded.
    pub(crate) fn payload(&self) -> RawPayload<'_> {
        self.part(self.payload.clone())
    }

    /// On an error reply, the error, still encoded.
    pub(crate) fn error(&self) -> Option<RawPayload<'_>> {
        self.error.clone().map(|at| self.part(at))
    }

    /// The frame's length in bytes.
    pub(crate) fn len(&self) -> usize {
        input_bytes(&self.frame).len()
    }

    fn part(&self, at: Option<Range<usize>>) -> RawPayload<'_> {
        let bytes = at.map(|at| &input_bytes(&self.frame)[at]);
        match self.codec {
            CodecKind::Json => RawPayload::Json(match bytes {
                Some(bytes) => {
                    JsonPayload::from_json_text(std::str::from_utf8(bytes).unwrap_or("null"))
                }
                None => JsonPayload::from_json_text("null"),
            }),
            #[cfg(feature = "msgpack")]
            CodecKind::MessagePack => RawPayload::MessagePack(super::MsgPackPayload::new(
                bytes.unwrap_or(super::msgpack::NIL),
            )),
            #[cfg(feature = "bincode")]
            CodecKind::Bincode => {
                RawPayload::Bincode(super::BincodePayload::new(bytes.unwrap_or_default()))
            }
        }
    }
}

fn input_bytes(frame: &InFrame) -> &[u8] {
    match frame {
        InFrame::Text(text) => text.as_str().as_bytes(),
        InFrame::Binary(bytes) => bytes,
    }
}

fn payload_bytes<'a>(payload: &RawPayload<'a>) -> &'a [u8] {
    match payload {
        RawPayload::Json(payload) => payload.as_str().as_bytes(),
        #[cfg(feature = "msgpack")]
        RawPayload::MessagePack(payload) => payload.as_bytes(),
        #[cfg(feature = "bincode")]
        RawPayload::Bincode(payload) => payload.as_bytes(),
    }
}

/// Where `part` lies within `whole`, when it is a slice of it; `None` for a
/// slice of something else (a codec's static null).
fn span(whole: &[u8], part: &[u8]) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= whole.len()).then_some(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::PayloadDecoder;

    fn json(text: &'static str) -> Incoming {
        Incoming::decode(CodecKind::Json, InFrame::from_static(text)).unwrap()
    }

    #[test]
    fn a_json_envelope_is_read_once_and_its_parts_found_again() {
        let incoming = json(r#"{"event":"chat:message","payload":{"text":"hi"},"ack":7}"#);
        assert_eq!(incoming.event(), "chat:message");
        assert_eq!(incoming.ack(), Some(7));
        let payload: serde_json::Value = incoming.payload().decode().unwrap();
        assert_eq!(payload, serde_json::json!({"text": "hi"}));
        assert!(incoming.error().is_none());
    }

    #[test]
    fn a_missing_payload_reads_as_null_and_an_escaped_name_is_unescaped() {
        let incoming = json(r#"{"event":"\u005f_ack","ack":3,"error":{"code":"x"}}"#);
        assert_eq!(incoming.event(), "__ack");
        assert_eq!(incoming.payload().decode::<()>().ok(), Some(()));
        let error: serde_json::Value = incoming.error().unwrap().decode().unwrap();
        assert_eq!(error, serde_json::json!({"code": "x"}));
    }

    #[test]
    fn a_bad_envelope_is_an_error() {
        let err = Incoming::decode(CodecKind::Json, InFrame::from_static("[1]")).unwrap_err();
        assert!(!err.to_string().is_empty());
    }

    #[cfg(any(feature = "msgpack", feature = "bincode"))]
    #[test]
    fn binary_envelopes_keep_their_payload_in_place() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Say {
            text: String,
        }
        for codec in CodecKind::ALL
            .iter()
            .copied()
            .filter(|codec| !codec.is_text())
        {
            let frame = codec
                .encode_parts("say", Some(9), &Say { text: "hi".into() })
                .unwrap();
            let incoming = Incoming::decode(codec, InFrame::Binary(frame.into_bytes())).unwrap();
            assert_eq!(incoming.event(), "say", "{codec:?}");
            assert_eq!(incoming.ack(), Some(9), "{codec:?}");
            assert_eq!(
                incoming.payload().decode::<Say>().unwrap(),
                Say { text: "hi".into() },
                "{codec:?}"
            );
            let unit = codec.encode_parts("ping", None, &()).unwrap();
            let incoming = Incoming::decode(codec, InFrame::Binary(unit.into_bytes())).unwrap();
            assert_eq!(
                incoming.payload().decode::<()>().ok(),
                Some(()),
                "{codec:?}"
            );
        }
    }
}
