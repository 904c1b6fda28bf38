//! What a channel's rooms start with, and the join guard's verdicts.

use std::sync::Arc;

use super::key::RoomKey;
use crate::conn::Conn;

/// Why a join guard refused a connection; the reason reaches the client in
/// an `error` event (`join_rejected`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct JoinRejected {
    reason: String,
}

impl JoinRejected {
    /// A refusal with a reason the client may read.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }

    /// The reason.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// Why [`Room::join`](crate::Room::join) did not add a connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The channel's join guard refused.
    #[error("join refused: {0}")]
    Rejected(JoinRejected),
    /// The channel's join guard did not answer in time.
    #[error("join guard timed out")]
    TimedOut,
    /// The connection has not authenticated; it cannot join rooms yet.
    #[error("the connection has not authenticated")]
    NotAuthenticated,
    /// The connection is in as many rooms as
    /// [`ServerBuilder::max_rooms_per_connection`](crate::ServerBuilder::max_rooms_per_connection)
    /// allows; the client got an `error` event (`room_limit`).
    #[error("the connection is in {limit} rooms, the most it may be in")]
    TooManyRooms {
        /// The limit.
        limit: usize,
    },
}

/// What a new room of a channel starts with; see
/// [`ServerBuilder::channel_defaults`](crate::ServerBuilder::channel_defaults).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RoomDefaults {
    /// State sync on: members get `state:patch`, joiners `state:snapshot`.
    pub sync: bool,
    /// Presence events on: members get `presence:join/leave/update` about the
    /// others, joiners `presence:snapshot`.
    pub presence_events: bool,
    /// Delete the room, with its state and presence, when its last member
    /// leaves: for rooms whose names clients choose, so they cannot pile up.
    pub delete_when_empty: bool,
}

impl RoomDefaults {
    /// Everything off (the default): no state sync, no presence events,
    /// rooms kept when empty.
    pub const fn new() -> Self {
        Self {
            sync: false,
            presence_events: false,
            delete_when_empty: false,
        }
    }

    /// With state sync on or off.
    pub const fn sync(mut self, on: bool) -> Self {
        self.sync = on;
        self
    }

    /// With presence events on or off.
    pub const fn presence_events(mut self, on: bool) -> Self {
        self.presence_events = on;
        self
    }

    /// Deleting the room when its last member leaves, or not.
    pub const fn delete_when_empty(mut self, on: bool) -> Self {
        self.delete_when_empty = on;
        self
    }
}

/// A channel's join guard, as the registry stores it.
pub(crate) type JoinGuard<Out> = Arc<
    dyn Fn(Conn<Out>, RoomKey) -> crate::state::BoxFuture<'static, Result<(), JoinRejected>>
        + Send
        + Sync,
>;
