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
    codec::{EncodeOnce, Frame},
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
}

impl RoomDefaults {
    /// Both off (the default).
    pub const fn new() -> Self {
        Self {
            sync: false,
            presence_events: false,
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
}

pub(crate) struct RoomInner<Out> {
    key: RoomKey,
    members: RwLock<HashMap<ConnId, Conn<Out>>>,
    sync: AtomicBool,
    presence_events: AtomicBool,
    deleted: AtomicBool,
}

impl<Out: Events> RoomInner<Out> {
    fn new(key: RoomKey) -> Self {
        Self {
            key,
            members: RwLock::new(HashMap::new()),
            sync: AtomicBool::new(false),
            presence_events: AtomicBool::new(false),
            deleted: AtomicBool::new(false),
        }
    }

    fn members(&self) -> std::sync::RwLockReadGuard<'_, HashMap<ConnId, Conn<Out>>> {
        self.members
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn members_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<ConnId, Conn<Out>>> {
        self.members
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues one encoded message for every member `keep` accepts.
    fn send(
        &self,
        frames: &mut EncodeOnce<impl FnMut(crate::CodecKind) -> Result<Frame, EncodeError>>,
        keep: impl Fn(ConnId) -> bool,
    ) -> Result<usize, EncodeError> {
        let mut sent = 0;
        for (id, conn) in self.members().iter() {
            if keep(*id)
                && conn
                    .send_encoded(frames.get(conn.meta().codec())?.clone())
                    .is_ok()
            {
                sent += 1;
            }
        }
        Ok(sent)
    }

    /// Sends a reserved liweb event (state sync, presence) to members.
    fn send_reserved(&self, name: &str, payload: &impl Serialize, keep: impl Fn(ConnId) -> bool) {
        let mut frames =
            EncodeOnce::new(|codec: crate::CodecKind| codec.encode_parts(name, payload));
        if let Err(err) = self.send(&mut frames, keep) {
            tracing::error!(room = %self.key, %err, event = name, "cannot encode a room event");
        }
    }
}

impl<Out: Events> Registry<Out> {
    pub(crate) fn new(
        state: Arc<dyn StateStore>,
        presence: Arc<dyn PresenceStore>,
        guards: HashMap<Arc<str>, JoinGuard<Out>>,
        guard_timeout: std::time::Duration,
        defaults: HashMap<Arc<str>, RoomDefaults>,
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
            let room = RoomInner::new(key.clone());
            if let Some(defaults) = self.defaults.get(key.channel()) {
                room.sync.store(defaults.sync, Ordering::Release);
                room.presence_events
                    .store(defaults.presence_events, Ordering::Release);
            }
            Arc::new(room)
        }))
    }

    fn state_changed(&self, key: &RoomKey, patch: &StatePatch) {
        let Some(room) = self.get(key) else { return };
        if room.sync.load(Ordering::Acquire) {
            let payload = PatchPayload {
                channel: key.channel(),
                room: key.room(),
                patch,
            };
            room.send_reserved(STATE_PATCH, &payload, |_| true);
        }
    }

    /// Removes a connection from every room it is in; its presence in each
    /// goes offline. Called once, when the connection has ended.
    pub(crate) async fn leave_all(&self, conn: &Conn<Out>) {
        let keys = std::mem::take(&mut *conn.inner.rooms());
        for key in keys {
            if let Some(room) = self.get(&key) {
                self.leave_room(&room, conn);
            }
        }
    }

    /// Removes `conn` from `room`; `false` if it was not a member.
    fn leave_room(&self, room: &RoomInner<Out>, conn: &Conn<Out>) -> bool {
        if room.members_mut().remove(&conn.id()).is_none() {
            return false;
        }
        conn.inner.rooms().retain(|key| *key != room.key);
        let change = self
            .presence
            .leave(&room.key, &presence_key(conn), conn.id(), now_ms());
        self.announce(room, change, Some(conn.id()));
        true
    }

    /// Sends a presence change to the room's other members, when the room
    /// asked for presence events.
    fn announce(&self, room: &RoomInner<Out>, change: PresenceChange, except: Option<ConnId>) {
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
        let key = RoomKey::new(&*self.name, key);
        let Some(room) = self.registry.rooms_mut().remove(&key) else {
            return false;
        };
        room.deleted.store(true, Ordering::Release);
        let members: Vec<Conn<Out>> = room.members_mut().drain().map(|(_, conn)| conn).collect();
        for conn in &members {
            conn.inner.rooms().retain(|member_of| *member_of != key);
        }
        self.registry.presence.drop_room(&key);
        if let Err(err) = self.registry.state.drop_room(&key).await {
            tracing::error!(room = %key, %err, "cannot drop the state of a deleted room");
        }
        true
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

    /// The live room behind this handle: after the room was deleted, a new
    /// room of the same name (so a stale handle keeps working).
    fn live(&self) -> std::borrow::Cow<'_, Arc<RoomInner<Out>>> {
        if self.inner.deleted.load(Ordering::Acquire) {
            std::borrow::Cow::Owned(self.registry.get_or_create(&self.inner.key))
        } else {
            std::borrow::Cow::Borrowed(&self.inner)
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
        if let Some(guard) = self.registry.guards.get(self.inner.key.channel()) {
            if let Err(err) = self.run_guard(guard, conn).await {
                conn.send_error(
                    ErrorCode::JoinRejected,
                    format!("cannot join `{}`: {err}", self.inner.key),
                    None,
                );
                return Err(err);
            }
        }
        let room = self.live();
        {
            let mut members = room.members_mut();
            if conn.is_closed() || members.contains_key(&conn.id()) {
                return Ok(false);
            }
            members.insert(conn.id(), conn.clone());
            conn.inner.rooms().push(room.key.clone());
        }
        // A connection that ended while joining has already left its rooms;
        // undo, so no membership outlives it.
        if conn.is_closed() {
            self.registry.leave_room(&room, conn);
            return Ok(false);
        }
        let change =
            self.registry
                .presence
                .join(&room.key, &presence_key(conn), conn.id(), now_ms());
        self.registry.announce(&room, change, Some(conn.id()));
        if room.presence_events.load(Ordering::Acquire) {
            let records = self.registry.presence.list(&room.key, now_ms());
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
        self.registry.leave_room(&self.live(), conn)
    }

    /// Whether the connection `id` is a member.
    pub fn has(&self, id: ConnId) -> bool {
        self.live().members().contains_key(&id)
    }

    /// How many connections are members.
    pub fn size(&self) -> usize {
        self.live().members().len()
    }

    /// The members' ids.
    pub fn members(&self) -> Vec<ConnId> {
        self.live().members().keys().copied().collect()
    }

    /// Sends an event to every member, serialized once per codec in use.
    /// Returns how many members it was queued for.
    pub fn emit(&self, event: Out) -> Result<usize, EncodeError> {
        self.live()
            .send(&mut EncodeOnce::new(|codec| codec.encode(&event)), |_| true)
    }

    /// Sends an event to every member but `id` (usually the sender).
    pub fn emit_except(&self, id: ConnId, event: Out) -> Result<usize, EncodeError> {
        self.live().send(
            &mut EncodeOnce::new(|codec| codec.encode(&event)),
            |member| member != id,
        )
    }

    /// Sends an event to the member `id`; `Ok(false)` when `id` is not a member.
    pub fn emit_to(&self, id: ConnId, event: Out) -> Result<bool, EmitError> {
        let Some(conn) = self.live().members().get(&id).cloned() else {
            return Ok(false);
        };
        conn.emit(event).map(|()| true)
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
    pub fn set_sync(&self, on: bool) {
        self.live().sync.store(on, Ordering::Release);
    }

    /// Turns presence events on or off: when on, members receive
    /// `presence:join`, `presence:leave` and `presence:update` about the
    /// others, and joiners a `presence:snapshot` of everyone's presence.
    pub fn set_presence_events(&self, on: bool) {
        self.live().presence_events.store(on, Ordering::Release);
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
    pub fn set_activity(&self, conn: &Conn<Out>, activity: Option<String>) -> bool {
        let room = self.live();
        match self.registry.presence.set_activity(
            &room.key,
            &presence_key(conn),
            activity,
            now_ms(),
        ) {
            Some(change) => {
                self.registry.announce(&room, change, Some(conn.id()));
                true
            }
            None => false,
        }
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
        let mut reached = HashSet::new();
        if let Some(id) = except {
            reached.insert(id);
        }
        let mut sent = 0;
        for room in &self.rooms {
            let live = room.live();
            for (id, conn) in live.members().iter() {
                if reached.insert(*id)
                    && conn
                        .send_encoded(frames.get(conn.meta().codec())?.clone())
                        .is_ok()
                {
                    sent += 1;
                }
            }
        }
        Ok(sent)
    }
}
