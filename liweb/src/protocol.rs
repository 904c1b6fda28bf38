//! Reserved wire traffic: the `error` event and close codes.

use serde::{Deserialize, Serialize};

/// The server's answer to bad input.
pub(crate) const ERROR_EVENT: &str = "error";
/// A reply to a request: `{"event":"__ack","ack":id,"payload":..}` or
/// `{"event":"__ack","ack":id,"error":{..}}`, in both directions.
pub(crate) const ACK_EVENT: &str = "__ack";
/// Credentials, client to server.
pub(crate) const AUTH_EVENT: &str = "__auth";
/// Authentication succeeded: `{"user": ..}`.
pub(crate) const AUTH_SUCCESS: &str = "auth:success";
/// Authentication failed, or an event came before it: `{"reason": ..}`.
pub(crate) const AUTH_ERROR: &str = "auth:error";
/// A change of a synced room's state.
pub(crate) const STATE_PATCH: &str = "state:patch";
/// The whole state of a synced room, sent to a joiner.
pub(crate) const STATE_SNAPSHOT: &str = "state:snapshot";
/// Someone's presence in a room went online.
pub(crate) const PRESENCE_JOIN: &str = "presence:join";
/// Someone's presence in a room went offline.
pub(crate) const PRESENCE_LEAVE: &str = "presence:leave";
/// Everyone's presence in a room, sent to a joiner.
pub(crate) const PRESENCE_SNAPSHOT: &str = "presence:snapshot";
/// Someone's presence in a room changed (activity, connections).
pub(crate) const PRESENCE_UPDATE: &str = "presence:update";

/// Why the server closed a connection, sent as the WebSocket close code.
///
/// Codes below 4000 are the standard ones of RFC 6455; liweb's own causes use
/// the 4000–4999 range reserved for applications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseCode {
    /// 1000: the application closed the connection.
    Normal,
    /// 1001: the server is shutting down.
    GoingAway,
    /// 1002: the peer broke the WebSocket protocol.
    ProtocolError,
    /// 1003: a frame of a kind this connection does not accept.
    Unsupported,
    /// 1007: a frame whose bytes are not what its type promises (bad UTF-8).
    BadFrame,
    /// 1008: a policy forbids what the peer did.
    PolicyViolation,
    /// 1009: a frame larger than [`Config::max_frame_size`](crate::Config::max_frame_size).
    TooLarge,
    /// 1011: the server failed.
    InternalError,
    /// 4001: authentication failed.
    AuthFailed,
    /// 4002: no authentication before the deadline.
    AuthTimeout,
    /// 4003: the peer reads too slowly: its outbound queue went over
    /// [`Config::max_queue_bytes`](crate::Config::max_queue_bytes), it owes
    /// that many bytes of pongs to pings it sent without reading, or it held
    /// the most when all queues together went over
    /// [`Config::max_total_queue_bytes`](crate::Config::max_total_queue_bytes).
    /// Its backlog is dropped and the close frame goes out first.
    SlowConsumer,
    /// 4004: nothing was received within the idle timeout.
    IdleTimeout,
    /// 4005: the `__auth` payload was missing or malformed (`missing auth payload`).
    AuthMissing,
    /// 4006: no pong (or other traffic) answered a ping within the ping timeout.
    PingTimeout,
    /// Any other code, as received or chosen by the application.
    Other(u16),
}

impl CloseCode {
    /// The numeric code on the wire.
    pub const fn as_u16(self) -> u16 {
        match self {
            Self::Normal => 1000,
            Self::GoingAway => 1001,
            Self::ProtocolError => 1002,
            Self::Unsupported => 1003,
            Self::BadFrame => 1007,
            Self::PolicyViolation => 1008,
            Self::TooLarge => 1009,
            Self::InternalError => 1011,
            Self::AuthFailed => 4001,
            Self::AuthTimeout => 4002,
            Self::SlowConsumer => 4003,
            Self::IdleTimeout => 4004,
            Self::AuthMissing => 4005,
            Self::PingTimeout => 4006,
            Self::Other(code) => code,
        }
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        match code {
            1000 => Self::Normal,
            1001 => Self::GoingAway,
            1002 => Self::ProtocolError,
            1003 => Self::Unsupported,
            1007 => Self::BadFrame,
            1008 => Self::PolicyViolation,
            1009 => Self::TooLarge,
            1011 => Self::InternalError,
            4001 => Self::AuthFailed,
            4002 => Self::AuthTimeout,
            4003 => Self::SlowConsumer,
            4004 => Self::IdleTimeout,
            4005 => Self::AuthMissing,
            4006 => Self::PingTimeout,
            other => Self::Other(other),
        }
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.as_u16()
    }
}

/// The `code` of an `error` event the server sends about bad input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The frame is not a message: not JSON, not an object, or no string `event`.
    BadFrame,
    /// The `event` is not one of the server's `In` events.
    UnknownEvent,
    /// The payload does not have the shape of the event's payload type.
    BadPayload,
    /// A binary frame reached a connection that speaks a text codec.
    UnsupportedFrame,
    /// A room's join guard refused the connection, or did not answer in time.
    JoinRejected,
    /// A handler's guard refused the event; the handler did not run.
    Forbidden,
    /// A handler failed (returned an error or panicked); sent as the error
    /// reply of a request.
    HandlerFailed,
    /// The connection sent more events per second than the server allows;
    /// the event was dropped.
    RateLimited,
    /// A middleware refused the event, or did not pass it on in time.
    Rejected,
    /// No handler answered the request: the event has no handler.
    NoHandler,
    /// A handler refused the event with [`Refused`](crate::Refused); the
    /// message is the handler's reason.
    Refused,
    /// The connection is in as many rooms as the server allows
    /// (`max_rooms_per_connection`); it was not added to the room.
    RoomLimit,
}

/// The payload of the reserved `error` event:
/// `{"code": "unknown_event", "message": "...", "event": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ErrorPayload {
    /// What kind of bad input this was.
    pub code: ErrorCode,
    /// A human-readable reason; for payloads, includes the field path.
    pub message: String,
    /// The event the frame named, when it named one.
    #[serde(default)]
    pub event: Option<String>,
}

impl Serialize for ErrorPayload {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        // JSON leaves out an absent `event`; a binary format writes every
        // field, since a reader of one that is not self-describing (bincode)
        // cannot tell a field was skipped.
        let skip = self.event.is_none() && serializer.is_human_readable();
        let mut out = serializer.serialize_struct("ErrorPayload", if skip { 2 } else { 3 })?;
        out.serialize_field("code", &self.code)?;
        out.serialize_field("message", &self.message)?;
        if skip {
            out.skip_field("event")?;
        } else {
            out.serialize_field("event", &self.event)?;
        }
        out.end()
    }
}
