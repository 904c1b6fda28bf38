//! Channels and rooms: membership, room emits, room state and presence.
//!
//! A room is named by a channel and a key (`server.channel("chat").room("general")`)
//! and created on first use. Membership is indexed both ways: each room
//! knows its members, and each connection knows its rooms, so a connection
//! that ends leaves all of them in one step. Each room has its own lock, so
//! emits in different rooms do not contend; the registry's lock is only
//! taken to find, create or delete a room.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    sync::{
        Arc, RwLock, Weak,
        atomic::{AtomicBool, Ordering},
    },
};

use serde::Serialize;

use crate::{
    cluster::{ClusterError, Link, Message, Only},
    codec::{CodecKind, EncodeOnce, Frame},
    conn::{Conn, ConnId},
    error::{EmitError, EncodeError},
    event::Events,
    presence::{PresenceChange, PresenceKey, PresenceRecord, PresenceStore, now_ms},
    protocol::{
        ErrorCode, PRESENCE_JOIN, PRESENCE_LEAVE, PRESENCE_SNAPSHOT, PRESENCE_UPDATE, STATE_PATCH,
        STATE_SNAPSHOT,
    },
    state::{ChangeListener, RoomKey, RoomState, StatePatch, StateStore},
};

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

/// Why [`Room::join`] did not add a connection.
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
    /// Both off (the default).
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

/// Every room of a server, and the stores behind their state and presence.
pub(crate) struct Registry<Out> {
    rooms: RwLock<HashMap<RoomKey, Arc<RoomInner<Out>>>>,
    guards: HashMap<Arc<str>, JoinGuard<Out>>,
    guard_timeout: std::time::Duration,
    defaults: HashMap<Arc<str>, RoomDefaults>,
    pub(crate) state: Arc<dyn StateStore>,
    pub(crate) presence: Arc<dyn PresenceStore>,
    /// Given to each room's [`RoomState`] so changes reach synced members.
    on_change: ChangeListener,
    /// The other nodes, when the server is part of a cluster.
    pub(crate) cluster: Option<Arc<dyn Link>>,
    /// This node's requests waiting for replies from other nodes.
    pub(crate) waiters: Arc<crate::ack::Waiters>,
}

pub(crate) struct RoomInner<Out> {
    key: RoomKey,
    members: RwLock<HashMap<ConnId, Member<Out>>>,
    sync: AtomicBool,
    presence_events: AtomicBool,
    delete_when_empty: bool,
    /// Set, under the members lock, when the room leaves the registry; a
    /// handle that sees it looks the room up again.
    deleted: AtomicBool,
}

struct Member<Out> {
    conn: Conn<Out>,
    /// The presence key the member joined with; leaving uses the same one
    /// even if the connection's key changed meanwhile.
    presence: PresenceKey,
}

impl<Out: Events> RoomInner<Out> {
    fn new(key: RoomKey, defaults: RoomDefaults) -> Self {
        Self {
            key,
            members: RwLock::new(HashMap::new()),
            sync: AtomicBool::new(defaults.sync),
            presence_events: AtomicBool::new(defaults.presence_events),
            delete_when_empty: defaults.delete_when_empty,
            deleted: AtomicBool::new(false),
        }
    }

    fn members(&self) -> std::sync::RwLockReadGuard<'_, HashMap<ConnId, Member<Out>>> {
        self.members
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn members_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<ConnId, Member<Out>>> {
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
    fn send(
        &self,
        frames: &mut EncodeOnce<impl FnMut(crate::CodecKind) -> Result<Frame, EncodeError>>,
        keep: impl Fn(ConnId) -> bool,
    ) -> Result<usize, EncodeError> {
        let mut sent = 0;
        for (id, Member { conn, .. }) in self.members().iter() {
            if keep(*id)
                && let Ok(frame) = frames.get(conn.meta().codec())
                && conn.send_encoded(frame.clone()).is_ok()
            {
                sent += 1;
            }
        }
        frames.finish(sent)
    }

    /// Sends a reserved liweb event (state sync, presence) to members.
    fn send_reserved(&self, name: &str, payload: &impl Serialize, keep: impl Fn(ConnId) -> bool) {
        let mut frames =
            EncodeOnce::new(|codec: crate::CodecKind| codec.encode_parts(name, None, payload));
        if let Err(err) = self.send(&mut frames, keep) {
            tracing::error!(room = %self.key, %err, event = name, "cannot encode a room event");
        }
    }

    fn members_with(&self, presence: &PresenceKey) -> Vec<ConnId> {
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
                waiters: Arc::default(),
            }
        })
    }

    fn rooms(&self) -> std::sync::RwLockReadGuard<'_, HashMap<RoomKey, Arc<RoomInner<Out>>>> {
        self.rooms
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn rooms_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<RoomKey, Arc<RoomInner<Out>>>> {
        self.rooms
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn get(&self, key: &RoomKey) -> Option<Arc<RoomInner<Out>>> {
        self.rooms().get(key).cloned()
    }

    fn get_or_create(&self, key: &RoomKey) -> Arc<RoomInner<Out>> {
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
    async fn remove_room(
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
                        tracing::warn!(room = %key, %err, "kept the state of a room emptied here: cannot tell whether other nodes have members");
                        return true;
                    }
                }
            }
        }
        if let Err(err) = self.state.drop_room(key).await {
            tracing::error!(room = %key, %err, "cannot drop the state of a deleted room");
        }
        true
    }

    fn state_changed(&self, key: &RoomKey, patch: &StatePatch) {
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
    fn publish_reserved(
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
                tracing::error!(room = %room, %err, event = name, "cannot encode a room event")
            }
        }
    }

    /// Publishes a room emit, already encoded for local members, to the other nodes.
    fn publish_emit(
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

    /// Removes a connection from every room it is in; its presence in each
    /// goes offline. Called once, when the connection has ended.
    pub(crate) async fn leave_all(&self, conn: &Conn<Out>) {
        let keys = std::mem::take(&mut *conn.inner.rooms());
        for key in keys {
            if let Some(room) = self.get(&key) {
                self.leave_room(&room, conn).await;
            }
        }
    }

    /// Removes `conn` from `room`; `false` if it was not a member.
    async fn leave_room(&self, room: &Arc<RoomInner<Out>>, conn: &Conn<Out>) -> bool {
        let (member, now_empty) = {
            let mut members = room.members_mut();
            let Some(member) = members.remove(&conn.id()) else {
                return false;
            };
            if members.is_empty() {
                // Under the lock, so a join that follows subscribes after this.
                if let Some(cluster) = &self.cluster {
                    cluster.unsubscribe(&room.key);
                }
            }
            (member, members.is_empty())
        };
        conn.inner.rooms().retain(|key| *key != room.key);
        let change = self
            .presence
            .leave(&room.key, &member.presence, conn.id(), now_ms());
        if let Some(cluster) = &self.cluster {
            let offline = match &change {
                PresenceChange::Left(record) => Some(record.clone()),
                _ => None,
            };
            cluster.member_left(&room.key, conn.id(), offline).await;
        }
        self.announce(room, change, Some(conn.id()));
        if now_empty && room.delete_when_empty {
            self.remove_room(&room.key, Some(room)).await;
        }
        true
    }

    /// Sends a presence change to the room's other members, when the room
    /// asked for presence events.
    fn announce(&self, room: &RoomInner<Out>, change: PresenceChange, except: Option<ConnId>) {
        // Each node applies its own room's setting to what it receives; the
        // same application sets the same defaults on every node.
        if !room.presence_events.load(Ordering::Acquire) {
            return;
        }
        let (name, record) = match change {
            PresenceChange::Joined(record) => (PRESENCE_JOIN, record),
            PresenceChange::Left(record) => (PRESENCE_LEAVE, record),
            PresenceChange::Updated(record) => (PRESENCE_UPDATE, record),
            PresenceChange::Unchanged => return,
        };
        let payload = PresencePayload {
            channel: room.key.channel(),
            room: room.key.room(),
            presence: &record,
        };
        room.send_reserved(name, &payload, |id| Some(id) != except);
        self.publish_reserved(&room.key, name, &payload, except, Only::PresenceEvents);
    }
}

#[derive(Serialize)]
struct PatchPayload<'a> {
    channel: &'a str,
    room: &'a str,
    #[serde(flatten)]
    patch: &'a StatePatch,
}

#[derive(Serialize)]
struct SnapshotPayload<'a> {
    channel: &'a str,
    room: &'a str,
    state: &'a serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize)]
struct PresenceSnapshotPayload<'a> {
    channel: &'a str,
    room: &'a str,
    presence: &'a [PresenceRecord],
}

#[derive(Serialize)]
struct PresencePayload<'a> {
    channel: &'a str,
    room: &'a str,
    presence: &'a PresenceRecord,
}

/// Whose presence a connection is.
fn presence_key<Out: Events>(conn: &Conn<Out>) -> PresenceKey {
    conn.data::<PresenceKey>()
        .unwrap_or(PresenceKey::Conn(conn.id()))
}

/// A channel: a namespace of rooms. Get one with [`Server::channel`](crate::Server::channel).
pub struct Channel<Out> {
    registry: Arc<Registry<Out>>,
    name: Arc<str>,
}

impl<Out> Clone for Channel<Out> {
    fn clone(&self) -> Self {
        Self {
            registry: Arc::clone(&self.registry),
            name: Arc::clone(&self.name),
        }
    }
}

impl<Out> fmt::Debug for Channel<Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel").field("name", &self.name).finish()
    }
}

impl<Out: Events> Channel<Out> {
    pub(crate) fn new(registry: Arc<Registry<Out>>, name: &str) -> Self {
        Self {
            registry,
            name: Arc::from(name),
        }
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The room `key` of this channel, created if it does not exist yet.
    pub fn room(&self, key: &str) -> Room<Out> {
        let key = RoomKey::new(&*self.name, key);
        let inner = self.registry.get_or_create(&key);
        Room {
            registry: Arc::clone(&self.registry),
            inner,
        }
    }

    /// The room `key` if it exists. Does not create it: use this where a
    /// client names a room that should already be there.
    pub fn get(&self, key: &str) -> Option<Room<Out>> {
        let inner = self.registry.get(&RoomKey::new(&*self.name, key))?;
        Some(Room {
            registry: Arc::clone(&self.registry),
            inner,
        })
    }

    /// Whether the room `key` exists. Does not create it.
    pub fn has_room(&self, key: &str) -> bool {
        self.registry.get(&RoomKey::new(&*self.name, key)).is_some()
    }

    /// The keys of this channel's rooms, sorted.
    pub fn rooms(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .registry
            .rooms()
            .keys()
            .filter(|key| key.channel() == &*self.name)
            .map(|key| key.room().to_owned())
            .collect();
        keys.sort_unstable();
        keys
    }

    /// Deletes the room `key`: its members leave it (their presence goes
    /// offline, without presence events), its state and presence records are
    /// dropped, and its emits reach no one. Returns `false` if it did not exist.
    pub async fn delete_room(&self, key: &str) -> bool {
        self.registry
            .remove_room(&RoomKey::new(&*self.name, key), None)
            .await
    }
}

/// A room: its members, emits to them, its state and presence.
///
/// ```
/// # use liweb::prelude::*;
/// # #[derive(Events)] enum In { Join(String) }
/// # #[derive(Events)] enum Out { Joined(String) }
/// #[liweb::handler(In::Join)]
/// async fn join(conn: Conn<Out>, server: Server<In, Out>, room: String) -> Result<(), liweb::EncodeError> {
///     let room = server.channel("chat").room(&room);
///     if room.join(&conn).await.is_err() {
///         return Ok(()); // a join guard refused; the client got an `error` event
///     }
///     room.emit(Out::Joined(conn.id().to_string()))?; // only `Out` compiles
///     Ok(())
/// }
/// ```
pub struct Room<Out> {
    registry: Arc<Registry<Out>>,
    inner: Arc<RoomInner<Out>>,
}

impl<Out> Clone for Room<Out> {
    fn clone(&self) -> Self {
        Self {
            registry: Arc::clone(&self.registry),
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<Out> fmt::Debug for Room<Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Room")
            .field("key", &self.inner.key)
            .finish_non_exhaustive()
    }
}

impl<Out: Events> Room<Out> {
    /// The room's channel and key.
    pub fn key(&self) -> &RoomKey {
        &self.inner.key
    }

    /// The room behind this handle as it is now: the handle's own room, or
    /// after a delete, the room of the same name if one was made since;
    /// `None` if there is none (the room then reads as empty).
    fn current(&self) -> Option<Arc<RoomInner<Out>>> {
        if self.inner.deleted.load(Ordering::Acquire) {
            self.registry.get(&self.inner.key)
        } else {
            Some(Arc::clone(&self.inner))
        }
    }

    /// Adds a connection to the room; `Ok(false)` if it was already a member
    /// (or has closed). Marks its presence online; with presence events on,
    /// the other members get `presence:join`; with state sync on, the joiner
    /// gets `state:snapshot`.
    ///
    /// When the channel has a join guard (see
    /// [`ServerBuilder::join_guard`](crate::ServerBuilder::join_guard)), it
    /// runs first; a refusal or a guard that does not answer in time leaves
    /// the connection out of the room, sends it an `error` event
    /// (`join_rejected`) and returns the error. The connection stays open.
    pub async fn join(&self, conn: &Conn<Out>) -> Result<bool, JoinError> {
        if self.has(conn.id()) || conn.is_closed() {
            return Ok(false);
        }
        if !conn.inner.is_open() {
            return Err(JoinError::NotAuthenticated);
        }
        if let Some(guard) = self.registry.guards.get(self.inner.key.channel())
            && let Err(err) = self.run_guard(guard, conn).await
        {
            conn.send_error(
                ErrorCode::JoinRejected,
                format!("cannot join `{}`: {err}", self.inner.key),
                None,
            );
            return Err(err);
        }
        let key = &self.inner.key;
        let presence = presence_key(conn);
        let (room, subscribed) = loop {
            let room = self
                .current()
                .unwrap_or_else(|| self.registry.get_or_create(key));
            let mut members = room.members_mut();
            if room.deleted.load(Ordering::Acquire) {
                // Deleted between the look-up and the lock: look again.
                continue;
            }
            if conn.is_closed() || members.contains_key(&conn.id()) {
                return Ok(false);
            }
            members.insert(
                conn.id(),
                Member {
                    conn: conn.clone(),
                    presence: presence.clone(),
                },
            );
            // The first local member: start hearing the room's messages from
            // other nodes (under the lock, so it is ordered with the last
            // member's unsubscribe).
            let subscribed = match &self.registry.cluster {
                Some(cluster) if members.len() == 1 => Some(cluster.subscribe(key)),
                _ => None,
            };
            conn.inner.rooms().push(key.clone());
            drop(members);
            break (room, subscribed);
        };
        if let Some(subscribed) = subscribed {
            subscribed.await;
        }
        // A connection that ended while joining has already left its rooms;
        // undo, so no membership outlives it.
        if conn.is_closed() {
            self.registry.leave_room(&room, conn).await;
            return Ok(false);
        }
        let change = self
            .registry
            .presence
            .join(&room.key, &presence, conn.id(), now_ms());
        // If the connection's teardown removed it between the insert and the
        // presence join, that teardown's presence leave came first: undo ours.
        if !room.members().contains_key(&conn.id()) {
            self.registry
                .presence
                .leave(&room.key, &presence, conn.id(), now_ms());
            return Ok(false);
        }
        if let Some(cluster) = &self.registry.cluster
            && let Some(record) = self.registry.presence.get(&room.key, &presence, now_ms())
        {
            cluster.member_joined(&room.key, conn.id(), record).await;
        }
        self.registry.announce(&room, change, Some(conn.id()));
        if room.presence_events.load(Ordering::Acquire) {
            let records = match &self.registry.cluster {
                // Everyone in the room, on every node.
                Some(cluster) => match cluster.presence(&room.key, now_ms()).await {
                    Ok(records) => records,
                    Err(err) => {
                        tracing::warn!(room = %room.key, %err, "cluster presence unavailable; the joiner gets this node's");
                        self.registry.presence.list(&room.key, now_ms())
                    }
                },
                None => self.registry.presence.list(&room.key, now_ms()),
            };
            let payload = PresenceSnapshotPayload {
                channel: room.key.channel(),
                room: room.key.room(),
                presence: &records,
            };
            room.send_reserved(PRESENCE_SNAPSHOT, &payload, |id| id == conn.id());
        }
        if room.sync.load(Ordering::Acquire) {
            match self.registry.state.snapshot(&room.key).await {
                Ok(state) => {
                    let payload = SnapshotPayload {
                        channel: room.key.channel(),
                        room: room.key.room(),
                        state: &state,
                    };
                    room.send_reserved(STATE_SNAPSHOT, &payload, |id| id == conn.id());
                }
                Err(err) => {
                    tracing::error!(room = %room.key, %err, "cannot read a snapshot for a joiner")
                }
            }
        }
        Ok(true)
    }

    async fn run_guard(&self, guard: &JoinGuard<Out>, conn: &Conn<Out>) -> Result<(), JoinError> {
        let key = self.inner.key.clone();
        let checked =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| guard(conn.clone(), key)));
        let future = match checked {
            Ok(future) => future,
            Err(_) => {
                return Err(JoinError::Rejected(JoinRejected::new(
                    "the join guard failed",
                )));
            }
        };
        match tokio::time::timeout(
            self.registry.guard_timeout,
            futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(future)),
        )
        .await
        {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(rejected))) => Err(JoinError::Rejected(rejected)),
            Ok(Err(_panic)) => Err(JoinError::Rejected(JoinRejected::new(
                "the join guard failed",
            ))),
            Err(_elapsed) => Err(JoinError::TimedOut),
        }
    }

    /// Removes a connection from the room; `false` if it was not a member.
    pub async fn leave(&self, conn: &Conn<Out>) -> bool {
        match self.current() {
            Some(room) => self.registry.leave_room(&room, conn).await,
            None => false,
        }
    }

    /// Whether the connection `id` is a member.
    pub fn has(&self, id: ConnId) -> bool {
        self.current()
            .is_some_and(|room| room.members().contains_key(&id))
    }

    /// How many connections are members.
    pub fn size(&self) -> usize {
        self.current().map_or(0, |room| room.members().len())
    }

    /// The members' ids.
    pub fn members(&self) -> Vec<ConnId> {
        self.current()
            .map(|room| room.members().keys().copied().collect())
            .unwrap_or_default()
    }

    /// Sends an event to every member, serialized once per codec in use.
    /// Returns how many members it was queued for (0 for a deleted room).
    ///
    /// In a cluster the event also goes, once, to the other nodes, which
    /// deliver it to their members; the count is of this node's members.
    pub fn emit(&self, event: Out) -> Result<usize, EncodeError> {
        self.emit_where(&event, None)
    }

    /// Sends an event to every member but `id` (usually the sender), on
    /// every node of a cluster.
    pub fn emit_except(&self, id: ConnId, event: Out) -> Result<usize, EncodeError> {
        self.emit_where(&event, Some(id))
    }

    fn emit_where(&self, event: &Out, except: Option<ConnId>) -> Result<usize, EncodeError> {
        let mut frames = EncodeOnce::new(|codec| codec.encode(event));
        // Other nodes still get it when a codec used here cannot encode it.
        let local = match self.current() {
            Some(room) => room.send(&mut frames, |member| Some(member) != except),
            None => Ok(0),
        };
        self.registry
            .publish_emit(&self.inner.key, &mut frames, except)?;
        local
    }

    /// Sends an event to the member `id`; `Ok(false)` when `id` is not a
    /// member on this node (in a cluster, `emit_to` does not look further).
    pub fn emit_to(&self, id: ConnId, event: Out) -> Result<bool, EmitError> {
        let Some(conn) = self
            .current()
            .and_then(|room| room.members().get(&id).map(|member| member.conn.clone()))
        else {
            return Ok(false);
        };
        conn.emit(event).map(|()| true)
    }

    /// Sends `event` as a request to every member and collects their
    /// replies as a stream, one per member:
    ///
    /// ```no_run
    /// # use liweb::prelude::*;
    /// # use std::time::Duration;
    /// # use futures_util::StreamExt;
    /// # #[derive(Events)] enum Out { Vote(String) }
    /// # async fn ask(room: liweb::Room<Out>) -> Result<(), liweb::EncodeError> {
    /// let mut replies = room
    ///     .request::<bool>(Out::Vote("pizza?".into()))
    ///     .timeout(Duration::from_secs(3))
    ///     .send()?;
    /// while let Some((member, reply)) = replies.next().await {
    ///     println!("{member}: {reply:?}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn request<R: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        event: Out,
    ) -> crate::MultiRequest<Out, R> {
        let conns = self
            .current()
            .map(|room| {
                room.members()
                    .values()
                    .map(|member| member.conn.clone())
                    .collect()
            })
            .unwrap_or_default();
        let request = crate::MultiRequest::new(conns, event);
        match &self.registry.cluster {
            Some(link) => request.across(
                Arc::clone(link),
                Arc::clone(&self.registry.waiters),
                crate::cluster::Target::Room(self.inner.key.clone()),
            ),
            None => request,
        }
    }

    /// The room's state; see [`RoomState`].
    pub fn state(&self) -> RoomState {
        RoomState::new(
            Arc::clone(&self.registry.state),
            self.inner.key.clone(),
            Some(Arc::clone(&self.registry.on_change)),
        )
    }

    /// Turns state sync on or off: when on, members receive each state change
    /// as a `state:patch` event and joiners a `state:snapshot`. To have it on
    /// from a room's first join, set it for the whole channel with
    /// [`ServerBuilder::channel_defaults`](crate::ServerBuilder::channel_defaults).
    ///
    /// On a handle to a deleted room this changes nothing.
    pub fn set_sync(&self, on: bool) {
        if let Some(room) = self.current() {
            room.sync.store(on, Ordering::Release);
        }
    }

    /// Turns presence events on or off: when on, members receive
    /// `presence:join`, `presence:leave` and `presence:update` about the
    /// others, and joiners a `presence:snapshot` of everyone's presence.
    ///
    /// On a handle to a deleted room this changes nothing.
    pub fn set_presence_events(&self, on: bool) {
        if let Some(room) = self.current() {
            room.presence_events.store(on, Ordering::Release);
        }
    }

    /// The room's presence records: online members first, then recent
    /// offline ones until they expire.
    pub fn presence(&self) -> Vec<PresenceRecord> {
        self.registry.presence.list(&self.inner.key, now_ms())
    }

    /// How many members are online (users, once authentication identifies
    /// them; connections before).
    pub fn online_count(&self) -> usize {
        self.registry.presence.online_count(&self.inner.key)
    }

    /// Sets (or clears) the activity string of a member's presence, such as
    /// "typing"; announced as `presence:update` when presence events are on.
    /// Returns `false` when `conn` is not a member.
    pub fn set_activity(&self, conn: &Conn<Out>, activity: Option<String>) -> bool {
        let Some(room) = self.current() else {
            return false;
        };
        let Some(presence) = room
            .members()
            .get(&conn.id())
            .map(|member| member.presence.clone())
        else {
            return false;
        };
        match self
            .registry
            .presence
            .set_activity(&room.key, &presence, activity, now_ms())
        {
            Some(change) => {
                if let Some(cluster) = &self.registry.cluster
                    && let Some(record) = self.registry.presence.get(&room.key, &presence, now_ms())
                {
                    for id in room.members_with(&presence) {
                        tokio::spawn(cluster.member_joined(&room.key, id, record.clone()));
                    }
                }
                self.registry.announce(&room, change, Some(conn.id()));
                true
            }
            None => false,
        }
    }

    /// The members' ids on every node of the cluster; without a cluster,
    /// [`Room::members`]. Members of nodes that stopped sending heartbeats
    /// are left out.
    pub async fn cluster_members(&self) -> Result<Vec<ConnId>, ClusterError> {
        match &self.registry.cluster {
            Some(cluster) => cluster.members(&self.inner.key).await,
            None => Ok(self.members()),
        }
    }

    /// How many connections are members on every node of the cluster;
    /// without a cluster, [`Room::size`].
    pub async fn cluster_size(&self) -> Result<usize, ClusterError> {
        match &self.registry.cluster {
            Some(cluster) => cluster.members(&self.inner.key).await.map(|m| m.len()),
            None => Ok(self.size()),
        }
    }

    /// The room's presence records across the cluster, one per user (or
    /// connection) however many nodes its connections are on; without a
    /// cluster, [`Room::presence`].
    pub async fn cluster_presence(&self) -> Result<Vec<PresenceRecord>, ClusterError> {
        match &self.registry.cluster {
            Some(cluster) => cluster.presence(&self.inner.key, now_ms()).await,
            None => Ok(self.presence()),
        }
    }

    /// How many keys are online across the cluster; without a cluster,
    /// [`Room::online_count`].
    pub async fn cluster_online_count(&self) -> Result<usize, ClusterError> {
        Ok(self
            .cluster_presence()
            .await?
            .iter()
            .filter(|record| record.online)
            .count())
    }
}

/// Several rooms addressed at once; see [`Server::to`](crate::Server::to).
pub struct Rooms<Out> {
    rooms: Vec<Room<Out>>,
}

impl<Out> fmt::Debug for Rooms<Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.rooms.iter().map(|room| &room.inner.key))
            .finish()
    }
}

impl<Out: Events> Rooms<Out> {
    pub(crate) fn new(rooms: Vec<Room<Out>>) -> Self {
        Self { rooms }
    }

    /// Sends an event once to every connection in any of the rooms, even a
    /// connection in several of them; serialized once per codec in use.
    pub fn emit(&self, event: Out) -> Result<usize, EncodeError> {
        self.emit_where(&event, None)
    }

    /// As [`Rooms::emit`], skipping the connection `id`.
    pub fn emit_except(&self, id: ConnId, event: Out) -> Result<usize, EncodeError> {
        self.emit_where(&event, Some(id))
    }

    fn emit_where(&self, event: &Out, except: Option<ConnId>) -> Result<usize, EncodeError> {
        let mut frames = EncodeOnce::new(|codec| codec.encode(event));
        let rooms: Vec<Arc<RoomInner<Out>>> = self.rooms.iter().filter_map(Room::current).collect();
        // Other nodes still get it when a codec used here cannot encode it.
        let local = send_once(rooms.iter(), &mut frames, except);
        if let Some(cluster) = self
            .rooms
            .first()
            .and_then(|room| room.registry.cluster.as_ref())
        {
            // One message for all the rooms, so a node with a connection in
            // several of them delivers it once.
            let frame = frames.get(CodecKind::Json)?.clone();
            cluster.publish(Message::Rooms {
                rooms: self
                    .rooms
                    .iter()
                    .map(|room| room.inner.key.clone())
                    .collect(),
                except,
                frame: frame.into_bytes(),
            });
        }
        local
    }
}

/// Sends to every member of any of `rooms` once, but `except`.
fn send_once<'a, Out: Events + 'a>(
    rooms: impl Iterator<Item = &'a Arc<RoomInner<Out>>>,
    frames: &mut EncodeOnce<impl FnMut(CodecKind) -> Result<Frame, EncodeError>>,
    except: Option<ConnId>,
) -> Result<usize, EncodeError> {
    let mut reached = HashSet::new();
    if let Some(id) = except {
        reached.insert(id);
    }
    let mut sent = 0;
    for room in rooms {
        for (id, Member { conn, .. }) in room.members().iter() {
            if reached.insert(*id)
                && let Ok(frame) = frames.get(conn.meta().codec())
                && conn.send_encoded(frame.clone()).is_ok()
            {
                sent += 1;
            }
        }
    }
    frames.finish(sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CodecKind, Server};

    #[derive(Debug, crate::Events)]
    pub(crate) enum In {
        Noop,
    }

    #[derive(Debug, crate::Events)]
    pub(crate) enum Out {
        Note(String),
    }

    #[tokio::test]
    async fn a_delete_when_empty_room_goes_away_with_its_state_when_its_last_member_leaves() {
        let server = Server::<In, Out>::builder()
            .channel_defaults("temp", RoomDefaults::new().delete_when_empty(true))
            .build();
        let channel = server.channel("temp");
        let room = channel.room("r");
        let (a, _a_rx) = Conn::<Out>::detached(CodecKind::Json);
        let (b, _b_rx) = Conn::<Out>::detached(CodecKind::Json);
        assert_eq!(room.join(&a).await, Ok(true));
        assert_eq!(room.join(&b).await, Ok(true));
        room.state().set("k", &1).await.unwrap();

        assert!(room.leave(&a).await);
        assert!(channel.has_room("r"), "one member is left");
        assert!(room.leave(&b).await);
        assert!(!channel.has_room("r"), "the last member left");
        assert!(channel.get("r").is_none());
        assert_eq!(room.size(), 0, "a stale handle reads an empty room");
        assert_eq!(room.emit(Out::Note("x".into())).unwrap(), 0);
        assert!(!channel.has_room("r"), "reading did not bring it back");
        assert_eq!(
            channel.room("r").state().get::<i32>("k").await.unwrap(),
            None
        );

        // Rooms of other channels stay when empty.
        let kept = server.channel("keep").room("r");
        assert_eq!(kept.join(&a).await, Ok(true));
        assert!(kept.leave(&a).await);
        assert!(server.channel("keep").has_room("r"));
    }

    #[tokio::test]
    async fn a_stale_handle_joins_the_room_made_after_a_delete() {
        let server = Server::<In, Out>::builder().build();
        let channel = server.channel("c");
        let stale = channel.room("r");
        assert!(channel.delete_room("r").await);
        let (a, _rx) = Conn::<Out>::detached(CodecKind::Json);
        assert_eq!(stale.join(&a).await, Ok(true));
        let fresh = channel.get("r").expect("the join made the room again");
        assert!(fresh.has(a.id()));
        assert!(stale.has(a.id()), "the stale handle sees the new room");
        assert_eq!(a.rooms(), vec![RoomKey::new("c", "r")]);
    }
}
