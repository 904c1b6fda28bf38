//! The items a transport exchanges with its connection: [`Inbound`] from
//! the peer, [`Outbound`] to it. A leaf: the connection's queue and the
//! session name them, and so do the transports and the Rust client.

use bytes::Bytes;

pub use crate::codec::Frame;
use crate::{
    codec::{FrameData, InFrame},
    protocol::CloseCode,
};

/// One item a transport hands over to its connection: what the peer sent,
/// already reduced to what liweb needs.
#[derive(Debug)]
#[non_exhaustive]
pub enum Inbound {
    /// A data frame holding one message.
    Frame(InboundFrame),
    /// The peer's close, with its code and reason if it gave them.
    Close(Option<(CloseCode, String)>),
    /// The answer to a heartbeat ping ([`Outbound::Ping`]).
    Pong,
    /// A protocol violation: the connection is closed with this code and
    /// reason, and nothing more is read.
    Error(CloseCode, String),
    /// The transport broke (reset, I/O error); nothing more can be sent.
    Reset(String),
}

/// What a connection asks its transport to write.
#[derive(Debug)]
#[non_exhaustive]
pub enum Outbound {
    /// One message, encoded in the connection's codec.
    Frame(Frame),
    /// A heartbeat ping; the peer answers with a pong ([`Inbound::Pong`]).
    Ping,
    /// A close with a code and a reason (at most 123 bytes); the last item.
    Close(CloseCode, String),
}

/// An inbound data frame: one message, text or binary.
#[derive(Debug, Clone)]
pub struct InboundFrame(pub(crate) InFrame);

impl InboundFrame {
    /// A text frame.
    #[cfg_attr(
        not(feature = "ws"),
        expect(
            clippy::useless_conversion,
            reason = "the transport's text type is `String` only without `ws`"
        )
    )]
    pub fn text(text: String) -> Self {
        Self(InFrame::Text(text.into()))
    }

    /// A text frame from bytes, checked as UTF-8 (without copying them when
    /// the `ws` feature is on); `None` when they are not UTF-8.
    pub fn text_from_utf8(bytes: Bytes) -> Option<Self> {
        crate::codec::text_from_bytes(bytes)
            .ok()
            .map(|text| Self(InFrame::Text(text)))
    }

    /// A binary frame.
    pub fn binary(bytes: Bytes) -> Self {
        Self(InFrame::Binary(bytes))
    }

    /// Whether it is a text frame.
    pub fn is_text(&self) -> bool {
        self.0.is_text()
    }

    /// The frame a message encoded for sending becomes when it arrives: what
    /// the Rust client hands its transport.
    #[cfg_attr(not(feature = "client"), allow(dead_code))]
    pub(crate) fn from_frame(frame: Frame) -> Self {
        Self(match frame.data {
            FrameData::Text(text) => InFrame::Text(text),
            FrameData::Binary(bytes) => InFrame::Binary(bytes),
        })
    }

    /// The frame's bytes as an outbound [`Frame`], for a transport that
    /// writes what the Rust client sends.
    #[cfg_attr(not(feature = "client"), allow(dead_code))]
    pub(crate) fn into_frame(self) -> Frame {
        Frame {
            data: match self.0 {
                InFrame::Text(text) => FrameData::Text(text),
                InFrame::Binary(bytes) => FrameData::Binary(bytes),
            },
        }
    }
}
