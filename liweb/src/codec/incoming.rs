//! An inbound frame whose envelope has been read: decoded once, when it
//! arrives, and carried as it is to the handlers (through the middleware
//! chain, if any), which decode the payload straight from the frame.

use std::{borrow::Cow, ops::Range};

use super::{CodecKind, InFrame, RawPayload, json::JsonPayload};
use crate::{
    error::DecodeError,
    protocol::{ACK_EVENT, AUTH_EVENT},
};

/// One inbound message: the frame it arrived in, its wire name and
/// acknowledgement id, and where in the frame its payload (and, for an
/// error reply, its error) is.
///
/// Kept small (positions as `u32`), because it is moved from the reader to
/// the queue of frames waiting their turn and into the dispatch.
#[derive(Debug, Clone)]
pub(crate) struct Incoming {
    frame: InFrame,
    ack: Option<u64>,
    /// The wire name's place in the frame, or [`Span::NONE`] when the codec
    /// had to unescape it into `owned_event`.
    event: Span,
    owned_event: Option<Box<str>>,
    /// [`Span::NONE`]: the frame has no payload (the codec's null stands in).
    payload: Span,
    /// Only on an error reply: the error's place.
    error: Span,
    codec: CodecKind,
    /// Which reserved event it is, found while the name was at hand.
    reserved: Reserved,
}

/// The reserved inbound events the dispatch routes by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reserved {
    /// `__ack`: a reply to one of the server's requests.
    Ack,
    /// `__auth`: credentials.
    Auth,
    /// An application event.
    None,
}

impl Reserved {
    /// Which reserved event the wire name `event` is.
    pub(crate) fn of(event: &str) -> Self {
        match event {
            ACK_EVENT => Self::Ack,
            AUTH_EVENT => Self::Auth,
            _ => Self::None,
        }
    }
}

/// A part's place in its frame; frames are far below 4 GiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// No part: absent, or not a slice of the frame.
    const NONE: Self = Self {
        start: u32::MAX,
        end: u32::MAX,
    };

    /// Where `part` lies within `whole`, when it is a slice of it; `NONE`
    /// for a slice of something else (a codec's static null).
    fn of(whole: &[u8], part: &[u8]) -> Self {
        let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize);
        let at = start.and_then(|start| Some((start, start.checked_add(part.len())?)));
        match at {
            Some((start, end)) if end <= whole.len() => {
                match (u32::try_from(start), u32::try_from(end)) {
                    (Ok(start), Ok(end)) if end < u32::MAX => Self { start, end },
                    _ => Self::NONE,
                }
            }
            _ => Self::NONE,
        }
    }

    #[inline]
    fn range(self) -> Option<Range<usize>> {
        (self != Self::NONE).then_some(self.start as usize..self.end as usize)
    }
}

impl Incoming {
    /// Reads the envelope of `frame` in `codec`'s format, leaving the
    /// payload undecoded.
    pub(crate) fn decode(codec: CodecKind, frame: InFrame) -> Result<Self, DecodeError> {
        let raw = codec.decode_frame(frame.input())?;
        let bytes = input_bytes(&frame);
        let (event, owned_event) = match &raw.event {
            Cow::Borrowed(name) => match Span::of(bytes, name.as_bytes()) {
                Span::NONE => (Span::NONE, Some((*name).into())),
                at => (at, None),
            },
            Cow::Owned(name) => (Span::NONE, Some(name.as_str().into())),
        };
        let payload = Span::of(bytes, payload_bytes(&raw.payload));
        let error = match &raw.error {
            Some(error) => match Span::of(bytes, payload_bytes(error)) {
                // The codecs borrow an error from its frame; one that is not
                // could not be read back from the frame, so it is refused.
                Span::NONE => {
                    return Err(DecodeError::frame(
                        "the error reply's error is not in its frame",
                    ));
                }
                at => at,
            },
            None => Span::NONE,
        };
        let reserved = Reserved::of(&raw.event);
        let ack = raw.ack;
        drop(raw);
        Ok(Self {
            frame,
            ack,
            event,
            owned_event,
            payload,
            error,
            codec,
            reserved,
        })
    }

    /// Which reserved event it is, if any.
    #[inline]
    pub(crate) fn reserved(&self) -> Reserved {
        self.reserved
    }

    /// The wire name.
    #[inline]
    pub(crate) fn event(&self) -> &str {
        if let Some(name) = &self.owned_event {
            return name;
        }
        let at = self.event.range().unwrap_or_default();
        // The range was cut from a `&str` of this very frame, so it lies on
        // character boundaries: slicing a text frame checks only them, and a
        // binary frame's few name bytes are checked again.
        match &self.frame {
            InFrame::Text(text) => text.as_str().get(at).unwrap_or_default(),
            InFrame::Binary(bytes) => {
                std::str::from_utf8(bytes.get(at).unwrap_or_default()).unwrap_or_default()
            }
        }
    }

    /// The acknowledgement id: on a request, the id its reply must carry; on
    /// a reply (`__ack`), the id of the request it answers.
    #[inline]
    pub(crate) fn ack(&self) -> Option<u64> {
        self.ack
    }

    /// The payload, still encoded.
    #[inline]
    pub(crate) fn payload(&self) -> RawPayload<'_> {
        self.part(self.payload.range())
    }

    /// On an error reply, the error, still encoded.
    pub(crate) fn error(&self) -> Option<RawPayload<'_>> {
        let at = self.error.range()?;
        Some(self.part(Some(at)))
    }

    /// The frame's length in bytes.
    pub(crate) fn len(&self) -> usize {
        input_bytes(&self.frame).len()
    }

    #[inline]
    fn part(&self, at: Option<Range<usize>>) -> RawPayload<'_> {
        match self.codec {
            // JSON arrives in text frames only (`dispatch` refuses the other
            // kind first), so its parts are slices of checked text.
            CodecKind::Json => {
                let text = match (&self.frame, at) {
                    (InFrame::Text(text), Some(at)) => text.as_str().get(at),
                    _ => None,
                };
                RawPayload::Json(JsonPayload::from_json_text(text.unwrap_or("null")))
            }
            #[cfg(feature = "msgpack")]
            CodecKind::MessagePack => RawPayload::MessagePack(super::MsgPackPayload::new(
                self.bytes(at).unwrap_or(super::msgpack::NIL),
            )),
            #[cfg(feature = "bincode")]
            CodecKind::Bincode => RawPayload::Bincode(super::BincodePayload::new(
                self.bytes(at).unwrap_or_default(),
            )),
        }
    }

    /// The bytes of a part of a binary frame.
    #[cfg(any(feature = "msgpack", feature = "bincode"))]
    fn bytes(&self, at: Option<Range<usize>>) -> Option<&[u8]> {
        input_bytes(&self.frame).get(at?)
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
    fn a_part_outside_the_frame_has_no_span() {
        let whole = b"abcdef";
        assert_eq!(Span::of(whole, &whole[1..3]).range(), Some(1..3));
        assert_eq!(Span::of(whole, b"zz"), Span::NONE);
        assert_eq!(Span::of(&whole[2..], &whole[..2]), Span::NONE);
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
