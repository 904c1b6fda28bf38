//! The names of liweb's Redis keys and topics.

use uuid::Uuid;

use crate::{presence::PresenceKey, room::key::RoomKey};

/// The names of topics and keys.
#[derive(Debug)]
pub(super) struct Keys {
    pub(super) prefix: String,
    pub(super) broadcast: String,
    pub(super) heartbeat: String,
    pub(super) nodes: String,
    pub(super) node_rooms: String,
}

impl Keys {
    pub(super) fn new(prefix: &str, node: Uuid) -> Self {
        Self {
            prefix: prefix.to_owned(),
            broadcast: format!("{prefix}:b"),
            heartbeat: format!("{prefix}:node:{node}"),
            nodes: format!("{prefix}:nodes"),
            node_rooms: format!("{prefix}:nr:{node}"),
        }
    }

    pub(super) fn room_name(room: &RoomKey) -> String {
        format!(
            "{}:{}:{}",
            room.channel().len(),
            room.channel(),
            room.room()
        )
    }

    pub(super) fn parse_room(name: &str) -> Option<RoomKey> {
        let (len, rest) = name.split_once(':')?;
        let len: usize = len.parse().ok()?;
        let channel = rest.get(..len)?;
        let room = rest.get(len..)?.strip_prefix(':')?;
        Some(RoomKey::new(channel, room))
    }

    pub(super) fn room_topic(&self, room: &RoomKey) -> String {
        format!("{}:r:{}", self.prefix, Self::room_name(room))
    }

    pub(super) fn state(&self, room: &RoomKey) -> String {
        format!("{}:s:{}", self.prefix, Self::room_name(room))
    }

    pub(super) fn members(&self, room: &RoomKey) -> String {
        format!("{}:m:{}", self.prefix, Self::room_name(room))
    }

    pub(super) fn heartbeat_of(&self, node: &str) -> String {
        format!("{}:node:{node}", self.prefix)
    }

    pub(super) fn rooms_of(&self, node: &str) -> String {
        format!("{}:nr:{node}", self.prefix)
    }
}

pub(super) fn encode_key(key: &PresenceKey) -> String {
    match key {
        PresenceKey::Conn(conn) => format!("c:{conn}"),
        PresenceKey::User(user) => format!("u:{user}"),
    }
}

pub(super) fn decode_key(key: &str) -> Option<PresenceKey> {
    if let Some(user) = key.strip_prefix("u:") {
        return Some(PresenceKey::user(user));
    }
    let conn = key.strip_prefix("c:")?;
    Uuid::parse_str(conn)
        .ok()
        .map(|id| PresenceKey::Conn(id.into()))
}
