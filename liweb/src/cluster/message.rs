//! What one node tells the others, and how it is written on the wire.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use uuid::Uuid;

use super::error::ClusterError;
use crate::{conn::ConnId, protocol::CloseCode, room::key::RoomKey};

/// What one node tells the others. Frames are JSON (the codec every node
/// speaks); a node whose connections use another codec would re-encode.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Message {
    /// A room emit: every local member of `room` but `except`. `only`
    /// restricts it to rooms that have sync or presence events on.
    Room {
        room: RoomKey,
        except: Option<ConnId>,
        only: Only,
        frame: Bytes,
    },
    /// Every local member of any of `rooms`, once, but `except`.
    Rooms {
        rooms: Vec<RoomKey>,
        except: Option<ConnId>,
        frame: Bytes,
    },
    /// Every local connection but `except`.
    Broadcast {
        except: Option<ConnId>,
        frame: Bytes,
    },
    /// Close the connection `conn` if it is here.
    Disconnect {
        conn: ConnId,
        code: CloseCode,
        reason: String,
    },
    /// Ask the connections of `target` that are here the event `event`
    /// (its payload as JSON) with ack id `id`; their replies go to the node
    /// `reply_to`, which stops waiting after `timeout_ms`.
    Request {
        target: Target,
        id: u64,
        reply_to: Uuid,
        timeout_ms: u32,
        event: String,
        payload: Bytes,
    },
    /// The reply of connection `conn` to request `id` of node `to`: its
    /// payload as JSON, or its error reply (an `ErrorPayload` as JSON).
    Reply {
        to: Uuid,
        id: u64,
        conn: ConnId,
        outcome: Result<Bytes, Bytes>,
    },
}

/// Which connections a cluster request asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// One connection, wherever it is.
    Conn(ConnId),
    /// The members of a room.
    Room(RoomKey),
    /// Every connection.
    All,
}

/// Which rooms a room message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Only {
    /// Every room.
    All,
    /// Rooms with state sync on.
    Synced,
    /// Rooms with presence events on.
    PresenceEvents,
}

const VERSION: u8 = 1;

/// A message as it travels: who sent it, and what it says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Envelope {
    pub(crate) origin: Uuid,
    pub(crate) message: Message,
}

fn put_str(buf: &mut BytesMut, text: &str) {
    buf.put_u32(u32::try_from(text.len()).unwrap_or(u32::MAX));
    buf.put_slice(text.as_bytes());
}

fn put_conn(buf: &mut BytesMut, conn: Option<ConnId>) {
    match conn {
        Some(conn) => {
            buf.put_u8(1);
            buf.put_slice(conn.as_uuid().as_bytes());
        }
        None => buf.put_u8(0),
    }
}

fn put_room(buf: &mut BytesMut, room: &RoomKey) {
    put_str(buf, room.channel());
    put_str(buf, room.room());
}

pub(super) fn bad(what: &str) -> ClusterError {
    ClusterError::BadMessage(format!("truncated or malformed {what}"))
}

fn get_u8(buf: &mut &[u8], what: &str) -> Result<u8, ClusterError> {
    if buf.remaining() < 1 {
        return Err(bad(what));
    }
    Ok(buf.get_u8())
}

fn get_u64(buf: &mut &[u8], what: &str) -> Result<u64, ClusterError> {
    if buf.remaining() < 8 {
        return Err(bad(what));
    }
    Ok(buf.get_u64())
}

fn get_uuid(buf: &mut &[u8], what: &str) -> Result<Uuid, ClusterError> {
    if buf.remaining() < 16 {
        return Err(bad(what));
    }
    let mut bytes = [0; 16];
    buf.copy_to_slice(&mut bytes);
    Ok(Uuid::from_bytes(bytes))
}

fn get_str(buf: &mut &[u8], what: &str) -> Result<String, ClusterError> {
    if buf.remaining() < 4 {
        return Err(bad(what));
    }
    let len = buf.get_u32() as usize;
    if buf.remaining() < len {
        return Err(bad(what));
    }
    let text = std::str::from_utf8(&buf[..len])
        .map_err(|_| bad(what))?
        .to_owned();
    buf.advance(len);
    Ok(text)
}

fn get_conn(buf: &mut &[u8]) -> Result<Option<ConnId>, ClusterError> {
    match get_u8(buf, "connection")? {
        0 => Ok(None),
        _ => Ok(Some(ConnId::from(get_uuid(buf, "connection")?))),
    }
}

fn get_room(buf: &mut &[u8]) -> Result<RoomKey, ClusterError> {
    let channel = get_str(buf, "channel")?;
    let room = get_str(buf, "room")?;
    Ok(RoomKey::new(channel, room))
}

impl Envelope {
    /// A compact binary form: a version byte, the origin node, a kind byte,
    /// the kind's fields, then the frame's bytes unchanged (no escaping, so a
    /// JSON frame is copied once and never re-encoded).
    pub(crate) fn encode(&self) -> Bytes {
        let frame_len = match &self.message {
            Message::Room { frame, .. }
            | Message::Rooms { frame, .. }
            | Message::Broadcast { frame, .. } => frame.len(),
            Message::Disconnect { reason, .. } => reason.len(),
            Message::Request { event, payload, .. } => event.len() + payload.len(),
            Message::Reply { outcome, .. } => outcome.as_ref().map_or_else(Bytes::len, Bytes::len),
        };
        let mut buf = BytesMut::with_capacity(64 + frame_len);
        buf.put_u8(VERSION);
        buf.put_slice(self.origin.as_bytes());
        match &self.message {
            Message::Room {
                room,
                except,
                only,
                frame,
            } => {
                buf.put_u8(1);
                put_room(&mut buf, room);
                put_conn(&mut buf, *except);
                buf.put_u8(match only {
                    Only::All => 0,
                    Only::Synced => 1,
                    Only::PresenceEvents => 2,
                });
                buf.put_slice(frame);
            }
            Message::Rooms {
                rooms,
                except,
                frame,
            } => {
                buf.put_u8(2);
                buf.put_u32(u32::try_from(rooms.len()).unwrap_or(u32::MAX));
                for room in rooms {
                    put_room(&mut buf, room);
                }
                put_conn(&mut buf, *except);
                buf.put_slice(frame);
            }
            Message::Broadcast { except, frame } => {
                buf.put_u8(3);
                put_conn(&mut buf, *except);
                buf.put_slice(frame);
            }
            Message::Disconnect { conn, code, reason } => {
                buf.put_u8(4);
                buf.put_slice(conn.as_uuid().as_bytes());
                buf.put_u16(code.as_u16());
                buf.put_slice(reason.as_bytes());
            }
            Message::Request {
                target,
                id,
                reply_to,
                timeout_ms,
                event,
                payload,
            } => {
                buf.put_u8(5);
                match target {
                    Target::Conn(conn) => {
                        buf.put_u8(0);
                        buf.put_slice(conn.as_uuid().as_bytes());
                    }
                    Target::Room(room) => {
                        buf.put_u8(1);
                        put_room(&mut buf, room);
                    }
                    Target::All => buf.put_u8(2),
                }
                buf.put_u64(*id);
                buf.put_slice(reply_to.as_bytes());
                buf.put_u32(*timeout_ms);
                put_str(&mut buf, event);
                buf.put_slice(payload);
            }
            Message::Reply {
                to,
                id,
                conn,
                outcome,
            } => {
                buf.put_u8(6);
                buf.put_slice(to.as_bytes());
                buf.put_u64(*id);
                buf.put_slice(conn.as_uuid().as_bytes());
                let (ok, bytes) = match outcome {
                    Ok(bytes) => (1, bytes),
                    Err(bytes) => (0, bytes),
                };
                buf.put_u8(ok);
                buf.put_slice(bytes);
            }
        }
        buf.freeze()
    }

    /// Reads what [`Envelope::encode`] wrote; the frame shares `bytes`.
    pub(crate) fn decode(bytes: &Bytes) -> Result<Self, ClusterError> {
        let mut buf: &[u8] = bytes;
        let version = get_u8(&mut buf, "version")?;
        if version != VERSION {
            return Err(ClusterError::BadMessage(format!(
                "message version {version}, expected {VERSION}"
            )));
        }
        let origin = get_uuid(&mut buf, "origin")?;
        let kind = get_u8(&mut buf, "kind")?;
        let rest = |buf: &[u8]| bytes.slice(bytes.len() - buf.len()..);
        let message = match kind {
            1 => {
                let room = get_room(&mut buf)?;
                let except = get_conn(&mut buf)?;
                let only = match get_u8(&mut buf, "room filter")? {
                    0 => Only::All,
                    1 => Only::Synced,
                    2 => Only::PresenceEvents,
                    other => {
                        return Err(ClusterError::BadMessage(format!(
                            "unknown room filter {other}"
                        )));
                    }
                };
                Message::Room {
                    room,
                    except,
                    only,
                    frame: rest(buf),
                }
            }
            2 => {
                if buf.remaining() < 4 {
                    return Err(bad("room list"));
                }
                let count = buf.get_u32() as usize;
                let mut rooms = Vec::with_capacity(count.min(1024));
                for _ in 0..count {
                    rooms.push(get_room(&mut buf)?);
                }
                let except = get_conn(&mut buf)?;
                Message::Rooms {
                    rooms,
                    except,
                    frame: rest(buf),
                }
            }
            3 => {
                let except = get_conn(&mut buf)?;
                Message::Broadcast {
                    except,
                    frame: rest(buf),
                }
            }
            4 => {
                let conn = ConnId::from(get_uuid(&mut buf, "connection")?);
                if buf.remaining() < 2 {
                    return Err(bad("close code"));
                }
                let code = CloseCode::from(buf.get_u16());
                let reason = String::from_utf8_lossy(buf).into_owned();
                Message::Disconnect { conn, code, reason }
            }
            5 => {
                let target = match get_u8(&mut buf, "request target")? {
                    0 => Target::Conn(ConnId::from(get_uuid(&mut buf, "connection")?)),
                    1 => Target::Room(get_room(&mut buf)?),
                    2 => Target::All,
                    other => {
                        return Err(ClusterError::BadMessage(format!(
                            "unknown request target {other}"
                        )));
                    }
                };
                let id = get_u64(&mut buf, "request id")?;
                let reply_to = get_uuid(&mut buf, "reply node")?;
                if buf.remaining() < 4 {
                    return Err(bad("request timeout"));
                }
                let timeout_ms = buf.get_u32();
                let event = get_str(&mut buf, "request event")?;
                Message::Request {
                    target,
                    id,
                    reply_to,
                    timeout_ms,
                    event,
                    payload: rest(buf),
                }
            }
            6 => {
                let to = get_uuid(&mut buf, "reply node")?;
                let id = get_u64(&mut buf, "reply id")?;
                let conn = ConnId::from(get_uuid(&mut buf, "connection")?);
                let ok = get_u8(&mut buf, "reply outcome")? == 1;
                let bytes = rest(buf);
                Message::Reply {
                    to,
                    id,
                    conn,
                    outcome: if ok { Ok(bytes) } else { Err(bytes) },
                }
            }
            other => {
                return Err(ClusterError::BadMessage(format!(
                    "unknown message kind {other}"
                )));
            }
        };
        Ok(Self { origin, message })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(message: Message) {
        let envelope = Envelope {
            origin: Uuid::new_v4(),
            message,
        };
        assert_eq!(Envelope::decode(&envelope.encode()), Ok(envelope));
    }

    #[test]
    fn every_message_kind_survives_encoding() {
        let conn = ConnId::from(Uuid::new_v4());
        let frame = Bytes::from_static(br#"{"event":"x","payload":"\u00e9"}"#);
        round_trip(Message::Room {
            room: RoomKey::new("chat", "général"),
            except: Some(conn),
            only: Only::Synced,
            frame: frame.clone(),
        });
        round_trip(Message::Rooms {
            rooms: vec![RoomKey::new("a", "1"), RoomKey::new("b", "")],
            except: None,
            frame: frame.clone(),
        });
        round_trip(Message::Broadcast {
            except: None,
            frame,
        });
        round_trip(Message::Disconnect {
            conn,
            code: CloseCode::Other(4100),
            reason: "moved".into(),
        });
        for target in [
            Target::Conn(conn),
            Target::Room(RoomKey::new("chat", "général")),
            Target::All,
        ] {
            round_trip(Message::Request {
                target,
                id: u64::MAX - 1,
                reply_to: Uuid::new_v4(),
                timeout_ms: 1500,
                event: "confirm".into(),
                payload: Bytes::from_static(br#"{"q":"sure?"}"#),
            });
        }
        round_trip(Message::Reply {
            to: Uuid::new_v4(),
            id: 7,
            conn,
            outcome: Ok(Bytes::from_static(b"true")),
        });
        round_trip(Message::Reply {
            to: Uuid::new_v4(),
            id: 8,
            conn,
            outcome: Err(Bytes::from_static(
                br#"{"code":"handler_failed","message":"no"}"#,
            )),
        });
    }

    #[test]
    fn a_bad_message_has_no_source() {
        use std::error::Error;

        assert_eq!(bad("room").source().map(ToString::to_string), None);
    }

    #[test]
    fn truncated_messages_are_errors_not_panics() {
        let envelope = Envelope {
            origin: Uuid::new_v4(),
            message: Message::Rooms {
                rooms: vec![RoomKey::new("a", "1")],
                except: Some(ConnId::from(Uuid::new_v4())),
                frame: Bytes::from_static(b"{}"),
            },
        };
        let bytes = envelope.encode();
        for len in 0..bytes.len() - 2 {
            let _ = Envelope::decode(&bytes.slice(..len));
        }
        assert!(Envelope::decode(&Bytes::from_static(&[9])).is_err());
    }
}
