//! The TCP wire format: length-prefixed frames with a kind byte, shared
//! by the server's TCP transport and the Rust client.

use std::io;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, LengthDelimitedCodec};

pub(crate) const HELLO: u8 = 1;
pub(crate) const MESSAGE: u8 = 2;
pub(crate) const PING: u8 = 3;
pub(crate) const PONG: u8 = 4;
pub(crate) const CLOSE: u8 = 5;

/// Close code for a refusal at the connection limit: "try again later".
pub(crate) const TRY_AGAIN_LATER: u16 = 1013;

/// One decoded frame.
#[derive(Debug)]
pub(crate) enum WireFrame {
    Hello(Bytes),
    Message(Bytes),
    Ping,
    Pong,
    Close(Option<(u16, String)>),
}

/// Why a frame could not be read.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// The length prefix is over the maximum; nothing of the frame was read.
    TooLarge(usize),
    /// The stream ended inside a frame.
    Truncated,
    /// An empty frame, or an unknown kind.
    Malformed(String),
    /// The socket failed.
    Io(io::Error),
}

impl From<io::Error> for FrameError {
    fn from(err: io::Error) -> Self {
        Self::Io(err)
    }
}

/// One item to write.
#[derive(Debug)]
pub(crate) enum WireOut<'a> {
    Hello(&'a str),
    Message(&'a [u8]),
    Ping,
    /// Only clients answer pings.
    #[cfg_attr(not(feature = "client"), allow(dead_code))]
    Pong,
    Close(u16, &'a str),
}

/// Length-prefixed frames with a kind byte; `max` is the largest
/// message body it reads.
#[derive(Debug)]
pub(crate) struct WireCodec {
    lengths: LengthDelimitedCodec,
    max: usize,
    /// Whether a length has been read whose frame has not: the inner
    /// codec consumes the 4 length bytes first, so an input that ends
    /// there leaves nothing behind to show it was cut.
    in_frame: bool,
}

impl WireCodec {
    pub(crate) fn new(max: usize) -> Self {
        let lengths = LengthDelimitedCodec::builder()
            .length_field_length(4)
            .max_frame_length(max.saturating_add(1))
            .new_codec();
        Self {
            lengths,
            max,
            in_frame: false,
        }
    }

    pub(crate) fn write(&self, item: WireOut<'_>, dst: &mut BytesMut) -> io::Result<()> {
        let (kind, head, body): (u8, Option<u16>, &[u8]) = match item {
            WireOut::Hello(name) => (HELLO, None, name.as_bytes()),
            WireOut::Message(bytes) => (MESSAGE, None, bytes),
            WireOut::Ping => (PING, None, &[]),
            WireOut::Pong => (PONG, None, &[]),
            WireOut::Close(code, reason) => (CLOSE, Some(code), reason.as_bytes()),
        };
        let len = 1 + head.map_or(0, |_| 2) + body.len();
        let len = u32::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame longer than 4 GiB"))?;
        dst.reserve(4 + len as usize);
        dst.put_u32(len);
        dst.put_u8(kind);
        if let Some(code) = head {
            dst.put_u16(code);
        }
        dst.extend_from_slice(body);
        Ok(())
    }
}

impl Decoder for WireCodec {
    type Item = WireFrame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<WireFrame>, FrameError> {
        let before = src.len();
        let frame = match self.lengths.decode(src) {
            Ok(Some(frame)) => {
                self.in_frame = false;
                frame
            }
            Ok(None) => {
                self.in_frame |= src.len() < before;
                return Ok(None);
            }
            Err(err)
                if err.get_ref().is_some_and(|inner| {
                    inner.is::<tokio_util::codec::LengthDelimitedCodecError>()
                }) =>
            {
                return Err(FrameError::TooLarge(self.max));
            }
            Err(err) => return Err(FrameError::Io(err)),
        };
        let mut frame = frame.freeze();
        if frame.is_empty() {
            return Err(FrameError::Malformed("empty frame".to_owned()));
        }
        let kind = frame.get_u8();
        // Bodies the format does not allow are refused rather than
        // dropped: a peer that sends them does not speak this protocol.
        Ok(Some(match kind {
            HELLO => WireFrame::Hello(frame),
            MESSAGE => WireFrame::Message(frame),
            PING | PONG if !frame.is_empty() => {
                let name = if kind == PING { "PING" } else { "PONG" };
                return Err(FrameError::Malformed(format!("a {name} frame has no body")));
            }
            PING => WireFrame::Ping,
            PONG => WireFrame::Pong,
            CLOSE if frame.len() >= 2 => {
                let code = frame.get_u16();
                WireFrame::Close(Some((code, String::from_utf8_lossy(&frame).into_owned())))
            }
            CLOSE if frame.is_empty() => WireFrame::Close(None),
            CLOSE => {
                return Err(FrameError::Malformed(
                    "a CLOSE body is a 2-byte code and a reason".to_owned(),
                ));
            }
            other => {
                return Err(FrameError::Malformed(format!(
                    "unknown frame kind {other:#04x}"
                )));
            }
        }))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<WireFrame>, FrameError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() && !self.in_frame => Ok(None),
            None => Err(FrameError::Truncated),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use tokio_util::codec::Decoder;

    use super::{FrameError, WireCodec, WireFrame, WireOut};

    fn written(item: WireOut<'_>) -> BytesMut {
        let mut buf = BytesMut::new();
        WireCodec::new(16).write(item, &mut buf).unwrap();
        buf
    }

    #[test]
    fn frames_are_a_length_a_kind_and_a_body() {
        assert_eq!(&written(WireOut::Ping)[..], [0, 0, 0, 1, 3]);
        assert_eq!(
            &written(WireOut::Message(b"hi"))[..],
            [0, 0, 0, 3, 2, b'h', b'i']
        );
        assert_eq!(
            &written(WireOut::Close(1009, "big"))[..],
            [0, 0, 0, 6, 5, 0x03, 0xf1, b'b', b'i', b'g']
        );
        let mut codec = WireCodec::new(16);
        let mut buf = written(WireOut::Hello("liweb.json"));
        buf.extend_from_slice(&written(WireOut::Close(4006, "ping timeout")));
        buf.extend_from_slice(&written(WireOut::Pong));
        assert!(
            matches!(codec.decode(&mut buf), Ok(Some(WireFrame::Hello(name))) if name == "liweb.json")
        );
        assert!(matches!(
            codec.decode(&mut buf),
            Ok(Some(WireFrame::Close(Some((4006, reason))))) if reason == "ping timeout"
        ));
        assert!(matches!(codec.decode(&mut buf), Ok(Some(WireFrame::Pong))));
        assert!(matches!(codec.decode(&mut buf), Ok(None)));
    }

    #[test]
    fn the_limit_is_checked_from_the_length_alone() {
        let mut codec = WireCodec::new(16);
        // 16 bytes of message and the kind byte: the largest frame.
        let mut buf = written(WireOut::Message(&[b'x'; 16]));
        assert!(matches!(codec.decode(&mut buf), Ok(Some(WireFrame::Message(m))) if m.len() == 16));
        let mut buf = BytesMut::from(&18u32.to_be_bytes()[..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(FrameError::TooLarge(16))
        ));
    }

    #[test]
    fn a_frame_cut_by_the_end_of_the_stream_is_truncated() {
        let mut codec = WireCodec::new(16);
        let mut buf = BytesMut::from(&[0, 0, 0, 5, 2, b'{'][..]);
        assert!(matches!(codec.decode(&mut buf), Ok(None)));
        assert!(matches!(
            codec.decode_eof(&mut buf),
            Err(FrameError::Truncated)
        ));
        // Between frames, the end of the stream is a clean end.
        let mut codec = WireCodec::new(16);
        assert!(matches!(codec.decode_eof(&mut BytesMut::new()), Ok(None)));
        let mut buf = written(WireOut::Ping);
        assert!(matches!(
            codec.decode_eof(&mut buf),
            Ok(Some(WireFrame::Ping))
        ));
        assert!(matches!(codec.decode_eof(&mut buf), Ok(None)));
        // Inside one, even right after its length, it is not.
        let mut buf = BytesMut::from(&[0, 0, 0, 5][..]);
        assert!(matches!(codec.decode(&mut buf), Ok(None)));
        assert!(buf.is_empty());
        assert!(matches!(
            codec.decode_eof(&mut buf),
            Err(FrameError::Truncated)
        ));
    }

    #[test]
    fn empty_frames_and_unknown_kinds_are_malformed() {
        let mut codec = WireCodec::new(16);
        let mut buf = BytesMut::from(&[0, 0, 0, 0][..]);
        assert!(
            matches!(codec.decode(&mut buf), Err(FrameError::Malformed(m)) if m == "empty frame")
        );
        let mut buf = BytesMut::from(&[0, 0, 0, 1, 0x7f][..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(FrameError::Malformed(m)) if m == "unknown frame kind 0x7f"
        ));
    }
}
