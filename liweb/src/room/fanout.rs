//! The one loop that sends an encoded message to many connections: room
//! emits, multi-room emits, broadcasts, reserved room events and deliveries
//! from other nodes all go through [`fanout`].

use crate::{
    codec::{CodecKind, EncodeOnce, Frame},
    conn::Conn,
    error::EncodeError,
    event::Events,
};

/// Queues the message `frames` encodes for every connection of `conns`,
/// encoding it at most once per codec in use; returns how many connections
/// it was queued for.
///
/// A closed or slow connection handles itself (its send fails, the others
/// still get the message). A codec that cannot encode the message (bincode
/// and a `#[serde(flatten)]` payload, say) fails for its own connections
/// only: they are skipped, the connections of the other codecs still get
/// it, and the error is returned at the end.
pub(crate) fn fanout<'a, Out: Events + 'a>(
    conns: impl IntoIterator<Item = &'a Conn<Out>>,
    frames: &mut EncodeOnce<impl FnMut(CodecKind) -> Result<Frame, EncodeError>>,
) -> Result<usize, EncodeError> {
    let sent = send(conns, frames);
    frames.finish(sent)
}

/// The loop of [`fanout`] without the final report, for a caller that
/// fans out in several passes (one room's lock at a time) and reports once.
pub(crate) fn send<'a, Out: Events + 'a>(
    conns: impl IntoIterator<Item = &'a Conn<Out>>,
    frames: &mut EncodeOnce<impl FnMut(CodecKind) -> Result<Frame, EncodeError>>,
) -> usize {
    let mut sent = 0;
    for conn in conns {
        if let Ok(frame) = frames.get(conn.meta().codec())
            && conn.send_encoded(frame.clone()).is_ok()
        {
            sent += 1;
        }
    }
    sent
}
