//! The frames the load generator speaks, written out by hand so that the
//! client side costs the same for every server:
//!
//! - [`Wire::Envelope`], liweb's JSON envelope (also spoken by the raw
//!   server): `{"event":E,"payload":P}`; a request that wants an answer
//!   carries `"ack":ID` (an unsigned integer) and is answered
//!   `{"event":"__ack","ack":ID,"payload":R}` or
//!   `{"event":"__ack","ack":ID,"error":{"code":..,"message":..}}`.
//! - [`Wire::SocketIo`], socket.io v5 packets inside engine.io v4 packets,
//!   one per WebSocket text frame (socketioxide). After the WebSocket
//!   handshake on `/socket.io/?EIO=4&transport=websocket` the server sends
//!   the engine.io OPEN packet `0{"sid":..,"pingInterval":..}`; the client
//!   connects to the default namespace with `40` and gets `40{"sid":..}`.
//!   Events are `42["event",data]`, with an ack id `42<id>["event",data]`,
//!   answered `43<id>[data]`. The server pings (`2`), the client must answer
//!   (`3`) or be dropped after `pingInterval + pingTimeout`.
//!
//! Only the first argument of a socket.io event or ack is read, and of any
//! payload only its `ts` and `seq` fields ([`Stamp`]); the rest is skipped
//! without being built.

use std::{borrow::Cow, fmt};

use serde::{
    Deserialize, Deserializer, Serialize,
    de::{IgnoredAny, SeqAccess, Visitor},
};
use serde_json::value::RawValue;

/// How a server frames events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    /// liweb's `{"event","payload"}` envelope, with liweb's ack replies.
    Envelope,
    /// socket.io v5 over engine.io v4, default namespace.
    SocketIo,
}

/// What the client sends to join the default socket.io namespace.
pub(crate) const SOCKETIO_CONNECT: &str = "40";
/// The engine.io answer to a ping.
pub(crate) const ENGINEIO_PONG: &str = "3";

/// The stamp every benchmark payload carries; other fields are ignored.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(crate) struct Stamp {
    /// When the sender built the payload, `SystemTime` microseconds.
    #[serde(default)]
    pub(crate) ts: u64,
    /// The sender's sequence number.
    #[serde(default)]
    pub(crate) seq: u64,
}

/// A received text frame, as far as the load generator cares.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming<'a> {
    /// An event and the stamp of its payload (all zero if it has none).
    Event {
        /// The event's name.
        name: Cow<'a, str>,
        /// Its payload's stamp.
        stamp: Stamp,
    },
    /// The answer to the request that carried ack id `id`: the reply's
    /// stamp, or the error the server answered with, as raw JSON.
    Ack {
        /// The request's ack id.
        id: u64,
        /// The reply's stamp or the server's error.
        reply: Result<Stamp, Cow<'a, str>>,
    },
    /// engine.io OPEN (`0{...}`), the first frame of a socket.io connection.
    Open,
    /// socket.io CONNECT answered (`40{"sid":..}`): in the namespace.
    Connected,
    /// socket.io CONNECT_ERROR (`44{...}`), with its raw data.
    ConnectError(Cow<'a, str>),
    /// engine.io PING (`2`): answer [`ENGINEIO_PONG`].
    Ping,
    /// engine.io CLOSE or socket.io DISCONNECT.
    Closed,
    /// Anything else: engine.io PONG and NOOP, binary packets, ...
    Other,
}

/// A frame the load generator cannot read.
#[derive(Debug)]
pub(crate) enum WireError {
    /// The JSON part is not what the protocol says.
    Json(serde_json::Error),
    /// The packet's framing is wrong.
    Malformed(&'static str),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Json(err) => write!(f, "bad JSON in a frame: {err}"),
            Self::Malformed(what) => write!(f, "malformed frame: {what}"),
        }
    }
}

impl std::error::Error for WireError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Json(err) => Some(err),
            Self::Malformed(_) => None,
        }
    }
}

impl From<serde_json::Error> for WireError {
    fn from(err: serde_json::Error) -> Self {
        Self::Json(err)
    }
}

impl Wire {
    /// The path of the WebSocket endpoint, with its query.
    pub(crate) fn path(self) -> &'static str {
        match self {
            Self::Envelope => "/ws",
            Self::SocketIo => "/socket.io/?EIO=4&transport=websocket",
        }
    }

    /// The text frame of event `name` with `payload`, a request carrying
    /// ack id `ack` if there is one.
    pub(crate) fn event<P: Serialize + ?Sized>(
        self,
        name: &str,
        payload: &P,
        ack: Option<u64>,
    ) -> Result<String, WireError> {
        let name = serde_json::to_string(name)?;
        let payload = serde_json::to_string(payload)?;
        Ok(match (self, ack) {
            (Self::Envelope, None) => format!(r#"{{"event":{name},"payload":{payload}}}"#),
            (Self::Envelope, Some(id)) => {
                format!(r#"{{"event":{name},"payload":{payload},"ack":{id}}}"#)
            }
            (Self::SocketIo, None) => format!("42[{name},{payload}]"),
            (Self::SocketIo, Some(id)) => format!("42{id}[{name},{payload}]"),
        })
    }

    /// Reads one text frame.
    pub(crate) fn parse(self, text: &str) -> Result<Incoming<'_>, WireError> {
        match self {
            Self::Envelope => parse_envelope(text),
            Self::SocketIo => parse_engineio(text),
        }
    }
}

/// The reply event of liweb's acks.
const ACK_EVENT: &str = "__ack";

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(default)]
    payload: Option<Stamp>,
    #[serde(default)]
    ack: Option<u64>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

fn parse_envelope(text: &str) -> Result<Incoming<'_>, WireError> {
    let envelope: Envelope<'_> = serde_json::from_str(text)?;
    let stamp = envelope.payload.unwrap_or_default();
    if envelope.event != ACK_EVENT {
        return Ok(Incoming::Event {
            name: envelope.event,
            stamp,
        });
    }
    let id = envelope
        .ack
        .ok_or(WireError::Malformed("an `__ack` reply without an ack id"))?;
    let reply = match envelope.error {
        Some(error) => Err(Cow::Borrowed(error.get())),
        None => Ok(stamp),
    };
    Ok(Incoming::Ack { id, reply })
}

fn parse_engineio(text: &str) -> Result<Incoming<'_>, WireError> {
    let (&kind, rest) = text
        .as_bytes()
        .split_first()
        .ok_or(WireError::Malformed("an empty engine.io packet"))?;
    match kind {
        b'0' => Ok(Incoming::Open),
        b'1' => Ok(Incoming::Closed),
        b'2' => Ok(Incoming::Ping),
        b'3' | b'5' | b'6' => Ok(Incoming::Other),
        // The packet type is one ASCII byte, so `rest` starts on a char
        // boundary.
        b'4' => parse_socketio(&text[text.len() - rest.len()..]),
        _ => Err(WireError::Malformed("an unknown engine.io packet type")),
    }
}

fn parse_socketio(packet: &str) -> Result<Incoming<'_>, WireError> {
    let (&kind, _) = packet
        .as_bytes()
        .split_first()
        .ok_or(WireError::Malformed("an empty socket.io packet"))?;
    let mut rest = &packet[1..];
    // A namespace other than `/` comes first, up to a comma.
    if rest.starts_with('/') {
        rest = rest.split_once(',').map_or("", |(_, after)| after);
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let id = match digits {
        0 => None,
        _ => Some(
            rest[..digits]
                .parse::<u64>()
                .map_err(|_| WireError::Malformed("an ack id out of range"))?,
        ),
    };
    let data = &rest[digits..];
    match kind {
        b'0' => Ok(Incoming::Connected),
        b'1' => Ok(Incoming::Closed),
        b'2' => {
            let EventArgs { name, first } = serde_json::from_str(data)?;
            Ok(Incoming::Event {
                name,
                stamp: first.unwrap_or_default(),
            })
        }
        b'3' => {
            let id = id.ok_or(WireError::Malformed("an ACK packet without an ack id"))?;
            let AckArgs(first) = serde_json::from_str(data)?;
            Ok(Incoming::Ack {
                id,
                reply: Ok(first.unwrap_or_default()),
            })
        }
        b'4' => Ok(Incoming::ConnectError(Cow::Borrowed(data))),
        b'5' | b'6' => Ok(Incoming::Other),
        _ => Err(WireError::Malformed("an unknown socket.io packet type")),
    }
}

/// `["name", first, ...]`: the name and the first argument's stamp.
struct EventArgs<'a> {
    name: Cow<'a, str>,
    first: Option<Stamp>,
}

impl<'de: 'a, 'a> Deserialize<'de> for EventArgs<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Args;
        impl<'de> Visitor<'de> for Args {
            type Value = EventArgs<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of an event name and its arguments")
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
                let name = seq
                    .next_element::<Cow<'de, str>>()?
                    .ok_or_else(|| serde::de::Error::invalid_length(0, &self))?;
                let first = seq.next_element::<Option<Stamp>>()?.flatten();
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(EventArgs { name, first })
            }
        }
        deserializer.deserialize_seq(Args)
    }
}

/// `[first, ...]`: the first argument's stamp.
struct AckArgs(Option<Stamp>);

impl<'de> Deserialize<'de> for AckArgs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Args;
        impl<'de> Visitor<'de> for Args {
            type Value = AckArgs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of ack arguments")
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
                let first = seq.next_element::<Option<Stamp>>()?.flatten();
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(AckArgs(first))
            }
        }
        deserializer.deserialize_seq(Args)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn stamp(ts: u64, seq: u64) -> Stamp {
        Stamp { ts, seq }
    }

    fn event(name: &str, stamp: Stamp) -> Incoming<'_> {
        Incoming::Event {
            name: Cow::Borrowed(name),
            stamp,
        }
    }

    #[test]
    fn envelope_event_without_and_with_ack() {
        let payload = json!({"ts": 5, "seq": 1});
        assert_eq!(
            Wire::Envelope.event("echo", &payload, None).unwrap(),
            r#"{"event":"echo","payload":{"seq":1,"ts":5}}"#
        );
        assert_eq!(
            Wire::Envelope.event("echo", &payload, Some(17)).unwrap(),
            r#"{"event":"echo","payload":{"seq":1,"ts":5},"ack":17}"#
        );
    }

    #[test]
    fn envelope_event_is_valid_json_with_escaped_name() {
        let frame = Wire::Envelope.event("a\"b", &json!(null), None).unwrap();
        let value: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(value["event"], "a\"b");
    }

    #[test]
    fn envelope_parses_events() {
        let text = r#"{"event":"msg","payload":{"room":"r","ts":9,"seq":3,"pad":"xx"}}"#;
        assert_eq!(
            Wire::Envelope.parse(text).unwrap(),
            event("msg", stamp(9, 3))
        );
        let text = r#"{"event":"joined","payload":{"room":"r","size":2}}"#;
        assert_eq!(
            Wire::Envelope.parse(text).unwrap(),
            event("joined", Stamp::default())
        );
        assert_eq!(
            Wire::Envelope.parse(r#"{"event":"ping"}"#).unwrap(),
            event("ping", Stamp::default())
        );
    }

    #[test]
    fn envelope_parses_ack_replies_and_errors() {
        let text = r#"{"event":"__ack","ack":17,"payload":{"ts":5,"seq":1}}"#;
        assert_eq!(
            Wire::Envelope.parse(text).unwrap(),
            Incoming::Ack {
                id: 17,
                reply: Ok(stamp(5, 1))
            }
        );
        let text = r#"{"event":"__ack","ack":18,"error":{"code":"bad","message":"no"}}"#;
        assert_eq!(
            Wire::Envelope.parse(text).unwrap(),
            Incoming::Ack {
                id: 18,
                reply: Err(Cow::Borrowed(r#"{"code":"bad","message":"no"}"#))
            }
        );
        assert!(matches!(
            Wire::Envelope.parse(r#"{"event":"__ack","payload":{"ts":1}}"#),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn envelope_rejects_garbage() {
        assert!(matches!(
            Wire::Envelope.parse("not json"),
            Err(WireError::Json(_))
        ));
    }

    #[test]
    fn socketio_event_without_and_with_ack() {
        let payload = json!({"room": "fanout"});
        assert_eq!(
            Wire::SocketIo.event("join", &payload, None).unwrap(),
            r#"42["join",{"room":"fanout"}]"#
        );
        assert_eq!(
            Wire::SocketIo.event("echo", &payload, Some(12)).unwrap(),
            r#"4212["echo",{"room":"fanout"}]"#
        );
    }

    #[test]
    fn socketio_parses_the_handshake() {
        let open = r#"0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":100000}"#;
        assert_eq!(Wire::SocketIo.parse(open).unwrap(), Incoming::Open);
        assert_eq!(
            Wire::SocketIo.parse(r#"40{"sid":"def"}"#).unwrap(),
            Incoming::Connected
        );
        assert_eq!(
            Wire::SocketIo.parse(r#"44{"message":"refused"}"#).unwrap(),
            Incoming::ConnectError(Cow::Borrowed(r#"{"message":"refused"}"#))
        );
    }

    #[test]
    fn socketio_parses_engineio_control_packets() {
        assert_eq!(Wire::SocketIo.parse("2").unwrap(), Incoming::Ping);
        assert_eq!(Wire::SocketIo.parse("3").unwrap(), Incoming::Other);
        assert_eq!(Wire::SocketIo.parse("6").unwrap(), Incoming::Other);
        assert_eq!(Wire::SocketIo.parse("1").unwrap(), Incoming::Closed);
        assert_eq!(Wire::SocketIo.parse("41").unwrap(), Incoming::Closed);
        assert!(Wire::SocketIo.parse("").is_err());
        assert!(Wire::SocketIo.parse("9").is_err());
        assert!(Wire::SocketIo.parse("4").is_err());
    }

    #[test]
    fn socketio_parses_events() {
        let text = r#"42["msg",{"room":"fanout","ts":9,"seq":3,"pad":"x"}]"#;
        assert_eq!(
            Wire::SocketIo.parse(text).unwrap(),
            event("msg", stamp(9, 3))
        );
        // More arguments, and no argument at all.
        let text = r#"42["msg",{"ts":1,"seq":2},"more",[1,2]]"#;
        assert_eq!(
            Wire::SocketIo.parse(text).unwrap(),
            event("msg", stamp(1, 2))
        );
        assert_eq!(
            Wire::SocketIo.parse(r#"42["hello"]"#).unwrap(),
            event("hello", Stamp::default())
        );
        // Another namespace and an ack id in front of the data.
        let text = r#"42/admin,7["msg",{"ts":4,"seq":5}]"#;
        assert_eq!(
            Wire::SocketIo.parse(text).unwrap(),
            event("msg", stamp(4, 5))
        );
        assert!(Wire::SocketIo.parse("42[]").is_err());
        assert!(Wire::SocketIo.parse(r#"42{"event":"msg"}"#).is_err());
    }

    #[test]
    fn socketio_parses_acks() {
        assert_eq!(
            Wire::SocketIo.parse(r#"4317[{"ts":5,"seq":1}]"#).unwrap(),
            Incoming::Ack {
                id: 17,
                reply: Ok(stamp(5, 1))
            }
        );
        assert_eq!(
            Wire::SocketIo.parse("430[]").unwrap(),
            Incoming::Ack {
                id: 0,
                reply: Ok(Stamp::default())
            }
        );
        assert!(matches!(
            Wire::SocketIo.parse(r#"43[{"ts":5}]"#),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(
            Wire::SocketIo.parse("4399999999999999999999[]"),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn frames_round_trip_through_the_parser() {
        for wire in [Wire::Envelope, Wire::SocketIo] {
            let frame = wire
                .event("echo", &json!({"ts": 11, "seq": 4}), None)
                .unwrap();
            assert_eq!(wire.parse(&frame).unwrap(), event("echo", stamp(11, 4)));
        }
    }

    #[test]
    fn paths() {
        assert_eq!(Wire::Envelope.path(), "/ws");
        assert_eq!(
            Wire::SocketIo.path(),
            "/socket.io/?EIO=4&transport=websocket"
        );
    }
}
