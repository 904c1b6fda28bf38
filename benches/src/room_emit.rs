//! The room-emit fixture shared by the criterion benchmark
//! (`benches/room_emit.rs`) and the instruction-count runner
//! (`src/bin/room_emit_icount.rs`).
//!
//! A server whose only room has `n` detached members
//! ([`Conn::detached`]): no transport, each member's outbound queue is an
//! unbounded receiver the fixture holds. One emit is
//! [`Room::emit`] of [`RoomOut::Message`], a small struct payload
//! (`{"from":7,"seq":…,"text":"hello room"}`) whose [`Text`] field counts
//! how often it is serialized, so "serialized once, whatever the room's size"
//! is checked, not assumed.
//!
//! The queues are drained in batches ([`EmitFixture::drain`]) between timed
//! sections: draining is the writer's job (one per connection, on its own
//! task), not the emitter's, and without it the queues grow without bound.

use std::{
    borrow::Cow,
    fmt,
    hint::black_box,
    sync::atomic::{AtomicU64, Ordering},
};

use liweb::{CodecKind, Conn, Events, Room, Server};
use serde::{Deserialize, Serialize, Serializer};

/// How many emits run back to back between two drains of the members'
/// queues: at most `EMIT_BATCH × n` frames are outstanding at any time (16,000
/// for a room of 1,000), and each queue stays within one or two of tokio's
/// 32-slot channel blocks, which the receiver hands back for reuse.
pub const EMIT_BATCH: u64 = 16;

/// The text every emitted message carries.
pub const TEXT: &str = "hello room";

/// The wire name of [`RoomOut::Message`].
pub const MESSAGE_EVENT: &str = "chat:message";

/// How many times a [`Text`] has been serialized, process-wide.
static SERIALIZED: AtomicU64 = AtomicU64::new(0);

/// How many times a [`Text`] has been serialized so far.
pub fn serializations() -> u64 {
    SERIALIZED.load(Ordering::SeqCst)
}

/// A message text whose `Serialize` counts its calls (one relaxed atomic
/// add, a few nanoseconds, once per serialization, not per member).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Text(pub Cow<'static, str>);

impl Serialize for Text {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        SERIALIZED.fetch_add(1, Ordering::Relaxed);
        serializer.serialize_str(&self.0)
    }
}

/// The client events of the fixture server; none is sent.
#[derive(Debug, Events)]
pub enum RoomIn {
    /// Unused.
    Noop,
}

/// The server events of the fixture: one chat message.
#[derive(Debug, Events)]
pub enum RoomOut {
    /// A chat message: a small struct payload.
    #[event(name = "chat:message")]
    Message {
        /// The sender.
        from: u32,
        /// The message's number.
        seq: u64,
        /// The text; its serialization is counted.
        text: Text,
    },
}

/// The message emitted with sequence number `seq`; builds without allocating.
pub fn message(seq: u64) -> RoomOut {
    RoomOut::Message {
        from: 7,
        seq,
        text: Text(Cow::Borrowed(TEXT)),
    }
}

/// The exact JSON frame every member must receive for [`message`]`(seq)`.
pub fn expected_frame(seq: u64) -> String {
    format!(r#"{{"event":"{MESSAGE_EVENT}","payload":{{"from":7,"seq":{seq},"text":"{TEXT}"}}}}"#)
}

/// A member's outbound queue, seen from the fixture.
///
/// The queue's item type is liweb's hidden `Outbound`, which cannot be named
/// outside liweb, so it is reached through this trait (and its frames
/// through their `Debug` form, in the checks only).
pub trait Inbox: Send {
    /// Removes every queued item; returns how many there were.
    fn drain(&mut self) -> usize;
    /// The next queued item in `Debug` form, if there is one.
    fn next_debug(&mut self) -> Option<String>;
}

impl Inbox for liweb::Outgoing {
    fn drain(&mut self) -> usize {
        let mut drained = 0;
        while self.try_recv().is_ok() {
            drained += 1;
        }
        drained
    }

    fn next_debug(&mut self) -> Option<String> {
        self.try_recv().ok().map(|item| format!("{item:?}"))
    }
}

/// A server whose room `chat/bench` has `n` detached members.
pub struct EmitFixture {
    /// The server the room belongs to (kept alive with it).
    pub server: Server<RoomIn, RoomOut>,
    /// The room.
    pub room: Room<RoomOut>,
    /// The members' connections.
    pub members: Vec<Conn<RoomOut>>,
    /// The members' outbound queues, in the order of `members`.
    pub inboxes: Vec<Box<dyn Inbox>>,
}

impl fmt::Debug for EmitFixture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmitFixture")
            .field("room", &self.room)
            .field("members", &self.members.len())
            .finish_non_exhaustive()
    }
}

impl EmitFixture {
    /// Builds the server and joins `n` detached members to its room.
    pub fn new(n: usize) -> Self {
        // Built outside a runtime: no presence sweep task, nothing else runs.
        let server = Server::<RoomIn, RoomOut>::builder().build();
        let room = server.channel("chat").room("bench");
        let mut members = Vec::with_capacity(n);
        let mut inboxes: Vec<Box<dyn Inbox>> = Vec::with_capacity(n);
        let rt = crate::runtime();
        for _ in 0..n {
            let (conn, rx) = Conn::<RoomOut>::detached(CodecKind::Json);
            let joined = rt.block_on(room.join(&conn));
            assert_eq!(joined, Ok(true), "a detached member joins the room");
            members.push(conn);
            inboxes.push(Box::new(rx));
        }
        assert_eq!(room.size(), n, "the room has every member");
        Self {
            server,
            room,
            members,
            inboxes,
        }
    }

    /// Empties every member's queue (the writers' job); returns how many
    /// frames were queued in all.
    pub fn drain(&mut self) -> usize {
        self.inboxes.iter_mut().map(|inbox| inbox.drain()).sum()
    }

    /// Emits once and checks the claims the benchmark rests on: the payload
    /// is serialized exactly once, the emit reached every member, and each
    /// member queued exactly one frame, with the same, expected bytes.
    ///
    /// Panics when a claim does not hold. The queues must be empty before.
    pub fn check_one_emit(&mut self, seq: u64) {
        let n = self.members.len();
        let before = serializations();
        let reached = self.room.emit(message(seq)).expect("the message encodes");
        assert_eq!(
            serializations() - before,
            1,
            "one emit to {n} members serializes the payload once"
        );
        assert_eq!(reached, n, "the emit reached every member");
        let expected = format!(
            "Frame(Frame {{ bytes: b{:?}, text: true }})",
            expected_frame(seq)
        );
        for (i, inbox) in self.inboxes.iter_mut().enumerate() {
            let frame = inbox
                .next_debug()
                .unwrap_or_else(|| panic!("member {i} of {n} got no frame"));
            assert_eq!(frame, expected, "member {i} of {n} got other bytes");
            assert!(
                inbox.next_debug().is_none(),
                "member {i} of {n} got more than one frame"
            );
        }
    }
}

/// Emits `count` messages to `room`, numbered from `first_seq`; returns how
/// many members they were queued for in all. Not inlined, so callgrind can
/// count exactly this (`--toggle-collect=*emit_batch*`).
#[inline(never)]
pub fn emit_batch(room: &Room<RoomOut>, first_seq: u64, count: u64) -> usize {
    let mut reached = 0;
    for seq in first_seq..first_seq + count {
        reached += room
            .emit(black_box(message(seq)))
            .expect("the message encodes");
    }
    black_box(reached)
}
