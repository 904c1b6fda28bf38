//! Joining and leaving rooms: join guards, presence bookkeeping, presence
//! events and the joiner's snapshots.

use std::sync::{Arc, atomic::Ordering};

use super::{
    Room,
    defaults::{JoinError, JoinGuard, JoinRejected},
    registry::{
        Member, PresencePayload, PresenceSnapshotPayload, Registry, RoomInner, SnapshotPayload,
    },
};
use crate::{
    cluster::Only,
    conn::{Conn, ConnId},
    error::Chain,
    event::Events,
    presence::{PresenceChange, PresenceKey, now_ms},
    protocol::{
        ErrorCode, PRESENCE_JOIN, PRESENCE_LEAVE, PRESENCE_SNAPSHOT, PRESENCE_UPDATE,
        STATE_SNAPSHOT,
    },
};

impl<Out: Events> Room<Out> {
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
        // Checked again under the locks below; refusing here first spares
        // the guard.
        if let Some(limit) = self.registry.max_rooms_per_connection
            && conn.room_count() >= limit
        {
            return Err(self.refuse_room_limit(conn, limit));
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
        // A room made again after this handle's was deleted is held by a
        // handle of its own, so that if the join does not happen it goes
        // away like any other room nobody joined.
        let mut _remade: Option<Room<Out>> = None;
        let (room, subscribed) = loop {
            let room = match self.current() {
                Some(room) => room,
                None => {
                    let handle = Room {
                        registry: Arc::clone(&self.registry),
                        inner: self.registry.handle(key),
                    };
                    let room = Arc::clone(&handle.inner);
                    _remade = Some(handle);
                    room
                }
            };
            let mut members = room.members_mut();
            if room.deleted.load(Ordering::Acquire) {
                // Deleted between the look-up and the lock: look again.
                continue;
            }
            if conn.is_closed() || members.contains_key(&conn.id()) {
                return Ok(false);
            }
            let mut rooms_of_conn = conn.inner.rooms();
            if let Some(limit) = self.registry.max_rooms_per_connection
                && rooms_of_conn.len() >= limit
            {
                drop(rooms_of_conn);
                drop(members);
                return Err(self.refuse_room_limit(conn, limit));
            }
            rooms_of_conn.push(key.clone());
            drop(rooms_of_conn);
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
                        tracing::warn!(room = %room.key, err = %Chain(&err), "cluster presence unavailable; the joiner gets this node's");
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
                    tracing::error!(room = %room.key, err = %Chain(&err), "cannot read a snapshot for a joiner")
                }
            }
        }
        Ok(true)
    }

    /// Counts, logs (once per connection) and answers a join refused at
    /// the room limit.
    fn refuse_room_limit(&self, conn: &Conn<Out>, limit: usize) -> JoinError {
        self.registry
            .room_limit_refusals
            .fetch_add(1, Ordering::Relaxed);
        if conn.set_data(RoomLimitLogged).is_none() {
            tracing::info!(conn = %conn.id(), limit, "refused a join at the room limit (logged once per connection)");
        }
        let err = JoinError::TooManyRooms { limit };
        conn.send_error(
            ErrorCode::RoomLimit,
            format!("cannot join `{}`: {err}", self.inner.key),
            None,
        );
        err
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
}

impl<Out: Events> Registry<Out> {
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
    pub(crate) async fn leave_room(&self, room: &Arc<RoomInner<Out>>, conn: &Conn<Out>) -> bool {
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

/// Marks a connection whose join at the room limit was logged.
#[derive(Clone, Copy)]
struct RoomLimitLogged;

/// Whose presence a connection is.
fn presence_key<Out: Events>(conn: &Conn<Out>) -> PresenceKey {
    conn.data::<PresenceKey>()
        .unwrap_or(PresenceKey::Conn(conn.id()))
}
