//! The [`Codec`] trait a wire format implements, and what it reads.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Serialize;

use crate::{
    error::{DecodeError, EncodeError},
    event::PayloadDecoder,
    protocol::ErrorPayload,
};

/// A wire format for liweb messages.
pub trait Codec: Send + Sync + 'static {
    /// The WebSocket subprotocol that selects this codec.
    const SUBPROTOCOL: &'static str;
    /// Whether frames are text (UTF-8) rather than binary.
    const TEXT: bool;
    /// A payload still in this codec's format, borrowed from its frame.
    type Payload<'a>: PayloadDecoder<Error = DecodeError> + Copy;

    /// Reads one frame's envelope: the wire name, the acknowledgement id and
    /// the undecoded payload (and error, for an error reply).
    fn decode_frame(frame: Input<'_>) -> Result<Decoded<'_, Self::Payload<'_>>, DecodeError>;

    /// Encodes one message from its wire name, acknowledgement id and payload.
    fn encode<P: Serialize + ?Sized>(
        name: &str,
        ack: Option<u64>,
        payload: &P,
    ) -> Result<Bytes, EncodeError>;

    /// Encodes the error reply to the request with acknowledgement id `ack`.
    fn encode_error_reply(ack: u64, error: &ErrorPayload) -> Result<Bytes, EncodeError>;
}

/// An inbound envelope as a [`Codec`] reads it.
#[derive(Debug)]
pub struct Decoded<'a, P> {
    /// The wire name.
    pub event: Cow<'a, str>,
    /// The payload, still encoded (null when absent).
    pub payload: P,
    /// The acknowledgement id: on a request, the id its reply must carry;
    /// on a reply (`__ack`), the id of the request it answers.
    pub ack: Option<u64>,
    /// On an error reply, the error, still encoded.
    pub error: Option<P>,
}

/// One inbound frame as a codec reads it. Text frames come already checked
/// as UTF-8 by the transport, so a text codec need not check them again.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// A text frame.
    Text(&'a str),
    /// A binary frame.
    Binary(&'a [u8]),
}
