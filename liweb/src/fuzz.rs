//! Entry points for the fuzz targets in the repository's `fuzz/` crate.
//!
//! **Not public API**: hidden from the docs, exempt from semver, and may
//! change in any release. Each function is a thin wrapper around the crate's
//! own code path, so the fuzzers exercise exactly what a connection runs and
//! no logic is duplicated for them.

use crate::codec::{CodecKind, Decoded, Input, RawPayload};
use crate::error::DecodeError;

/// Reads the envelope of one inbound frame as the server's dispatch does
/// (`CodecKind::decode_frame`), leaving the payload undecoded.
pub fn decode_frame(
    codec: CodecKind,
    frame: Input<'_>,
) -> Result<Decoded<'_, RawPayload<'_>>, DecodeError> {
    codec.decode_frame(frame).map(|raw| Decoded {
        event: raw.event,
        payload: raw.payload,
        ack: raw.ack,
        error: raw.error,
    })
}

/// Whether the connection loop would look at `frame` as a possible reply
/// (`__ack`) before queueing it behind a running handler.
pub fn may_be_reply(codec: CodecKind, frame: Input<'_>) -> bool {
    codec.may_be_reply(frame)
}

/// The TCP transport's frame decoder and encoder (feature `tcp`).
#[cfg(feature = "tcp")]
pub mod tcp {
    use bytes::{Bytes, BytesMut};
    use tokio_util::codec::Decoder;

    use crate::tcp::wire::{self, WireCodec, WireOut};

    /// One frame as the TCP decoder reads it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Frame {
        /// `HELLO` with its codec name.
        Hello(Bytes),
        /// `MESSAGE` with its body.
        Message(Bytes),
        /// `PING`.
        Ping,
        /// `PONG`.
        Pong,
        /// `CLOSE` with its code and reason, if it had a code.
        Close(Option<(u16, String)>),
    }

    /// Why the TCP decoder refused the input.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Error {
        /// A length over the maximum (the maximum is given).
        TooLarge(usize),
        /// The input ended inside a frame.
        Truncated,
        /// An empty frame or an unknown kind.
        Malformed(String),
        /// Any other failure.
        Io(String),
    }

    /// The decoder a TCP connection reads its frames with.
    #[derive(Debug)]
    pub struct FrameDecoder(WireCodec);

    impl FrameDecoder {
        /// A decoder accepting messages of at most `max` bytes.
        pub fn new(max: usize) -> Self {
            Self(WireCodec::new(max))
        }

        /// Reads the next frame from `src`, `Ok(None)` when more input is needed.
        pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, Error> {
            self.0
                .decode(src)
                .map(|frame| frame.map(from_wire))
                .map_err(from_error)
        }

        /// Reads the next frame at the end of the input.
        pub fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, Error> {
            self.0
                .decode_eof(src)
                .map(|frame| frame.map(from_wire))
                .map_err(from_error)
        }

        /// Writes `frame` as the transport writes it. A `CLOSE` without a
        /// code is not something liweb writes, so it is refused.
        pub fn encode(&self, frame: &Frame, dst: &mut BytesMut) -> std::io::Result<()> {
            let item = match frame {
                Frame::Hello(name) => {
                    WireOut::Hello(std::str::from_utf8(name).map_err(std::io::Error::other)?)
                }
                Frame::Message(body) => WireOut::Message(body),
                Frame::Ping => WireOut::Ping,
                Frame::Pong => WireOut::Pong,
                Frame::Close(Some((code, reason))) => WireOut::Close(*code, reason),
                Frame::Close(None) => {
                    return Err(std::io::Error::other(
                        "liweb writes no CLOSE without a code",
                    ));
                }
            };
            self.0.write(item, dst)
        }
    }

    fn from_wire(frame: wire::WireFrame) -> Frame {
        match frame {
            wire::WireFrame::Hello(name) => Frame::Hello(name),
            wire::WireFrame::Message(body) => Frame::Message(body),
            wire::WireFrame::Ping => Frame::Ping,
            wire::WireFrame::Pong => Frame::Pong,
            wire::WireFrame::Close(close) => Frame::Close(close),
        }
    }

    fn from_error(error: wire::FrameError) -> Error {
        match error {
            wire::FrameError::TooLarge(max) => Error::TooLarge(max),
            wire::FrameError::Truncated => Error::Truncated,
            wire::FrameError::Malformed(message) => Error::Malformed(message),
            wire::FrameError::Io(err) => Error::Io(err.to_string()),
        }
    }
}
