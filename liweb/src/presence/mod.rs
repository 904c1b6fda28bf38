//! Per-room presence: who is in a room, since when, and what they are doing.
//!
//! A [`PresenceStore`] keeps one [`PresenceRecord`] per [`PresenceKey`] and
//! room. The key is the connection until authentication exists and the user
//! afterwards, so one user with two tabs open is one record with
//! `connections == 2`, online until the last tab leaves.
//!
//! Every mutation returns a [`PresenceChange`] saying whether the key went
//! online, went offline, or changed while staying online, so the runtime can
//! emit presence events only when something a client can see has changed.
//!
//! When a key goes offline its record stays (as "last seen") for the store's
//! offline TTL, counted from its `last_seen`. [`MemoryPresence`] applies that
//! expiry lazily, on reads of the room and on [`PresenceStore::sweep`], and
//! never starts a task or timer of its own, so nothing outlives the server.
//!
//! ```
//! use liweb::presence::{MemoryPresence, PresenceChange, PresenceKey, PresenceStore};
//! use liweb::state::RoomKey;
//! # use liweb::ConnId;
//! # let conn = ConnId::from(uuid::Uuid::nil());
//!
//! let presence = MemoryPresence::default();
//! let room = RoomKey::new("chat", "lobby");
//! let key = PresenceKey::user("ada");
//!
//! let change = presence.join(&room, &key, conn, 1_000);
//! assert!(matches!(change, PresenceChange::Joined(_)));
//! assert_eq!(presence.online_count(&room), 1);
//! ```

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Serialize, Serializer};

use crate::{conn::ConnId, room::key::RoomKey};

/// How long an offline record stays when [`MemoryPresence::default`] is used.
const DEFAULT_OFFLINE_TTL: Duration = Duration::from_secs(5 * 60);

/// The current time in milliseconds since the Unix epoch, the clock every
/// `now_ms` argument of [`PresenceStore`] expects.
///
/// Returns 0 if the system clock is set before 1970: presence timestamps are
/// informational, and a wrong clock must not take the server down.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(duration_ms)
        .unwrap_or(0)
}

/// Milliseconds in `duration`, saturating at `u64::MAX` (585 million years).
fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Who a presence record is about.
///
/// Serializes as a plain string: the connection's UUID or the user id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PresenceKey {
    /// One connection, for servers without authentication.
    Conn(ConnId),
    /// One authenticated user, however many connections they have open.
    User(Arc<str>),
}

impl PresenceKey {
    /// The key of an authenticated user.
    pub fn user(id: impl Into<Arc<str>>) -> Self {
        Self::User(id.into())
    }
}

impl From<ConnId> for PresenceKey {
    fn from(conn: ConnId) -> Self {
        Self::Conn(conn)
    }
}

impl fmt::Display for PresenceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Conn(conn) => fmt::Display::fmt(conn, f),
            Self::User(user) => f.write_str(user),
        }
    }
}

// By hand rather than `#[serde(untagged)]` because serde only implements
// `Serialize` for `Arc<str>` behind its `rc` feature. A connection's key is
// written as its string form, not through `ConnId`'s `Serialize`: binary
// formats would get the UUID's 16 bytes, and a client could not read a
// field that is sometimes a string and sometimes bytes.
impl Serialize for PresenceKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Conn(conn) => serializer.collect_str(conn),
            Self::User(user) => serializer.serialize_str(user),
        }
    }
}

/// What a store knows about one key in one room.
///
/// Serializes as `{"key", "online", "joined_at", "last_seen", "activity",
/// "connections"}`; the times are Unix milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PresenceRecord {
    /// Who the record is about.
    pub key: PresenceKey,
    /// Whether at least one of the key's connections is in the room.
    pub online: bool,
    /// When the current online period began (for an offline record, the last
    /// one): the first join after being offline.
    pub joined_at: u64,
    /// The last join, activity change or leave.
    pub last_seen: u64,
    /// What the key is doing, as the application describes it ("typing").
    /// Cleared when a new online period begins.
    pub activity: Option<String>,
    /// How many of the key's connections are in the room; 0 when offline.
    pub connections: usize,
}

/// What a mutation of a [`PresenceStore`] changed, so the runtime emits a
/// presence event only when there is something to tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PresenceChange {
    /// The key went online: its first connection joined.
    Joined(PresenceRecord),
    /// The key went offline: its last connection left.
    Left(PresenceRecord),
    /// The key stayed online but its record changed: its activity, or another
    /// of its connections joined or left.
    Updated(PresenceRecord),
    /// Nothing visible changed (a repeated join, a leave by a connection that
    /// was not in the room, the same activity again).
    Unchanged,
}

impl PresenceChange {
    /// The record after the change, unless nothing changed.
    pub fn record(&self) -> Option<&PresenceRecord> {
        match self {
            Self::Joined(record) | Self::Left(record) | Self::Updated(record) => Some(record),
            Self::Unchanged => None,
        }
    }
}

/// Storage for per-room presence.
///
/// Methods are synchronous: the in-memory store never waits, and a networked
/// store is expected to keep a local view and sync it in the background.
/// That is what a server in a cluster does (see [`crate::cluster`]): this
/// store holds the node's own members, and the adapter records them in the
/// shared store too, where `Room::cluster_presence` reads every node's.
/// Every method that can expire records takes `now_ms` (see [`now_ms`]) so the
/// caller controls the clock, which keeps stores deterministic under test.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a presence store",
    note = "use `liweb::presence::MemoryPresence`, or implement `PresenceStore` for your type"
)]
pub trait PresenceStore: Send + Sync + 'static {
    /// Connection `conn` of `key` entered `room`.
    ///
    /// Returns [`PresenceChange::Joined`] when the key was offline or unknown,
    /// [`PresenceChange::Updated`] when the key was online through another
    /// connection, and [`PresenceChange::Unchanged`] when `conn` was already
    /// in the room.
    fn join(&self, room: &RoomKey, key: &PresenceKey, conn: ConnId, now_ms: u64) -> PresenceChange;

    /// Connection `conn` of `key` left `room`.
    ///
    /// Returns [`PresenceChange::Left`] when it was the key's last connection,
    /// [`PresenceChange::Updated`] when others remain, and
    /// [`PresenceChange::Unchanged`] when `conn` was not in the room.
    fn leave(&self, room: &RoomKey, key: &PresenceKey, conn: ConnId, now_ms: u64)
    -> PresenceChange;

    /// Sets (`Some`) or clears (`None`) what `key` is doing in `room`.
    ///
    /// Returns `None` if the key has no record in the room, otherwise
    /// [`PresenceChange::Updated`] or, when the activity is the same as
    /// before, [`PresenceChange::Unchanged`].
    fn set_activity(
        &self,
        room: &RoomKey,
        key: &PresenceKey,
        activity: Option<String>,
        now_ms: u64,
    ) -> Option<PresenceChange>;

    /// The record of `key` in `room`, online or offline, unless it has
    /// expired.
    fn get(&self, room: &RoomKey, key: &PresenceKey, now_ms: u64) -> Option<PresenceRecord>;

    /// Every unexpired record of `room`: online ones first, then offline
    /// ones, each group by `joined_at`.
    fn list(&self, room: &RoomKey, now_ms: u64) -> Vec<PresenceRecord>;

    /// How many keys are online in `room` (users, not connections).
    fn online_count(&self, room: &RoomKey) -> usize;

    /// Removes the expired offline records of every room and returns how many
    /// were removed.
    fn sweep(&self, now_ms: u64) -> usize;

    /// Forgets `room` and every record in it.
    fn drop_room(&self, room: &RoomKey);

    /// How many records the store holds across all rooms, expired or not.
    fn record_count(&self) -> usize;
}

/// One key in one room.
#[derive(Debug)]
struct Member {
    joined_at: u64,
    last_seen: u64,
    activity: Option<String>,
    // A Vec rather than a set: a key rarely has more than a handful of
    // connections, and a linear scan of those beats hashing.
    conns: Vec<ConnId>,
}

impl Member {
    fn online(&self) -> bool {
        !self.conns.is_empty()
    }

    fn expired(&self, now_ms: u64, ttl_ms: u64) -> bool {
        // A clock that went backwards gives age 0 rather than a huge age, so
        // records are kept rather than dropped early.
        !self.online() && now_ms.saturating_sub(self.last_seen) >= ttl_ms
    }

    fn record(&self, key: &PresenceKey) -> PresenceRecord {
        PresenceRecord {
            key: key.clone(),
            online: self.online(),
            joined_at: self.joined_at,
            last_seen: self.last_seen,
            activity: self.activity.clone(),
            connections: self.conns.len(),
        }
    }
}

/// The records of one room.
#[derive(Debug, Default)]
struct Room {
    members: HashMap<PresenceKey, Member>,
    // Set, under both locks, when the room is taken out of the room map. A
    // caller that found the room before that and locks it afterwards must not
    // write into it (the write would be lost); it looks the room up again.
    detached: bool,
}

impl Room {
    /// Removes `key`'s record if it has expired; returns whether it did.
    fn expire_key(&mut self, key: &PresenceKey, now_ms: u64, ttl_ms: u64) -> bool {
        let expired = self
            .members
            .get(key)
            .is_some_and(|member| member.expired(now_ms, ttl_ms));
        if expired {
            self.members.remove(key);
        }
        expired
    }

    /// Removes every expired record; returns how many.
    fn expire_all(&mut self, now_ms: u64, ttl_ms: u64) -> usize {
        let before = self.members.len();
        self.members
            .retain(|_, member| !member.expired(now_ms, ttl_ms));
        before - self.members.len()
    }
}

type RoomMap = HashMap<RoomKey, Arc<Mutex<Room>>>;

/// An in-memory [`PresenceStore`] for one server process.
///
/// Rooms are found through one read-mostly map and each room has its own
/// lock, so presence changes in different rooms do not wait for each other.
/// A room's entry is removed once it holds no records.
///
/// Offline records expire `offline_ttl` after their `last_seen`. Expiry runs
/// lazily: [`get`](PresenceStore::get) expires the record it reads,
/// [`list`](PresenceStore::list) the whole room, and
/// [`sweep`](PresenceStore::sweep) every room; call `sweep` periodically if
/// many rooms are never read again.
pub struct MemoryPresence {
    offline_ttl: Duration,
    ttl_ms: u64,
    rooms: RwLock<RoomMap>,
}

impl MemoryPresence {
    /// A store whose offline records expire `offline_ttl` after they were
    /// last seen. A zero TTL drops offline records at the next read or sweep.
    pub fn new(offline_ttl: Duration) -> Self {
        Self {
            offline_ttl,
            ttl_ms: duration_ms(offline_ttl),
            rooms: RwLock::new(HashMap::new()),
        }
    }

    /// How long offline records are kept.
    pub fn offline_ttl(&self) -> Duration {
        self.offline_ttl
    }

    fn existing_room(&self, room: &RoomKey) -> Option<Arc<Mutex<Room>>> {
        read(&self.rooms).get(room).cloned()
    }

    /// Runs `f` on `room`, creating the room if needed.
    fn with_room_or_insert<R>(&self, room: &RoomKey, f: impl FnOnce(&mut Room) -> R) -> R {
        loop {
            let entry = match self.existing_room(room) {
                Some(entry) => entry,
                None => Arc::clone(write(&self.rooms).entry(room.clone()).or_default()),
            };
            let mut guard = lock(&entry);
            if guard.detached {
                continue;
            }
            return f(&mut guard);
        }
    }

    /// Runs `f` on `room` if it exists, then removes the room if `f` left it
    /// empty.
    fn with_room<R>(&self, room: &RoomKey, f: impl FnOnce(&mut Room) -> R) -> Option<R> {
        let entry = self.existing_room(room)?;
        let (result, empty) = {
            let mut guard = lock(&entry);
            if guard.detached {
                // Detached rooms are empty or dropped: nothing to see.
                return None;
            }
            let result = f(&mut guard);
            (result, guard.members.is_empty())
        };
        if empty {
            self.remove_if_empty(room);
        }
        Some(result)
    }

    /// Takes `room` out of the map if it holds no records.
    fn remove_if_empty(&self, room: &RoomKey) {
        // Always the map lock first, then the room lock, as everywhere else,
        // and re-checked under both: a join may have filled the room since
        // the caller saw it empty.
        let mut rooms = write(&self.rooms);
        let Some(entry) = rooms.get(room) else {
            return;
        };
        let mut guard = lock(entry);
        if guard.members.is_empty() {
            guard.detached = true;
            drop(guard);
            rooms.remove(room);
        }
    }
}

impl Default for MemoryPresence {
    /// Offline records are kept for five minutes.
    fn default() -> Self {
        Self::new(DEFAULT_OFFLINE_TTL)
    }
}

impl fmt::Debug for MemoryPresence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryPresence")
            .field("offline_ttl", &self.offline_ttl)
            .field("rooms", &read(&self.rooms).len())
            .finish()
    }
}

impl PresenceStore for MemoryPresence {
    fn join(&self, room: &RoomKey, key: &PresenceKey, conn: ConnId, now_ms: u64) -> PresenceChange {
        self.with_room_or_insert(room, |room| {
            let Some(member) = room.members.get_mut(key) else {
                let member = Member {
                    joined_at: now_ms,
                    last_seen: now_ms,
                    activity: None,
                    conns: vec![conn],
                };
                let record = member.record(key);
                room.members.insert(key.clone(), member);
                return PresenceChange::Joined(record);
            };
            if member.conns.contains(&conn) {
                return PresenceChange::Unchanged;
            }
            let was_online = member.online();
            member.conns.push(conn);
            member.last_seen = now_ms;
            if was_online {
                PresenceChange::Updated(member.record(key))
            } else {
                // A new online period, whether or not the old record had
                // expired yet: the previous activity describes a visit that
                // is over.
                member.joined_at = now_ms;
                member.activity = None;
                PresenceChange::Joined(member.record(key))
            }
        })
    }

    fn leave(
        &self,
        room: &RoomKey,
        key: &PresenceKey,
        conn: ConnId,
        now_ms: u64,
    ) -> PresenceChange {
        self.with_room(room, |room| {
            let Some(member) = room.members.get_mut(key) else {
                return PresenceChange::Unchanged;
            };
            let Some(position) = member.conns.iter().position(|c| *c == conn) else {
                return PresenceChange::Unchanged;
            };
            member.conns.swap_remove(position);
            member.last_seen = now_ms;
            if member.online() {
                PresenceChange::Updated(member.record(key))
            } else {
                PresenceChange::Left(member.record(key))
            }
        })
        .unwrap_or(PresenceChange::Unchanged)
    }

    fn set_activity(
        &self,
        room: &RoomKey,
        key: &PresenceKey,
        activity: Option<String>,
        now_ms: u64,
    ) -> Option<PresenceChange> {
        let ttl_ms = self.ttl_ms;
        self.with_room(room, |room| {
            room.expire_key(key, now_ms, ttl_ms);
            let member = room.members.get_mut(key)?;
            member.last_seen = now_ms;
            if member.activity == activity {
                return Some(PresenceChange::Unchanged);
            }
            member.activity = activity;
            Some(PresenceChange::Updated(member.record(key)))
        })
        .flatten()
    }

    fn get(&self, room: &RoomKey, key: &PresenceKey, now_ms: u64) -> Option<PresenceRecord> {
        let ttl_ms = self.ttl_ms;
        self.with_room(room, |room| {
            room.expire_key(key, now_ms, ttl_ms);
            room.members.get(key).map(|member| member.record(key))
        })
        .flatten()
    }

    fn list(&self, room: &RoomKey, now_ms: u64) -> Vec<PresenceRecord> {
        let ttl_ms = self.ttl_ms;
        let mut records = self
            .with_room(room, |room| {
                room.expire_all(now_ms, ttl_ms);
                room.members
                    .iter()
                    .map(|(key, member)| member.record(key))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        // The key breaks ties so the order does not depend on hashing.
        records.sort_by(|a, b| {
            (!a.online, a.joined_at, &a.key).cmp(&(!b.online, b.joined_at, &b.key))
        });
        records
    }

    fn online_count(&self, room: &RoomKey) -> usize {
        self.existing_room(room).map_or(0, |entry| {
            lock(&entry)
                .members
                .values()
                .filter(|member| member.online())
                .count()
        })
    }

    fn sweep(&self, now_ms: u64) -> usize {
        // Snapshot the rooms so joins elsewhere are not held up while every
        // room is visited.
        let rooms: Vec<(RoomKey, Arc<Mutex<Room>>)> = read(&self.rooms)
            .iter()
            .map(|(key, entry)| (key.clone(), Arc::clone(entry)))
            .collect();
        let mut removed = 0;
        for (key, entry) in rooms {
            let empty = {
                let mut room = lock(&entry);
                removed += room.expire_all(now_ms, self.ttl_ms);
                room.members.is_empty() && !room.detached
            };
            if empty {
                self.remove_if_empty(&key);
            }
        }
        removed
    }

    fn drop_room(&self, room: &RoomKey) {
        let mut rooms = write(&self.rooms);
        if let Some(entry) = rooms.remove(room) {
            let mut guard = lock(&entry);
            guard.detached = true;
            guard.members.clear();
        }
    }

    fn record_count(&self) -> usize {
        read(&self.rooms)
            .values()
            .map(|entry| lock(entry).members.len())
            .sum()
    }
}

// Poisoning is recovered from rather than propagated: no code here panics
// while holding a lock with a record half-written, so the data is consistent,
// and one panicking handler elsewhere must not disable presence for good.
fn lock(room: &Mutex<Room>) -> MutexGuard<'_, Room> {
    room.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read(rooms: &RwLock<RoomMap>) -> std::sync::RwLockReadGuard<'_, RoomMap> {
    rooms.read().unwrap_or_else(PoisonError::into_inner)
}

fn write(rooms: &RwLock<RoomMap>) -> std::sync::RwLockWriteGuard<'_, RoomMap> {
    rooms.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
