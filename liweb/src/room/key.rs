//! [`RoomKey`]: a room's channel and name. A leaf: connections, state and
//! presence name rooms by it without knowing what a room is.

use std::{fmt, sync::Arc};

/// Which room a state belongs to.
///
/// ```
/// use liweb::state::RoomKey;
///
/// let key = RoomKey::new("chat", "lobby");
/// assert_eq!(key.channel(), "chat");
/// assert_eq!(key.room(), "lobby");
/// assert_eq!(key.to_string(), "chat/lobby");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomKey {
    channel: Arc<str>,
    room: Arc<str>,
}

impl RoomKey {
    /// The room `room` of channel `channel`.
    pub fn new(channel: impl Into<Arc<str>>, room: impl Into<Arc<str>>) -> Self {
        Self {
            channel: channel.into(),
            room: room.into(),
        }
    }

    /// The channel the room belongs to.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The room's name within its channel.
    pub fn room(&self) -> &str {
        &self.room
    }
}

impl fmt::Display for RoomKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.channel, self.room)
    }
}
