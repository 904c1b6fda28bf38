//! Every room of a server: find, create and delete rooms; the state and
//! presence stores behind them; room messages to and from other nodes.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, RwLock, Weak,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
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

/// What bounds a join: the guard's time to answer, the rooms per connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JoinLimits {
    pub(crate) guard_timeout: std::time::Duration,
    pub(crate) max_rooms_per_connection: Option<usize>,
}

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
    /// The most rooms one connection may be in; `None`: no limit.
    pub(crate) max_rooms_per_connection: Option<usize>,
    /// Joins refused at `max_rooms_per_connection`, for the server's stats.
    pub(crate) room_limit_refusals: AtomicU64,
    /// Drops the state of a room that went away with its last handle (on a
    /// task: stores are async, handles are dropped anywhere).
    pub(crate) abandoned: Arc<dyn Fn(&RoomKey) + Send + Sync>,
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
    /// How many [`Room`](super::Room) handles hold the room. Only raised
    /// under the registry's lock when a handle comes from the registry, so
    /// under its write lock a count of 0 cannot rise: a room of a
    /// `delete_when_empty` channel that nobody joined goes away when its last
    /// handle drops.
    pub(crate) handles: AtomicUsize,
    /// Whether a handle asked for the room's state: only then does a room
    /// that goes away with its last handle have state to drop.
    pub(crate) state_used: AtomicBool,
}

pub(crate) struct Member<Out> {
    pub(crate) conn: Conn<Out>,
    /// The presence key the member joined with; leaving uses the same one
    /// even if the connection's key changed meanwhile.
    pub(crate) presence: PresenceKey,
}

impl<Out> RoomInner<Out> {
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
            handles: AtomicUsize::new(0),
            state_used: AtomicBool::new(false),
        }
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

impl<Out> Registry<Out> {
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

    /// Takes `room` out of the registry if nothing holds it: no handle, no
    /// member. Called when the last handle of a `delete_when_empty` room
    /// drops, so a room looked up and abandoned (a join refused before it was
    /// made, say) does not stay behind.
    pub(crate) fn release(&self, room: &Arc<RoomInner<Out>>) {
        {
            let mut rooms = self.rooms_mut();
            if !rooms
                .get(&room.key)
                .is_some_and(|indexed| Arc::ptr_eq(indexed, room))
            {
                return;
            }
            let members = room.members_mut();
            if !members.is_empty() || room.handles.load(Ordering::Acquire) != 0 {
                return;
            }
            room.deleted.store(true, Ordering::Release);
            rooms.remove(&room.key);
        }
        // A room that had members went away when the last one left; this
        // one never had any, so it has no presence and nothing in the
        // cluster's membership. Its state is dropped only if it was used.
        if room.state_used.load(Ordering::Acquire) {
            (self.abandoned)(&room.key);
        }
    }
}

impl<Out: Events> Registry<Out> {
    pub(crate) fn new(
        state: Arc<dyn StateStore>,
        presence: Arc<dyn PresenceStore>,
        guards: HashMap<Arc<str>, JoinGuard<Out>>,
        limits: JoinLimits,
        defaults: HashMap<Arc<str>, RoomDefaults>,
        cluster: Option<Arc<dyn Link>>,
        waiters: Arc<Waiters>,
    ) -> Arc<Self> {
        let JoinLimits {
            guard_timeout,
            max_rooms_per_connection,
        } = limits;
        Arc::new_cyclic(|weak: &Weak<Self>| {
            let on_abandoned = weak.clone();
            let abandoned = Arc::new(move |key: &RoomKey| {
                let Some(registry) = on_abandoned.upgrade() else {
                    return;
                };
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    tracing::warn!(room = %key, "kept the state of an abandoned room: no runtime to drop it on");
                    return;
                };
                let key = key.clone();
                runtime.spawn(async move { registry.drop_abandoned_state(&key).await });
            });
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
                max_rooms_per_connection,
                room_limit_refusals: AtomicU64::new(0),
                abandoned,
            }
        })
    }

    /// The room `key` for a new handle, if it exists. The handle count
    /// rises under the registry's lock (see [`RoomInner::handles`]).
    pub(crate) fn existing_handle(&self, key: &RoomKey) -> Option<Arc<RoomInner<Out>>> {
        let rooms = self.rooms();
        let room = rooms.get(key)?;
        room.handles.fetch_add(1, Ordering::AcqRel);
        Some(Arc::clone(room))
    }

    /// The room `key` for a new handle, created if missing.
    pub(crate) fn handle(&self, key: &RoomKey) -> Arc<RoomInner<Out>> {
        if let Some(room) = self.existing_handle(key) {
            return room;
        }
        let mut rooms = self.rooms_mut();
        let room = rooms.entry(key.clone()).or_insert_with(|| {
            let defaults = self
                .defaults
                .get(key.channel())
                .copied()
                .unwrap_or_default();
            Arc::new(RoomInner::new(key.clone(), defaults))
        });
        room.handles.fetch_add(1, Ordering::AcqRel);
        Arc::clone(room)
    }

    async fn drop_abandoned_state(&self, key: &RoomKey) {
        if let Some(cluster) = &self.cluster {
            // The state is shared: other nodes may have members.
            match cluster.members(key).await {
                Ok(members) if members.is_empty() => {}
                Ok(_) => return,
                Err(err) => {
                    tracing::warn!(room = %key, err = %Chain(&err), "kept the state of an abandoned room: cannot tell whether other nodes have members");
                    return;
                }
            }
        }
        // A room of the same name made since then owns the state now.
        if self.get(key).is_some() {
            return;
        }
        if let Err(err) = self.state.drop_room(key).await {
            tracing::error!(room = %key, err = %Chain(&err), "cannot drop the state of an abandoned room");
        }
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
