//! Every room of a server: find, create and delete rooms; the state and
//! presence stores behind them; room messages to and from other nodes.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, RwLock, Weak,
        atomic::{AtomicBool, Ordering},
    },
};

use serde::Serialize;

use super::{
    defaults::{JoinGuard, RoomDefaults},
    fanout::{fanout, send},
    key::RoomKey,
};
use crate::{
    cluster::{Link, Message, Only},
    codec::{CodecKind, EncodeOnce, Frame},
    conn::{Conn, ConnId},
    error::Chain,
    error::EncodeError,
    event::Events,
    presence::{PresenceKey, PresenceRecord, PresenceStore, now_ms},
    protocol::STATE_PATCH,
    request::Waiters,
    state::{ChangeListener, StatePatch, StateStore},
};

/// Every room of a server, and the stores behind their state and presence.
pub(crate) struct Registry<Out> {
    pub(crate) rooms: RwLock<HashMap<RoomKey, Arc<RoomInner<Out>>>>,
    pub(crate) guards: HashMap<Arc<str>, JoinGuard<Out>>,
    pub(crate) guard_timeout: std::time::Duration,
    pub(crate) defaults: HashMap<Arc<str>, RoomDefaults>,
    pub(crate) state: Arc<dyn StateStore>,
    pub(crate) presence: Arc<dyn PresenceStore>,
    /// Given to each room's [`RoomState`] so changes reach synced members.
    pub(crate) on_change: ChangeListener,
    /// The server's link to the other nodes, when it is part of a cluster:
    /// rooms publish their traffic through it.
    pub(crate) cluster: Option<Arc<dyn Link>>,
    /// The server's waiters for other nodes' replies, for requests to a
    /// room's members on every node.
    pub(crate) waiters: Arc<Waiters>,
}

pub(crate) struct RoomInner<Out> {
    pub(crate) key: RoomKey,
    pub(crate) members: RwLock<HashMap<ConnId, Member<Out>>>,
    pub(crate) sync: AtomicBool,
    pub(crate) presence_events: AtomicBool,
    pub(crate) delete_when_empty: bool,
    /// Set, under the members lock, when the room leaves the registry; a
    /// handle that sees it looks the room up again.
    pub(crate) deleted: AtomicBool,
}

pub(crate) struct Member<Out> {
    pub(crate) conn: Conn<Out>,
    /// The presence key the member joined with; leaving uses the same one
    /// even if the connection's key changed meanwhile.
    pub(crate) presence: PresenceKey,
}

impl<Out: Events> RoomInner<Out> {
    pub(crate) fn new(key: RoomKey, defaults: RoomDefaults) -> Self {
        Self {
            key,
            members: RwLock::new(HashMap::new()),
            sync: AtomicBool::new(defaults.sync),
            presence_events: AtomicBool::new(defaults.presence_events),
            delete_when_empty: defaults.delete_when_empty,
            deleted: AtomicBool::new(false),
        }
    }

    pub(crate) fn members(&self) -> std::sync::RwLockReadGuard<'_, HashMap<ConnId, Member<Out>>> {
        self.members
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn members_mut(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, HashMap<ConnId, Member<Out>>> {
        self.members
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues one encoded message for every member `keep` accepts.
    ///
    /// A codec that cannot encode the message (bincode and a
    /// `#[serde(flatten)]` payload, say) fails for its own members only: the
    /// members speaking other codecs still get it, then the first error is
    /// returned.
    pub(crate) fn send(
        &self,
        frames: &mut EncodeOnce<impl FnMut(CodecKind) -> Result<Frame, EncodeError>>,
        keep: impl Fn(ConnId) -> bool,
    ) -> Result<usize, EncodeError> {
        let members = self.members();
        let conns = members
            .iter()
            .filter(|(id, _)| keep(**id))
            .map(|(_, member)| &member.conn);
        fanout(conns, frames)
    }

    /// Sends a reserved liweb event (state sync, presence) to members.
    pub(crate) fn send_reserved(
        &self,
        name: &str,
        payload: &impl Serialize,
        keep: impl Fn(ConnId) -> bool,
    ) {
        let mut frames =
            EncodeOnce::new(|codec: CodecKind| codec.encode_parts(name, None, payload));
        if let Err(err) = self.send(&mut frames, keep) {
            tracing::error!(room = %self.key, err = %Chain(&err), event = name, "cannot encode a room event");
        }
    }

    pub(crate) fn members_with(&self, presence: &PresenceKey) -> Vec<ConnId> {
        self.members()
            .iter()
            .filter(|(_, member)| member.presence == *presence)
            .map(|(id, _)| *id)
            .collect()
    }
}

impl<Out: Events> Registry<Out> {
    pub(crate) fn new(
        state: Arc<dyn StateStore>,
        presence: Arc<dyn PresenceStore>,
        guards: HashMap<Arc<str>, JoinGuard<Out>>,
        guard_timeout: std::time::Duration,
        defaults: HashMap<Arc<str>, RoomDefaults>,
        cluster: Option<Arc<dyn Link>>,
        waiters: Arc<Waiters>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|weak: &Weak<Self>| {
            let weak = weak.clone();
            let on_change: ChangeListener = Arc::new(move |key: &RoomKey, patch: &StatePatch| {
                if let Some(registry) = weak.upgrade() {
                    registry.state_changed(key, patch);
                }
            });
            Self {
                rooms: RwLock::new(HashMap::new()),
                guards,
                guard_timeout,
                defaults,
                state,
                presence,
                on_change,
                cluster,
                waiters,
            }
        })
    }

    pub(crate) fn rooms(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, HashMap<RoomKey, Arc<RoomInner<Out>>>> {
        self.rooms
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn rooms_mut(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, HashMap<RoomKey, Arc<RoomInner<Out>>>> {
        self.rooms
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn get(&self, key: &RoomKey) -> Option<Arc<RoomInner<Out>>> {
        self.rooms().get(key).cloned()
    }

    pub(crate) fn get_or_create(&self, key: &RoomKey) -> Arc<RoomInner<Out>> {
        if let Some(room) = self.get(key) {
            return room;
        }
        Arc::clone(self.rooms_mut().entry(key.clone()).or_insert_with(|| {
            let defaults = self
                .defaults
                .get(key.channel())
                .copied()
                .unwrap_or_default();
            Arc::new(RoomInner::new(key.clone(), defaults))
        }))
    }

    /// Takes a room out of the registry: members leave it (without presence
    /// events), its presence and state are dropped. With `only_if_empty`, only
    /// that very room and only while it has no members (a join may have come
    /// in since its last member left).
    pub(crate) async fn remove_room(
        &self,
        key: &RoomKey,
        only_if_empty: Option<&Arc<RoomInner<Out>>>,
    ) -> bool {
        let members = {
            let mut rooms = self.rooms_mut();
            let Some(room) = rooms.get(key).cloned() else {
                return false;
            };
            if only_if_empty.is_some_and(|expected| !Arc::ptr_eq(expected, &room)) {
                return false;
            }
            let mut members = room.members_mut();
            if only_if_empty.is_some() && !members.is_empty() {
                return false;
            }
            room.deleted.store(true, Ordering::Release);
            rooms.remove(key);
            if !members.is_empty()
                && let Some(cluster) = &self.cluster
            {
                cluster.unsubscribe(key);
            }
            members
                .drain()
                .map(|(_, member)| member)
                .collect::<Vec<_>>()
        };
        for member in &members {
            member
                .conn
                .inner
                .rooms()
                .retain(|member_of| member_of != key);
        }
        self.presence.drop_room(key);
        if let Some(cluster) = &self.cluster {
            cluster.drop_room(key).await;
            // The state is shared: a room emptied here may have members on
            // other nodes, whose state must stay.
            if only_if_empty.is_some() {
                match cluster.members(key).await {
                    Ok(members) if members.is_empty() => {}
                    Ok(_) => return true,
                    Err(err) => {
                        tracing::warn!(room = %key, err = %Chain(&err), "kept the state of a room emptied here: cannot tell whether other nodes have members");
                        return true;
                    }
                }
            }
        }
        if let Err(err) = self.state.drop_room(key).await {
            tracing::error!(room = %key, err = %Chain(&err), "cannot drop the state of a deleted room");
        }
        true
    }

    pub(crate) fn state_changed(&self, key: &RoomKey, patch: &StatePatch) {
        let payload = PatchPayload {
            channel: key.channel(),
            room: key.room(),
            patch,
        };
        if let Some(room) = self.get(key)
            && room.sync.load(Ordering::Acquire)
        {
            room.send_reserved(STATE_PATCH, &payload, |_| true);
        }
        // Other nodes' members of the room may be synced even when this node
        // has none.
        self.publish_reserved(key, STATE_PATCH, &payload, None, Only::Synced);
    }

    /// Publishes a reserved event of `room` to the other nodes.
    pub(crate) fn publish_reserved(
        &self,
        room: &RoomKey,
        name: &str,
        payload: &impl Serialize,
        except: Option<ConnId>,
        only: Only,
    ) {
        let Some(cluster) = &self.cluster else { return };
        match CodecKind::Json.encode_parts(name, None, payload) {
            Ok(frame) => cluster.publish(Message::Room {
                room: room.clone(),
                except,
                only,
                frame: frame.into_bytes(),
            }),
            Err(err) => {
                tracing::error!(room = %room, err = %Chain(&err), event = name, "cannot encode a room event")
            }
        }
    }

    /// Publishes a room emit, already encoded for local members, to the other nodes.
    pub(crate) fn publish_emit(
        &self,
        room: &RoomKey,
        frames: &mut EncodeOnce<impl FnMut(CodecKind) -> Result<Frame, EncodeError>>,
        except: Option<ConnId>,
    ) -> Result<(), EncodeError> {
        if let Some(cluster) = &self.cluster {
            let frame = frames.get(CodecKind::Json)?.clone();
            cluster.publish(Message::Room {
                room: room.clone(),
                except,
                only: Only::All,
                frame: frame.into_bytes(),
            });
        }
        Ok(())
    }

    /// Delivers another node's room message to the local members.
    pub(crate) fn deliver_room(
        &self,
        key: &RoomKey,
        except: Option<ConnId>,
        only: Only,
        frames: &mut EncodeOnce<impl FnMut(CodecKind) -> Result<Frame, EncodeError>>,
    ) -> Result<usize, EncodeError> {
        let Some(room) = self.get(key) else {
            return Ok(0);
        };
        let wanted = match only {
            Only::All => true,
            Only::Synced => room.sync.load(Ordering::Acquire),
            Only::PresenceEvents => room.presence_events.load(Ordering::Acquire),
        };
        if !wanted {
            return Ok(0);
        }
        room.send(frames, |id| Some(id) != except)
    }

    /// The local members of `key`, for a request from another node.
    pub(crate) fn local_member_conns(&self, key: &RoomKey) -> Vec<Conn<Out>> {
        self.get(key)
            .map(|room| room.members().values().map(|m| m.conn.clone()).collect())
            .unwrap_or_default()
    }

    /// Delivers another node's multi-room message to the local members,
    /// once each.
    pub(crate) fn deliver_rooms(
        &self,
        keys: &[RoomKey],
        except: Option<ConnId>,
        frames: &mut EncodeOnce<impl FnMut(CodecKind) -> Result<Frame, EncodeError>>,
    ) -> Result<usize, EncodeError> {
        let rooms: Vec<Arc<RoomInner<Out>>> = keys.iter().filter_map(|key| self.get(key)).collect();
        send_once(rooms.iter(), frames, except)
    }

    /// Every local member of every room with its presence record.
    pub(crate) fn memberships(&self) -> Vec<(RoomKey, Vec<(ConnId, PresenceRecord)>)> {
        let rooms: Vec<Arc<RoomInner<Out>>> = self.rooms().values().cloned().collect();
        let now = now_ms();
        rooms
            .iter()
            .map(|room| {
                let members = room
                    .members()
                    .iter()
                    .filter_map(|(id, member)| {
                        self.presence
                            .get(&room.key, &member.presence, now)
                            .map(|record| (*id, record))
                    })
                    .collect();
                (room.key.clone(), members)
            })
            .collect()
    }
}

#[derive(Serialize)]
pub(crate) struct PatchPayload<'a> {
    pub(crate) channel: &'a str,
    pub(crate) room: &'a str,
    #[serde(flatten)]
    pub(crate) patch: &'a StatePatch,
}

#[derive(Serialize)]
pub(crate) struct SnapshotPayload<'a> {
    pub(crate) channel: &'a str,
    pub(crate) room: &'a str,
    pub(crate) state: &'a serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize)]
pub(crate) struct PresenceSnapshotPayload<'a> {
    pub(crate) channel: &'a str,
    pub(crate) room: &'a str,
    pub(crate) presence: &'a [PresenceRecord],
}

#[derive(Serialize)]
pub(crate) struct PresencePayload<'a> {
    pub(crate) channel: &'a str,
    pub(crate) room: &'a str,
    pub(crate) presence: &'a PresenceRecord,
}

/// Sends to every member of any of `rooms` once, but `except`.
pub(crate) fn send_once<'a, Out: Events + 'a>(
    rooms: impl Iterator<Item = &'a Arc<RoomInner<Out>>>,
    frames: &mut EncodeOnce<impl FnMut(CodecKind) -> Result<Frame, EncodeError>>,
    except: Option<ConnId>,
) -> Result<usize, EncodeError> {
    let mut reached: HashSet<ConnId> = except.into_iter().collect();
    // One room's lock at a time, as a single room emit holds it.
    let mut sent = 0;
    for room in rooms {
        let members = room.members();
        let conns = members
            .iter()
            .filter(|(id, _)| reached.insert(**id))
            .map(|(_, member)| &member.conn);
        sent += send(conns, frames);
    }
    frames.finish(sent)
}
