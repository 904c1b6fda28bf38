//! Channels and rooms: membership, room emits, room state and presence.
//!
//! A room is named by a channel and a key (`server.channel("chat").room("general")`)
//! and created on first use. Membership is indexed both ways: each room
//! knows its members, and each connection knows its rooms, so a connection
//! that ends leaves all of them in one step. Each room has its own lock, so
//! emits in different rooms do not contend; the registry's lock is only
//! taken to find, create or delete a room.
//!
//! A room of a channel with `delete_when_empty` goes away when its last
//! member leaves, or, if nobody ever joined it, when its last handle drops:
//! handles are counted (a room's count only rises under the registry's
//! lock), so a room a client named and the application refused leaves
//! nothing behind, and emits pay nothing for it.
//!
//! Files: `key` names a room, `defaults` holds what rooms start with and the
//! join guard's verdicts, `registry` finds and creates rooms, `membership`
//! joins and leaves them, `fanout` is the one loop that sends an encoded
//! message to many connections.

pub(crate) mod defaults;
pub(crate) mod fanout;
pub(crate) mod key;
mod membership;
pub(crate) mod registry;

use std::{
    fmt,
    sync::{Arc, atomic::Ordering},
};

pub(crate) use self::defaults::JoinGuard;
pub use self::defaults::{JoinError, JoinRejected, RoomDefaults};
use self::{
    key::RoomKey,
    registry::{Registry, RoomInner, send_once},
};
use crate::{
    cluster::{ClusterError, Message},
    codec::{CodecKind, EncodeOnce},
    conn::{Conn, ConnId},
    error::{EmitError, EncodeError},
    event::Events,
    presence::{PresenceRecord, now_ms},
    state::RoomState,
};

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
    ///
    /// In a channel whose rooms are deleted when empty
    /// ([`RoomDefaults::delete_when_empty`]), a room nobody joins goes away
    /// with its last handle (the `Room` and every [`RoomState`] taken from
    /// it), state included: looking up a room a client names and then
    /// refusing the join leaves nothing behind.
    pub fn room(&self, key: &str) -> Room<Out> {
        let key = RoomKey::new(&*self.name, key);
        let inner = self.registry.handle(&key);
        Room {
            registry: Arc::clone(&self.registry),
            inner,
        }
    }

    /// The room `key` if it exists. Does not create it: use this where a
    /// client names a room that should already be there.
    pub fn get(&self, key: &str) -> Option<Room<Out>> {
        let inner = self
            .registry
            .existing_handle(&RoomKey::new(&*self.name, key))?;
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
        // A handle is cloned from a live one: the count is above 0 already.
        self.inner.handles.fetch_add(1, Ordering::AcqRel);
        Self {
            registry: Arc::clone(&self.registry),
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<Out> Drop for Room<Out> {
    fn drop(&mut self) {
        if self.inner.handles.fetch_sub(1, Ordering::AcqRel) == 1
            && self.inner.delete_when_empty
            && !self.inner.deleted.load(Ordering::Acquire)
            && self.inner.members().is_empty()
        {
            self.registry.release(&self.inner);
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

    /// The room's state; see [`RoomState`]. The state handle holds the
    /// room as this handle does.
    pub fn state(&self) -> RoomState {
        self.inner.state_used.store(true, Ordering::Release);
        RoomState::new(
            Arc::clone(&self.registry.state),
            self.inner.key.clone(),
            Some(Arc::clone(&self.registry.on_change)),
        )
        .keeping(Arc::new(self.clone()))
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

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, time::Duration};

    use super::*;
    use crate::{CodecKind, presence::MemoryPresence, state::MemoryStore};

    #[derive(Debug, crate::Events)]
    pub(crate) enum Out {
        Note(String),
    }

    /// The rooms of a server with these channel defaults, without the server.
    fn rooms(defaults: &[(&str, RoomDefaults)]) -> Arc<Registry<Out>> {
        Registry::new(
            Arc::new(MemoryStore::new()),
            Arc::new(MemoryPresence::new(Duration::from_secs(60))),
            HashMap::new(),
            registry::JoinLimits {
                guard_timeout: Duration::from_secs(5),
                max_rooms_per_connection: Some(2),
            },
            defaults
                .iter()
                .map(|(channel, defaults)| (Arc::from(*channel), *defaults))
                .collect(),
            None,
            Arc::default(),
        )
    }

    #[tokio::test]
    async fn a_delete_when_empty_room_goes_away_with_its_state_when_its_last_member_leaves() {
        let registry = rooms(&[("temp", RoomDefaults::new().delete_when_empty(true))]);
        let channel = Channel::new(Arc::clone(&registry), "temp");
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
        let keep = Channel::new(registry, "keep");
        let kept = keep.room("r");
        assert_eq!(kept.join(&a).await, Ok(true));
        assert!(kept.leave(&a).await);
        assert!(keep.has_room("r"));
    }

    #[tokio::test]
    async fn a_stale_handle_joins_the_room_made_after_a_delete() {
        let channel = Channel::new(rooms(&[]), "c");
        let stale = channel.room("r");
        assert!(channel.delete_room("r").await);
        let (a, _rx) = Conn::<Out>::detached(CodecKind::Json);
        assert_eq!(stale.join(&a).await, Ok(true));
        let fresh = channel.get("r").expect("the join made the room again");
        assert!(fresh.has(a.id()));
        assert!(stale.has(a.id()), "the stale handle sees the new room");
        assert_eq!(a.rooms(), vec![RoomKey::new("c", "r")]);
    }

    /// K2: a room of a `delete_when_empty` channel that nobody joins goes
    /// away with its last handle (clones and state handles included), and
    /// takes its state with it.
    #[tokio::test]
    async fn k2_a_room_nobody_joined_goes_away_with_its_last_handle() {
        let registry = rooms(&[("temp", RoomDefaults::new().delete_when_empty(true))]);
        let channel = Channel::new(Arc::clone(&registry), "temp");
        let room = channel.room("r");
        let clone = room.clone();
        assert!(channel.has_room("r"));
        drop(room);
        assert!(channel.has_room("r"), "a clone still holds it");
        let state = clone.state();
        drop(clone);
        assert!(channel.has_room("r"), "a state handle still holds it");
        state.set("k", &1).await.unwrap();
        drop(state);
        assert!(!channel.has_room("r"), "the last handle dropped");
        assert_eq!(channel.rooms(), Vec::<String>::new());
        // The state goes on a task; it is gone once that task ran.
        let dropped = tokio::time::timeout(Duration::from_secs(5), async {
            while !registry
                .state
                .snapshot(&RoomKey::new("temp", "r"))
                .await
                .unwrap()
                .is_empty()
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(
            dropped.is_ok(),
            "the abandoned room's state was not dropped"
        );

        // A look-up without creating creates nothing.
        assert!(channel.get("nope").is_none());
        assert!(!channel.has_room("nope"));

        // A joined room stays while it has members, whatever the handles.
        let (a, _rx) = Conn::<Out>::detached(CodecKind::Json);
        assert_eq!(channel.room("kept").join(&a).await, Ok(true));
        assert!(channel.has_room("kept"));
        let kept = channel.get("kept").expect("it has a member");
        assert!(kept.leave(&a).await);
        assert!(!channel.has_room("kept"));

        // Rooms of channels that keep their rooms stay.
        let keep = Channel::new(registry, "keep");
        drop(keep.room("r"));
        assert!(keep.has_room("r"));
    }

    /// K2: a join past `max_rooms_per_connection` fails with
    /// `TooManyRooms`, is counted, answers the client `room_limit`, and
    /// leaves no room behind.
    #[tokio::test]
    async fn k2_a_join_past_the_room_limit_is_refused_and_leaves_nothing() {
        let registry = rooms(&[("temp", RoomDefaults::new().delete_when_empty(true))]);
        let channel = Channel::new(Arc::clone(&registry), "temp");
        let (a, mut rx) = Conn::<Out>::detached(CodecKind::Json);
        assert_eq!(channel.room("one").join(&a).await, Ok(true));
        assert_eq!(channel.room("two").join(&a).await, Ok(true));
        assert_eq!(
            channel.room("three").join(&a).await,
            Err(JoinError::TooManyRooms { limit: 2 })
        );
        assert_eq!(channel.rooms(), ["one", "two"]);
        assert_eq!(a.room_count(), 2);
        assert_eq!(registry.room_limit_refusals.load(Ordering::Relaxed), 1);
        // The queued item, read through its `Debug`: rooms do not name the
        // transport's types.
        let queued = format!("{:?}", rx.try_recv().expect("an error event was queued"));
        assert!(queued.contains("room_limit"), "{queued}");

        // Joining a room it is in is not refused; leaving makes room.
        assert_eq!(channel.room("one").join(&a).await, Ok(false));
        assert!(channel.room("one").leave(&a).await);
        assert_eq!(channel.room("three").join(&a).await, Ok(true));

        // A stale handle whose join is refused leaves no room either.
        let stale = channel.room("four");
        assert!(channel.delete_room("four").await);
        assert_eq!(
            stale.join(&a).await,
            Err(JoinError::TooManyRooms { limit: 2 })
        );
        assert!(!channel.has_room("four"));
    }
}
