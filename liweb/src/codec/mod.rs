//! Wire codecs: how a message `{event, payload}` becomes bytes and back.
//!
//! Each codec implements [`Codec`]. The dispatch code never names a codec: it
//! asks the connection's [`CodecKind`] to read an envelope ([`RawFrame`]: the
//! wire name and a still-encoded [`RawPayload`]) and to encode outbound
//! messages ([`Frame`]). A codec is a type implementing [`Codec`], a
//! [`CodecKind`] variant and a [`RawPayload`] variant, all in this module:
//! JSON always, MessagePack with the `msgpack` feature, bincode with the
//! `bincode` feature.

#[cfg(feature = "bincode")]
mod bincode;
mod depth;
mod format;
pub(crate) mod incoming;
mod json;
#[cfg(feature = "msgpack")]
mod msgpack;

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};

#[cfg(feature = "bincode")]
pub use self::bincode::{BincodeCodec, BincodePayload};
pub use self::depth::MAX_PAYLOAD_DEPTH;
pub use self::format::{Codec, Decoded, Input};
pub use self::json::{JsonCodec, JsonPayload};
#[cfg(feature = "msgpack")]
pub use self::msgpack::{MsgPackCodec, MsgPackPayload};
use crate::{
    error::{DecodeError, EncodeError},
    event::{Events, PayloadDecoder, PayloadOf},
    protocol::{ACK_EVENT, ErrorPayload},
};

/// An inbound frame as a transport hands it over, owning its bytes.
#[derive(Debug, Clone)]
pub(crate) enum InFrame {
    /// A text frame, UTF-8 checked by the transport.
    Text(Text),
    /// A binary frame.
    Binary(Bytes),
}

/// The text of a frame, checked as UTF-8 once, by the transport.
#[cfg(feature = "ws")]
pub(crate) type Text = tokio_tungstenite::tungstenite::Utf8Bytes;
/// The text of a frame, checked as UTF-8 once, by the transport.
#[cfg(not(feature = "ws"))]
pub(crate) type Text = String;

impl InFrame {
    /// A text frame of static text, without copying it where the transport's
    /// text type allows.
    pub(crate) fn from_static(text: &'static str) -> Self {
        #[cfg(feature = "ws")]
        let text = Text::from_static(text);
        #[cfg(not(feature = "ws"))]
        let text = Text::from(text);
        Self::Text(text)
    }

    pub(crate) fn input(&self) -> Input<'_> {
        match self {
            Self::Text(text) => Input::Text(text.as_str()),
            Self::Binary(bytes) => Input::Binary(bytes),
        }
    }

    pub(crate) fn is_text(&self) -> bool {
        matches!(self, Self::Text(_))
    }
}

/// The wire format of a connection, chosen at the upgrade through the
/// `Sec-WebSocket-Protocol` header ([`CodecKind::subprotocol`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum CodecKind {
    /// JSON text frames `{"event": name, "payload": value}` (liwebjs compatible).
    #[default]
    Json,
    /// MessagePack binary frames, a map `{"event": name, "payload": value}`
    /// (feature `msgpack`).
    #[cfg(feature = "msgpack")]
    MessagePack,
    /// bincode binary frames, Rust to Rust (feature `bincode`).
    #[cfg(feature = "bincode")]
    Bincode,
}

/// Encodes or decodes with the codec of a [`CodecKind`], by its type.
macro_rules! with_codec {
    ($kind:expr, $codec:ident => $body:expr) => {
        match $kind {
            CodecKind::Json => {
                type $codec = JsonCodec;
                $body
            }
            #[cfg(feature = "msgpack")]
            CodecKind::MessagePack => {
                type $codec = MsgPackCodec;
                $body
            }
            #[cfg(feature = "bincode")]
            CodecKind::Bincode => {
                type $codec = BincodeCodec;
                $body
            }
        }
    };
}

impl CodecKind {
    /// Every codec this build supports, JSON first.
    pub const ALL: &'static [CodecKind] = &[
        Self::Json,
        #[cfg(feature = "msgpack")]
        Self::MessagePack,
        #[cfg(feature = "bincode")]
        Self::Bincode,
    ];

    /// How many codecs exist; sizes the per-codec caches of a broadcast.
    pub(crate) const COUNT: usize = Self::ALL.len();

    pub(crate) const fn slot(self) -> usize {
        match self {
            Self::Json => 0,
            #[cfg(feature = "msgpack")]
            Self::MessagePack => 1,
            #[cfg(feature = "bincode")]
            Self::Bincode => 1 + cfg!(feature = "msgpack") as usize,
        }
    }

    /// Whether this codec's frames are text (else binary).
    pub const fn is_text(self) -> bool {
        with_codec!(self, C => C::TEXT)
    }

    /// The WebSocket subprotocol naming this codec: `liweb.json`,
    /// `liweb.msgpack` or `liweb.bincode`.
    pub const fn subprotocol(self) -> &'static str {
        with_codec!(self, C => C::SUBPROTOCOL)
    }

    /// The codec a subprotocol names, if this build supports it.
    pub fn from_subprotocol(name: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|codec| codec.subprotocol() == name)
    }

    /// Encodes one event.
    pub(crate) fn encode<E: Events>(self, event: &E) -> Result<Frame, EncodeError> {
        self.encode_parts(event.name(), None, &PayloadOf(event))
    }

    /// Encodes a message from its wire name, acknowledgement id and payload.
    pub(crate) fn encode_parts<P: Serialize + ?Sized>(
        self,
        name: &str,
        ack: Option<u64>,
        payload: &P,
    ) -> Result<Frame, EncodeError> {
        let bytes = with_codec!(self, C => C::encode(name, ack, payload))?;
        self.frame(bytes)
    }

    /// Encodes the error reply to request `ack`.
    pub(crate) fn encode_error_reply(
        self,
        ack: u64,
        error: &ErrorPayload,
    ) -> Result<Frame, EncodeError> {
        let bytes = with_codec!(self, C => C::encode_error_reply(ack, error))?;
        self.frame(bytes)
    }

    fn frame(self, bytes: Bytes) -> Result<Frame, EncodeError> {
        // A text frame is checked as UTF-8 here, once per message, not once
        // per recipient when the transport writes it.
        let data = if self.is_text() {
            FrameData::Text(text_from_bytes(bytes)?)
        } else {
            FrameData::Binary(bytes)
        };
        Ok(Frame { data })
    }

    /// Whether a frame may be a reply (`__ack`), looked at without decoding
    /// it: a bincode frame starts with its event name; the other codecs'
    /// frames are searched for the name, which is cheaper than reading them.
    /// JSON text may spell the name with `\u` escapes (`"\u005f_ack"`), so
    /// text with an escape is a possible reply too.
    pub(crate) fn may_be_reply(self, frame: Input<'_>) -> bool {
        match frame {
            Input::Text(text) => mentions_ack(text.as_bytes(), true),
            // The header's first field: a one-byte length, then the name.
            #[cfg(feature = "bincode")]
            Input::Binary(bytes) if self == Self::Bincode => {
                let name = ACK_EVENT.as_bytes();
                bytes.first() == Some(&(name.len() as u8))
                    && bytes.get(1..=name.len()) == Some(name)
            }
            Input::Binary(bytes) => mentions_ack(bytes, false),
        }
    }

    /// Reads the envelope of one inbound frame, leaving the payload undecoded.
    pub(crate) fn decode_frame(self, frame: Input<'_>) -> Result<RawFrame<'_>, DecodeError> {
        fn raw<'a, P>(decoded: Decoded<'a, P>, wrap: fn(P) -> RawPayload<'a>) -> RawFrame<'a> {
            RawFrame {
                event: decoded.event,
                payload: wrap(decoded.payload),
                ack: decoded.ack,
                error: decoded.error.map(wrap),
            }
        }
        match self {
            Self::Json => JsonCodec::decode_frame(frame).map(|d| raw(d, RawPayload::Json)),
            #[cfg(feature = "msgpack")]
            Self::MessagePack => {
                MsgPackCodec::decode_frame(frame).map(|d| raw(d, RawPayload::MessagePack))
            }
            #[cfg(feature = "bincode")]
            Self::Bincode => BincodeCodec::decode_frame(frame).map(|d| raw(d, RawPayload::Bincode)),
        }
    }
}

/// Whether `bytes` hold `__ack` (or, with `escapes`, a `\u` escape that may
/// spell it). Run on every inbound frame, so it is one SIMD pass for the two
/// bytes that can start either (`memchr2`); a frame without `_` or `\\` is
/// ruled out there, cheaper than any substring search.
fn mentions_ack(bytes: &[u8], escapes: bool) -> bool {
    let name = ACK_EVENT.as_bytes();
    memchr::memchr2_iter(b'_', b'\\', bytes).any(|at| match bytes[at] {
        b'_' => bytes[at..].starts_with(name),
        _ => escapes && bytes.get(at + 1) == Some(&b'u'),
    })
}

/// The envelope of an inbound message: the wire name and the payload, still
/// in its codec's format.
#[derive(Debug)]
pub(crate) struct RawFrame<'a> {
    pub(crate) event: Cow<'a, str>,
    pub(crate) payload: RawPayload<'a>,
    pub(crate) ack: Option<u64>,
    pub(crate) error: Option<RawPayload<'a>>,
}

/// A payload not yet decoded, borrowed from the frame it arrived in.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum RawPayload<'a> {
    /// A JSON value (`null` when the frame had no `payload`).
    Json(JsonPayload<'a>),
    /// A MessagePack value (`nil` when the frame had no `payload`).
    #[cfg(feature = "msgpack")]
    MessagePack(MsgPackPayload<'a>),
    /// A bincode value (no bytes for a unit payload).
    #[cfg(feature = "bincode")]
    Bincode(BincodePayload<'a>),
}

impl PayloadDecoder for RawPayload<'_> {
    type Error = DecodeError;

    fn decode<T: DeserializeOwned>(self) -> Result<T, DecodeError> {
        match self {
            Self::Json(payload) => payload.decode(),
            #[cfg(feature = "msgpack")]
            Self::MessagePack(payload) => payload.decode(),
            #[cfg(feature = "bincode")]
            Self::Bincode(payload) => payload.decode(),
        }
    }
}

/// An encoded outbound message, shared by every connection it goes to:
/// what a transport writes for [`Outbound::Frame`](crate::transport::Outbound::Frame).
#[derive(Clone)]
pub struct Frame {
    pub(crate) data: FrameData,
}

/// The bytes of a [`Frame`], in the form its transport writes them.
#[derive(Clone)]
pub(crate) enum FrameData {
    /// A text frame, already checked as UTF-8.
    Text(Text),
    /// A binary frame.
    Binary(Bytes),
}

impl Frame {
    pub(crate) fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.data {
            FrameData::Text(text) => text.as_bytes(),
            FrameData::Binary(bytes) => bytes,
        }
    }

    /// Whether it is a text frame.
    pub fn is_text(&self) -> bool {
        matches!(self.data, FrameData::Text(_))
    }

    /// A text frame of bytes that arrived as text; `None` when they are not
    /// UTF-8.
    #[cfg_attr(not(feature = "client"), allow(dead_code))]
    pub(crate) fn text_from_bytes(bytes: Bytes) -> Option<Self> {
        let text = text_from_bytes(bytes).ok()?;
        Some(Self {
            data: FrameData::Text(text),
        })
    }

    /// A binary frame.
    #[cfg_attr(not(feature = "client"), allow(dead_code))]
    pub(crate) fn binary(bytes: Bytes) -> Self {
        Self {
            data: FrameData::Binary(bytes),
        }
    }

    /// The frame as a codec reads it.
    #[cfg_attr(not(feature = "client"), allow(dead_code))]
    pub(crate) fn input(&self) -> Input<'_> {
        match &self.data {
            FrameData::Text(text) => Input::Text(text.as_str()),
            FrameData::Binary(bytes) => Input::Binary(bytes),
        }
    }

    /// A JSON text frame from bytes another node encoded.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn json(bytes: Bytes) -> Result<Self, EncodeError> {
        Ok(Self {
            data: FrameData::Text(text_from_bytes(bytes)?),
        })
    }

    /// The encoded bytes, owned (without copying them).
    pub fn into_bytes(self) -> Bytes {
        match self.data {
            FrameData::Text(text) => Bytes::from(text),
            FrameData::Binary(bytes) => bytes,
        }
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("bytes", &Bytes::copy_from_slice(self.as_bytes()))
            .field("text", &self.is_text())
            .finish()
    }
}

#[cfg(feature = "ws")]
pub(crate) fn text_from_bytes(bytes: Bytes) -> Result<Text, EncodeError> {
    Text::try_from(bytes).map_err(EncodeError::new)
}

#[cfg(not(feature = "ws"))]
pub(crate) fn text_from_bytes(bytes: Bytes) -> Result<Text, EncodeError> {
    String::from_utf8(bytes.to_vec()).map_err(EncodeError::new)
}

/// Encodes one outbound message at most once per codec, on first need: a
/// broadcast to connections of several codecs serializes once for each codec
/// in use, never once per connection.
///
/// A codec that cannot encode the message (bincode and a `#[serde(flatten)]`
/// payload, say) fails for its own connections only: a broadcast skips them,
/// still reaches the connections of the other codecs, and reports the
/// failure at the end with [`finish`](Self::finish).
pub(crate) struct EncodeOnce<F> {
    encode: F,
    frames: [Slot; CodecKind::COUNT],
}

#[derive(Default)]
enum Slot {
    #[default]
    Empty,
    Ready(Frame),
    Failed(EncodeError),
}

impl<F: FnMut(CodecKind) -> Result<Frame, EncodeError>> EncodeOnce<F> {
    pub(crate) fn new(encode: F) -> Self {
        Self {
            encode,
            frames: Default::default(),
        }
    }

    /// The message in `codec`'s format; a failure is remembered, so the
    /// codec is not asked again.
    pub(crate) fn get(&mut self, codec: CodecKind) -> Result<&Frame, EncodeError> {
        let slot = &mut self.frames[codec.slot()];
        if let Slot::Empty = slot {
            *slot = match (self.encode)(codec) {
                Ok(frame) => Slot::Ready(frame),
                Err(err) => Slot::Failed(err),
            };
        }
        match slot {
            Slot::Ready(frame) => Ok(frame),
            Slot::Failed(err) => Err(err.again()),
            Slot::Empty => unreachable!("filled above"),
        }
    }

    /// `Ok(sent)` when every codec asked for could encode the message, else
    /// the error of one that could not.
    pub(crate) fn finish(&self, sent: usize) -> Result<usize, EncodeError> {
        match self.frames.iter().find_map(|slot| match slot {
            Slot::Failed(err) => Some(err.again()),
            _ => None,
        }) {
            Some(err) => Err(err),
            None => Ok(sent),
        }
    }
}

#[cfg(test)]
mod tests;
