//! The TCP frame decoder fed arbitrary bytes in arbitrary pieces.

use bytes::BytesMut;
use liweb::__fuzz::tcp::{Error, Frame, FrameDecoder};

/// Everything the decoder reads from one stream, and where it stopped.
#[derive(Debug, PartialEq)]
pub struct Read {
    /// Each frame with the bytes of the stream it was read from.
    pub frames: Vec<(Frame, std::ops::Range<usize>)>,
    /// The error that ended the stream, if one did.
    pub error: Option<Error>,
}

/// Reads `stream` with a decoder accepting messages of `max` bytes, handing
/// it the bytes in pieces of the sizes `pieces` yields (the whole rest when
/// it yields none).
pub fn read(stream: &[u8], max: usize, mut pieces: impl Iterator<Item = usize>) -> Read {
    let mut decoder = FrameDecoder::new(max);
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut start = 0;
    let mut frames = Vec::new();
    let mut step = |buf: &mut BytesMut, fed: usize, eof: bool, frames: &mut Vec<_>| loop {
        let result = if eof {
            decoder.decode_eof(buf)
        } else {
            decoder.decode(buf)
        };
        match result {
            Ok(Some(frame)) => {
                // What the decoder consumed: everything fed minus what is left.
                let end = fed - buf.len();
                frames.push((frame, start..end));
                start = end;
            }
            Ok(None) => return None,
            Err(error) => return Some(error),
        }
    };
    while fed < stream.len() {
        let piece = pieces.next().unwrap_or(usize::MAX).max(1);
        let end = fed.saturating_add(piece).min(stream.len());
        buf.extend_from_slice(&stream[fed..end]);
        fed = end;
        if let Some(error) = step(&mut buf, fed, false, &mut frames) {
            return Read {
                frames,
                error: Some(error),
            };
        }
    }
    let error = step(&mut buf, fed, true, &mut frames);
    Read { frames, error }
}

/// The TCP target. The first byte picks the limit, the second the piece
/// sizes, the rest is the stream. Checks that the frames and the error do
/// not depend on how the stream was cut, that no frame is over the limit,
/// that every frame liweb can write re-encodes to the very bytes it was read
/// from, that a stream ending without an error ended between frames, and
/// that a too-large error comes from a length over the limit.
pub fn check(data: &[u8]) {
    let [limit, cut, stream @ ..] = data else {
        return;
    };
    let max = usize::from(*limit) * 4;
    let whole = read(stream, max, std::iter::empty());
    let mut state = u32::from(*cut) | 1;
    let span = usize::from(*cut % 32) + 1;
    let pieces = std::iter::from_fn(move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        Some(state as usize % span + 1)
    });
    let chunked = read(stream, max, pieces);
    assert_eq!(chunked, whole, "the pieces changed what was read");
    let bytewise = read(stream, max, std::iter::repeat(1));
    assert_eq!(bytewise, whole, "byte by byte changed what was read");

    if whole.error.is_none() {
        let end = whole.frames.last().map_or(0, |(_, range)| range.end);
        assert_eq!(
            end,
            stream.len(),
            "a clean end left bytes of a frame unread"
        );
    }

    let decoder = FrameDecoder::new(max);
    for (frame, range) in &whole.frames {
        let original = &stream[range.clone()];
        let body = match frame {
            Frame::Hello(b) | Frame::Message(b) => b.len(),
            _ => 0,
        };
        assert!(
            body <= max,
            "a body of {body} bytes passed a limit of {max}"
        );
        assert_eq!(
            u32::from_be_bytes(original[..4].try_into().unwrap()) as usize,
            original.len() - 4,
            "the frame's length does not match its bytes"
        );
        let mut again = BytesMut::new();
        if decoder.encode(frame, &mut again).is_ok() {
            let lossy_close = matches!(frame, Frame::Close(Some(_)))
                && std::str::from_utf8(&original[7..]).is_err();
            if !lossy_close {
                assert_eq!(&again[..], original, "{frame:?} re-encodes differently");
            }
        }
    }
    if let Some(Error::TooLarge(limit)) = &whole.error {
        assert_eq!(*limit, max);
        let at = whole.frames.last().map_or(0, |(_, range)| range.end);
        let length = u32::from_be_bytes(stream[at..at + 4].try_into().unwrap()) as usize;
        assert!(
            length > max + 1,
            "a length of {length} refused under a limit of {max}"
        );
    }
}
