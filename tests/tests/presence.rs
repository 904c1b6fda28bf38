//! Conformance, section P (presence): clients join, leave and set
//! activities through handlers; raw peers read the `presence:*` events. Each
//! test is written once and runs on every transport × codec combination
//! (`p1_...::ws_json`, `p1_...::tcp_bincode`, ...): the presence events'
//! payloads are plain structs, which bincode carries too.

use std::{sync::Arc, time::Duration};

use liweb::{
    presence::{MemoryPresence, PresenceKey, PresenceRecord, PresenceStore, now_ms},
    state::RoomKey,
};
use liweb_tests::{
    JoinOutcome, Peer, Record, RoomRef, Running, TestClient, TestIn, TestOut, conformance,
    eventually, fence, next_event,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::json;

const CHANNEL: &str = "chat";
const ROOM: &str = "general";

fn general() -> RoomRef {
    RoomRef::new(CHANNEL, ROOM)
}

/// A presence record as a client reads it, in any codec.
#[derive(Debug, Clone, PartialEq, Deserialize)]
struct Presence {
    key: String,
    online: bool,
    joined_at: u64,
    last_seen: u64,
    activity: Option<String>,
    connections: u64,
}

/// The payload of `presence:join`, `presence:update` and `presence:leave`.
#[derive(Debug, Deserialize)]
struct PresenceChange {
    channel: String,
    room: String,
    presence: Presence,
}

/// The payload of `presence:snapshot`.
#[derive(Debug, Deserialize)]
struct PresenceSnapshot {
    channel: String,
    room: String,
    presence: Vec<Presence>,
}

/// The `set_activity` payload, with its fields in `TestIn::SetActivity`'s
/// order so that bincode reads it too.
#[derive(Serialize)]
struct SetActivity<'a> {
    room: RoomRef,
    activity: Option<&'a str>,
}

/// Reads the next message and checks that it is the event `name` with
/// `payload`, by type on every codec and as the exact JSON message on the
/// self-describing ones.
async fn expect<T>(peer: &mut Peer, name: &str, payload: T)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let msg = peer.next().await;
    assert_eq!(msg.event(), name, "{msg:?}");
    if peer.combo().self_describing() {
        assert_eq!(msg.json(), json!({"event": name, "payload": payload}));
    }
    assert_eq!(msg.payload::<T>(), payload);
}

async fn raw_join(raw: &mut Peer) {
    raw.emit("join", &general()).await;
    expect(raw, "join_outcome", JoinOutcome::Added).await;
}

/// Joins a room with presence events on: the joiner first gets everyone's
/// presence, which this returns as `(key, online, connections)`, sorted.
async fn raw_join_with_snapshot(raw: &mut Peer) -> Vec<(String, bool, u64)> {
    raw.emit("join", &general()).await;
    let msg = raw.next().await;
    assert_eq!(msg.event(), "presence:snapshot", "{msg:?}");
    let snapshot = msg.payload::<PresenceSnapshot>();
    assert_eq!(snapshot.channel, CHANNEL);
    assert_eq!(snapshot.room, ROOM);
    if raw.combo().self_describing() {
        let json = msg.json();
        assert_eq!(json["payload"]["channel"], CHANNEL);
        assert_eq!(json["payload"]["room"], ROOM);
        let keys: Vec<_> = json["payload"]["presence"]
            .as_array()
            .expect("presence is a list")
            .iter()
            .map(|record| record["key"].as_str().expect("a string key").to_owned())
            .collect();
        let typed: Vec<_> = snapshot
            .presence
            .iter()
            .map(|record| record.key.clone())
            .collect();
        assert_eq!(keys, typed);
    }
    expect(raw, "join_outcome", JoinOutcome::Added).await;
    let mut records: Vec<(String, bool, u64)> = snapshot
        .presence
        .into_iter()
        .map(|record| (record.key, record.online, record.connections))
        .collect();
    records.sort();
    records
}

fn sorted<const N: usize>(mut records: [(String, bool, u64); N]) -> Vec<(String, bool, u64)> {
    records.sort();
    records.to_vec()
}

async fn raw_leave(raw: &mut Peer) {
    raw.emit("leave", &general()).await;
    expect(raw, "left", true).await;
}

async fn raw_activity(raw: &mut Peer, activity: Option<&str>) {
    raw.emit(
        "set_activity",
        &SetActivity {
            room: general(),
            activity,
        },
    )
    .await;
    expect(raw, "activity_set", true).await;
}

async fn join(client: &mut TestClient, room: &RoomRef) {
    client.emit(TestIn::Join(room.clone())).unwrap();
    assert_eq!(
        next_event(client).await,
        TestOut::JoinOutcome(liweb_tests::JoinOutcome::Added)
    );
}

async fn leave(client: &mut TestClient, room: &RoomRef) {
    client.emit(TestIn::Leave(room.clone())).unwrap();
    assert_eq!(next_event(client).await, TestOut::Left(true));
}

/// Reads the next message and checks that it is the presence event `name`
/// about `key` with these `online`, `activity` and `connections` (by type on
/// every codec, as the exact JSON message on the self-describing ones), and
/// returns its `joined_at` and `last_seen`, which the caller checks against
/// its clock.
async fn presence_event(
    peer: &mut Peer,
    name: &str,
    key: &str,
    online: bool,
    activity: Option<&str>,
    connections: u64,
) -> (u64, u64) {
    let msg = peer.next().await;
    assert_eq!(msg.event(), name, "{msg:?}");
    let change = msg.payload::<PresenceChange>();
    assert_eq!(change.channel, CHANNEL);
    assert_eq!(change.room, ROOM);
    let (joined_at, last_seen) = (change.presence.joined_at, change.presence.last_seen);
    assert_eq!(
        change.presence,
        Presence {
            key: key.to_owned(),
            online,
            joined_at,
            last_seen,
            activity: activity.map(str::to_owned),
            connections,
        }
    );
    if peer.combo().self_describing() {
        assert_eq!(
            msg.json(),
            json!({
                "event": name,
                "payload": {
                    "channel": CHANNEL,
                    "room": ROOM,
                    "presence": {
                        "key": key,
                        "online": online,
                        "joined_at": joined_at,
                        "last_seen": last_seen,
                        "activity": activity,
                        "connections": connections,
                    },
                },
            })
        );
    }
    assert!(joined_at <= last_seen, "{msg:?}");
    (joined_at, last_seen)
}

fn record_of(records: &[PresenceRecord], key: &PresenceKey) -> PresenceRecord {
    records
        .iter()
        .find(|record| record.key == *key)
        .cloned()
        .unwrap_or_else(|| panic!("no presence record for {key} in {records:?}"))
}

conformance! {
    /// Conformance P1.
    async fn p1_join_marks_online_with_join_time_and_leave_marks_offline(combo) {
        let running = Running::start().await;
        let room = general().on(&running.server);
        let (mut a, a_id) = running.client_on(combo).await;
        let (mut b, b_id) = running.client_on(combo).await;
        let (a_key, b_key) = (PresenceKey::from(a_id), PresenceKey::from(b_id));

        let before = now_ms();
        join(&mut a, &general()).await;
        let after = now_ms();
        let records = room.presence();
        assert_eq!(records.len(), 1);
        let record = record_of(&records, &a_key);
        assert!(record.online);
        assert!(
            (before..=after).contains(&record.joined_at),
            "joined at {} between {before} and {after}",
            record.joined_at
        );
        assert_eq!(record.last_seen, record.joined_at);
        assert_eq!(record.activity, None);
        assert_eq!(record.connections, 1);
        assert_eq!(room.online_count(), 1);

        join(&mut b, &general()).await;
        assert_eq!(room.online_count(), 2);
        assert!(record_of(&room.presence(), &b_key).online);

        let before_leave = now_ms();
        leave(&mut b, &general()).await;
        let after_leave = now_ms();
        let records = room.presence();
        assert_eq!(records.len(), 2, "the offline record stays until the ttl");
        // Online members come first.
        assert_eq!(records[0].key, a_key);
        assert!(records[0].online);
        let gone = record_of(&records, &b_key);
        assert!(!gone.online);
        assert_eq!(gone.connections, 0);
        assert!(
            (before_leave..=after_leave).contains(&gone.last_seen),
            "last seen at {} between {before_leave} and {after_leave}",
            gone.last_seen
        );
        assert_eq!(room.online_count(), 1);

        // Presence events are off by default: nobody heard of any of this.
        fence(&mut a, "no presence events").await;
        fence(&mut b, "no presence events").await;
    }

    /// Conformance P1.
    async fn p1_members_can_set_an_activity_visible_in_the_room_presence(combo) {
        let running = Running::start().await;
        let room = general().on(&running.server);
        let (mut a, a_id) = running.client_on(combo).await;
        let (mut outsider, _) = running.client_on(combo).await;
        join(&mut a, &general()).await;
        let joined_at = record_of(&room.presence(), &PresenceKey::from(a_id)).joined_at;

        let set = |activity: Option<&str>| TestIn::SetActivity {
            room: general(),
            activity: activity.map(str::to_owned),
        };
        a.emit(set(Some("typing"))).unwrap();
        assert_eq!(next_event(&mut a).await, TestOut::ActivitySet(true));
        let record = record_of(&room.presence(), &PresenceKey::from(a_id));
        assert_eq!(record.activity.as_deref(), Some("typing"));
        assert!(record.online);
        assert_eq!(record.joined_at, joined_at, "an activity is no new visit");
        assert!(record.last_seen >= joined_at);

        a.emit(set(None)).unwrap();
        assert_eq!(next_event(&mut a).await, TestOut::ActivitySet(true));
        assert_eq!(
            record_of(&room.presence(), &PresenceKey::from(a_id)).activity,
            None
        );

        // A connection with no record in the room has no activity to set.
        outsider.emit(set(Some("lurking"))).unwrap();
        assert_eq!(next_event(&mut outsider).await, TestOut::ActivitySet(false));
        assert_eq!(room.presence().len(), 1);

        // A new visit starts without the old activity.
        a.emit(set(Some("away"))).unwrap();
        assert_eq!(next_event(&mut a).await, TestOut::ActivitySet(true));
        leave(&mut a, &general()).await;
        join(&mut a, &general()).await;
        let record = record_of(&room.presence(), &PresenceKey::from(a_id));
        assert_eq!(record.activity, None);
        assert!(record.joined_at >= joined_at);
    }

    /// Conformance P1.
    async fn p1_presence_events_tell_the_other_members_of_joins_updates_and_leaves(combo) {
        let running = Running::start().await;
        general().on(&running.server).set_presence_events(true);
        let (mut a, a_id) = running.peer_on(combo).await;
        let (mut b, b_id) = running.peer_on(combo).await;
        let (a_key, b_key) = (a_id.to_string(), b_id.to_string());

        // A joiner gets everyone's presence, itself included, and no
        // `presence:join` about itself.
        assert_eq!(
            raw_join_with_snapshot(&mut a).await,
            [(a_key.clone(), true, 1)]
        );
        // A joiner is not told about itself.
        a.fence("alone").await;

        let before = now_ms();
        assert_eq!(
            raw_join_with_snapshot(&mut b).await,
            sorted([(a_key.clone(), true, 1), (b_key.clone(), true, 1)])
        );
        let after = now_ms();
        let (joined_at, last_seen) =
            presence_event(&mut a, "presence:join", &b_key, true, None, 1).await;
        assert!(
            (before..=after).contains(&joined_at),
            "{joined_at} in {before}..={after}"
        );
        assert_eq!(last_seen, joined_at);
        // `b` is not told about `a` joining earlier, nor about itself.
        b.fence("no event about itself").await;

        raw_activity(&mut b, Some("typing")).await;
        let (same_join, typed_at) = presence_event(
            &mut a,
            "presence:update",
            &b_key,
            true,
            Some("typing"),
            1,
        ).await;
        assert_eq!(same_join, joined_at);
        assert!(typed_at >= joined_at);
        // The same activity again changes nothing, so nothing is sent.
        raw_activity(&mut b, Some("typing")).await;
        a.fence("no update for the same activity").await;
        raw_activity(&mut b, None).await;
        presence_event(&mut a, "presence:update", &b_key, true, None, 1).await;

        raw_leave(&mut b).await;
        let (_, left_at) = presence_event(&mut a, "presence:leave", &b_key, false, None, 0).await;
        assert!(left_at >= typed_at);
        b.fence("not told about its own leave").await;

        // Disconnecting is leaving too.
        assert_eq!(
            raw_join_with_snapshot(&mut b).await,
            sorted([(a_key.clone(), true, 1), (b_key.clone(), true, 1)])
        );
        presence_event(&mut a, "presence:join", &b_key, true, None, 1).await;
        b.close().await;
        running.recorder.disconnected(b_id).await;
        presence_event(&mut a, "presence:leave", &b_key, false, None, 0).await;
        a.fence("nothing more").await;
    }

    /// Conformance P1.
    async fn p1_without_presence_events_nothing_is_sent_but_presence_is_kept(combo) {
        let running = Running::start().await;
        let room = general().on(&running.server);
        let (mut a, _) = running.peer_on(combo).await;
        let (mut b, b_id) = running.peer_on(combo).await;
        raw_join(&mut a).await;
        raw_join(&mut b).await;
        raw_activity(&mut b, Some("typing")).await;
        raw_leave(&mut b).await;
        a.fence("no presence events").await;
        let record = record_of(&room.presence(), &PresenceKey::from(b_id));
        assert!(!record.online);
        assert_eq!(record.activity.as_deref(), Some("typing"));
    }

    /// Conformance P2.
    async fn p2_two_connections_of_one_user_are_one_online_record(combo) {
        let running = Running::start().await;
        let room = general().on(&running.server);
        room.set_presence_events(true);
        let alice = PresenceKey::user("alice");
        let (mut observer, observer_id) = running.peer_on(combo).await;
        let (mut tab1, _) = running.peer_on(combo).await;
        let (mut tab2, tab2_id) = running.peer_on(combo).await;
        let observer_key = observer_id.to_string();
        assert_eq!(
            raw_join_with_snapshot(&mut observer).await,
            [(observer_key.clone(), true, 1)]
        );
        for tab in [&mut tab1, &mut tab2] {
            tab.emit("set_user", "alice").await;
            tab.fence("user set").await;
        }

        assert_eq!(
            raw_join_with_snapshot(&mut tab1).await,
            sorted([(observer_key.clone(), true, 1), ("alice".into(), true, 1)])
        );
        let (joined_at, _) = presence_event(
            &mut observer,
            "presence:join",
            "alice",
            true,
            None,
            1,
        ).await;
        assert_eq!(
            raw_join_with_snapshot(&mut tab2).await,
            sorted([(observer_key.clone(), true, 1), ("alice".into(), true, 2)])
        );
        // Not a second join: the same user now has two connections.
        let (same_join, _) = presence_event(
            &mut observer,
            "presence:update",
            "alice",
            true,
            None,
            2,
        ).await;
        assert_eq!(same_join, joined_at);
        // The user's first tab is another member, so it hears of the change.
        presence_event(
            &mut tab1,
            "presence:update",
            "alice",
            true,
            None,
            2,
        ).await;
        assert_eq!(room.size(), 3);
        assert_eq!(room.online_count(), 2, "the observer and alice");
        let records = room.presence();
        assert_eq!(records.len(), 2);
        let record = record_of(&records, &alice);
        assert!(record.online);
        assert_eq!(record.connections, 2);
        assert_eq!(record.joined_at, joined_at);

        // An activity set from one tab is the user's.
        raw_activity(&mut tab2, Some("typing")).await;
        presence_event(
            &mut observer,
            "presence:update",
            "alice",
            true,
            Some("typing"),
            2,
        ).await;
        presence_event(
            &mut tab1,
            "presence:update",
            "alice",
            true,
            Some("typing"),
            2,
        ).await;

        // One tab going away leaves the user online.
        tab1.close().await;
        presence_event(
            &mut observer,
            "presence:update",
            "alice",
            true,
            Some("typing"),
            1,
        ).await;
        presence_event(
            &mut tab2,
            "presence:update",
            "alice",
            true,
            Some("typing"),
            1,
        ).await;
        let record = record_of(&room.presence(), &alice);
        assert!(record.online);
        assert_eq!(record.connections, 1);
        assert_eq!(room.online_count(), 2);

        // The last one takes the user offline.
        raw_leave(&mut tab2).await;
        presence_event(
            &mut observer,
            "presence:leave",
            "alice",
            false,
            Some("typing"),
            0,
        ).await;
        let record = record_of(&room.presence(), &alice);
        assert!(!record.online);
        assert_eq!(record.connections, 0);
        assert_eq!(room.online_count(), 1);
        assert!(
            !room
                .presence()
                .iter()
                .any(|record| record.key == PresenceKey::from(tab2_id)),
            "no per-connection record for a user's connection"
        );
        observer.fence("nothing more").await;
        tab2.fence("nothing more").await;
    }

    /// Conformance P2.
    async fn p2_a_presence_key_set_after_joining_leaves_no_ghost_online(combo) {
        let running = Running::start().await;
        let room = general().on(&running.server);
        let (mut client, id) = running.client_on(combo).await;
        join(&mut client, &general()).await;
        // The connection logs in while in the room.
        client.emit(TestIn::SetUser("alice".into())).unwrap();
        fence(&mut client, "user set").await;
        client.close(liweb::CloseCode::Normal, "bye").unwrap();
        running.recorder.disconnected(id).await;

        assert_eq!(room.size(), 0);
        assert_eq!(
            room.online_count(),
            0,
            "nobody is in the room, yet presence says: {:?}",
            room.presence()
        );
        assert!(
            room.presence().iter().all(|record| !record.online),
            "{:?}",
            room.presence()
        );
    }

    /// Conformance P3.
    async fn p3_offline_records_expire_after_the_configured_ttl(combo) {
        const TTL: Duration = Duration::from_millis(200);
        let running = Running::start_with(|builder| builder.presence_ttl(TTL)).await;
        let room = general().on(&running.server);
        let (mut stays, stays_id) = running.client_on(combo).await;
        let (mut goes, goes_id) = running.client_on(combo).await;
        join(&mut stays, &general()).await;
        join(&mut goes, &general()).await;
        leave(&mut goes, &general()).await;

        let record = record_of(&room.presence(), &PresenceKey::from(goes_id));
        assert!(!record.online, "kept as last seen right after leaving");
        eventually(
            "the offline record to expire",
            || room.presence(),
            |records| records.len() == 1,
        )
        .await;
        let expired_at = now_ms();
        assert!(
            expired_at - record.last_seen >= TTL.as_millis() as u64,
            "expired {} ms after leaving, before the {TTL:?} ttl",
            expired_at - record.last_seen
        );
        // Online records never expire.
        let records = room.presence();
        assert_eq!(records[0].key, PresenceKey::from(stays_id));
        assert!(records[0].online);
        fence(&mut stays, "still here").await;
    }

    /// Conformance P3.
    async fn p3_offline_records_of_rooms_nobody_reads_are_swept(combo) {
        const TTL: Duration = Duration::from_millis(50);
        let store = Arc::new(MemoryPresence::new(TTL));
        let shared: Arc<dyn PresenceStore> = store.clone();
        let running =
            Running::start_with(|builder| builder.presence_ttl(TTL).presence_store(shared)).await;
        let (mut stays, stays_id) = running.client_on(combo).await;
        let (mut goes, _) = running.client_on(combo).await;
        let rooms: Vec<RoomRef> = (0..3)
            .map(|i| RoomRef::new("sweep", &format!("r{i}")))
            .collect();
        for room in &rooms {
            join(&mut goes, room).await;
            leave(&mut goes, room).await;
        }
        join(&mut stays, &rooms[0]).await;
        assert_eq!(store.record_count(), 4);

        // Nothing reads the rooms: only the server's sweep can expire them.
        eventually("the sweep", || store.record_count(), |count| *count == 1).await;
        let records = store.list(&RoomKey::new("sweep", "r0"), now_ms());
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].key, PresenceKey::from(stays_id));
        assert!(records[0].online);
        assert!(
            running
                .recorder
                .matching(|r| matches!(r, Record::Error { .. }))
                .is_empty()
        );
    }
}
