//! The receiving end of a cluster node: messages from other nodes reach the
//! local connections they are for (room emits, broadcasts, requests and
//! their replies, disconnects).
//!
//! It lives beside the server rather than in `dispatch`: the builder
//! attaches it to the adapter when it builds the server, and nothing here
//! runs handlers.

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use bytes::Bytes;
use uuid::Uuid;

use super::{Inner, Server};
use crate::{
    cluster::{Deliver, Message, Target},
    codec::{CodecKind, EncodeOnce, Frame, RawPayload},
    conn::ConnId,
    error::Chain,
    error::EncodeError,
    event::{Events, PayloadDecoder},
    presence::PresenceRecord,
    protocol::{ErrorCode, ErrorPayload},
    room::key::RoomKey,
};

/// Hands the adapter the way into `server`.
pub(crate) fn attach<In: Events, Out: Events>(
    server: &Server<In, Out>,
    attach: Box<dyn FnOnce(Arc<dyn Deliver>) + Send>,
) {
    attach(Arc::new(LocalNode::new(Arc::downgrade(&server.inner))));
}

impl<In: Events, Out: Events> Server<In, Out> {
    /// Sends another node's request to the local connections of `target`;
    /// each reply goes back to that node. A connection's pending entry
    /// lasts no longer than the asking node waits.
    fn answer_remote_request(
        &self,
        target: Target,
        id: u64,
        reply_to: Uuid,
        timeout_ms: u32,
        event: &str,
        payload: &Bytes,
    ) -> Result<usize, EncodeError> {
        let Some(link) = self.inner.cluster.clone() else {
            return Ok(0);
        };
        let conns = match target {
            Target::Conn(id) => self.get(id).into_iter().collect(),
            Target::Room(room) => self.inner.rooms.local_member_conns(&room),
            Target::All => self.connections(),
        };
        if conns.is_empty() {
            return Ok(0);
        }
        // Decoded once; each codec in use encodes it once.
        let value: serde_json::Value = serde_json::from_slice(payload).map_err(EncodeError::new)?;
        let mut frames =
            EncodeOnce::new(|codec: CodecKind| codec.encode_parts(event, Some(id), &value));
        let timeout = Duration::from_millis(u64::from(timeout_ms));
        let mut sent = 0;
        for conn in conns {
            // A codec that cannot encode the request skips its connections only.
            let Ok(frame) = frames.get(conn.meta().codec()).cloned() else {
                continue;
            };
            let link = Arc::clone(&link);
            let conn_id = conn.id();
            conn.inner.requests.insert(
                id,
                Box::new(move |result: Result<RawPayload<'_>, ErrorPayload>| {
                    let outcome = match result {
                        Ok(payload) => match payload.decode::<serde_json::Value>() {
                            Ok(value) => {
                                Ok(Bytes::from(serde_json::to_vec(&value).unwrap_or_default()))
                            }
                            Err(err) => Err(error_json(&ErrorPayload {
                                code: ErrorCode::BadPayload,
                                message: format!("the reply cannot cross nodes: {err}"),
                                event: None,
                            })),
                        },
                        Err(error) => Err(error_json(&error)),
                    };
                    link.publish(Message::Reply {
                        to: reply_to,
                        id,
                        conn: conn_id,
                        outcome,
                    });
                }),
            );
            if conn.send_encoded(frame).is_ok() {
                sent += 1;
            }
            let inner = Arc::downgrade(&conn.inner);
            tokio::spawn(async move {
                tokio::time::sleep(timeout).await;
                if let Some(inner) = inner.upgrade() {
                    inner.requests.remove(id);
                }
            });
        }
        frames.finish(sent)
    }
}

fn error_json(error: &ErrorPayload) -> Bytes {
    Bytes::from(serde_json::to_vec(error).unwrap_or_default())
}

/// Delivers other nodes' messages into one server. Holds the server weakly:
/// the adapter must not keep a dropped server alive.
pub(crate) struct LocalNode<In, Out> {
    server: Weak<Inner<In, Out>>,
}

impl<In, Out> LocalNode<In, Out> {
    pub(crate) fn new(server: Weak<Inner<In, Out>>) -> Self {
        Self { server }
    }
}

/// Frames for each codec from the JSON bytes another node sent: JSON
/// connections share those very bytes; the other codecs get them
/// transcoded once each (with `Out`'s payload types; without binary codecs
/// `Out` is not needed).
#[cfg_attr(
    not(any(feature = "msgpack", feature = "bincode")),
    allow(clippy::extra_unused_type_parameters)
)]
pub(crate) fn frames_from_json<Out: Events>(
    json: &Bytes,
) -> EncodeOnce<impl FnMut(CodecKind) -> Result<Frame, EncodeError> + '_> {
    EncodeOnce::new(move |codec| match codec {
        CodecKind::Json => Frame::json(json.clone()),
        #[cfg(any(feature = "msgpack", feature = "bincode"))]
        other => transcode::<Out>(json, other),
    })
}

/// Re-encodes a JSON message in `codec`. An event of `Out` goes through its
/// own payload type, so codecs that are not self-describing (bincode) get
/// the bytes that type writes; a reserved event goes through a JSON value.
#[cfg(any(feature = "msgpack", feature = "bincode"))]
fn transcode<Out: Events>(json: &Bytes, codec: CodecKind) -> Result<Frame, EncodeError> {
    use crate::{codec::Input, event::PayloadDecoder, event::PayloadOf};

    let raw = CodecKind::Json
        .decode_frame(Input::Binary(json))
        .map_err(EncodeError::new)?;
    if let Some(index) = Out::index_of(&raw.event)
        && let Some(event) = Out::decode(index, raw.payload)
    {
        let event = event.map_err(EncodeError::new)?;
        return codec.encode_parts(event.name(), raw.ack, &PayloadOf(&event));
    }
    let payload: serde_json::Value = raw.payload.decode().map_err(EncodeError::new)?;
    codec.encode_parts(&raw.event, raw.ack, &payload)
}

impl<In: Events, Out: Events> Deliver for LocalNode<In, Out> {
    fn deliver(&self, message: Message) {
        let Some(inner) = self.server.upgrade() else {
            return;
        };
        tracing::trace!(?message, "message from another node");
        let server = Server { inner };
        let delivered = match message {
            Message::Room {
                room,
                except,
                only,
                frame,
            } => server.inner.rooms.deliver_room(
                &room,
                except,
                only,
                &mut frames_from_json::<Out>(&frame),
            ),
            Message::Rooms {
                rooms,
                except,
                frame,
            } => server.inner.rooms.deliver_rooms(
                &rooms,
                except,
                &mut frames_from_json::<Out>(&frame),
            ),
            Message::Broadcast { except, frame } => server
                .deliver_local(&mut frames_from_json::<Out>(&frame), |conn| {
                    Some(conn.id()) != except
                }),
            Message::Disconnect { conn, code, reason } => {
                if let Some(conn) = server.get(conn) {
                    conn.close(code, &reason);
                }
                Ok(0)
            }
            Message::Request {
                target,
                id,
                reply_to,
                timeout_ms,
                event,
                payload,
            } => server.answer_remote_request(target, id, reply_to, timeout_ms, &event, &payload),
            Message::Reply {
                to,
                id,
                conn,
                outcome,
            } => {
                if server
                    .inner
                    .cluster
                    .as_ref()
                    .is_some_and(|link| link.node_id() == to)
                {
                    server.inner.waiters.deliver(id, (conn, outcome));
                }
                Ok(0)
            }
        };
        if let Err(err) = delivered {
            tracing::error!(err = %Chain(&err), "a frame from another node is not valid for this node's codecs");
        }
    }

    fn memberships(&self) -> Vec<(RoomKey, Vec<(ConnId, PresenceRecord)>)> {
        match self.server.upgrade() {
            Some(inner) => inner.rooms.memberships(),
            None => Vec::new(),
        }
    }
}
