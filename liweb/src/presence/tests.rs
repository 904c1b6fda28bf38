//! Presence records through the memory store (conformance P1–P3).

use super::*;

const TTL: Duration = Duration::from_secs(60);
const TTL_MS: u64 = 60_000;

fn room(name: &str) -> RoomKey {
    RoomKey::new("chat", name)
}

fn joined(change: PresenceChange) -> PresenceRecord {
    match change {
        PresenceChange::Joined(record) => record,
        other => panic!("expected Joined, got {other:?}"),
    }
}

fn left(change: PresenceChange) -> PresenceRecord {
    match change {
        PresenceChange::Left(record) => record,
        other => panic!("expected Left, got {other:?}"),
    }
}

fn updated(change: PresenceChange) -> PresenceRecord {
    match change {
        PresenceChange::Updated(record) => record,
        other => panic!("expected Updated, got {other:?}"),
    }
}

/// Conformance P1.
#[test]
fn p1_join_marks_online_with_joined_at() {
    let presence = MemoryPresence::new(TTL);
    let lobby = room("lobby");
    let conn = ConnId::new();
    let key = PresenceKey::from(conn);

    let record = joined(presence.join(&lobby, &key, conn, 1_000));
    assert_eq!(
        record,
        PresenceRecord {
            key: key.clone(),
            online: true,
            joined_at: 1_000,
            last_seen: 1_000,
            activity: None,
            connections: 1,
        }
    );
    assert_eq!(presence.get(&lobby, &key, 1_500), Some(record));
    assert_eq!(presence.online_count(&lobby), 1);
}

/// Conformance P1.
#[test]
fn p1_leave_marks_offline_with_last_seen() {
    let presence = MemoryPresence::new(TTL);
    let lobby = room("lobby");
    let key = PresenceKey::user("ada");
    let conn = ConnId::new();
    presence.join(&lobby, &key, conn, 1_000);

    let record = left(presence.leave(&lobby, &key, conn, 4_000));
    assert!(!record.online);
    assert_eq!(record.joined_at, 1_000);
    assert_eq!(record.last_seen, 4_000);
    assert_eq!(record.connections, 0);
    assert_eq!(presence.get(&lobby, &key, 5_000), Some(record));
    assert_eq!(presence.online_count(&lobby), 0);
}

/// Conformance P1.
#[test]
fn p1_activity_set_and_cleared() {
    let presence = MemoryPresence::new(TTL);
    let lobby = room("lobby");
    let key = PresenceKey::user("ada");
    presence.join(&lobby, &key, ConnId::new(), 1_000);

    let record = updated(
        presence
            .set_activity(&lobby, &key, Some("typing".into()), 2_000)
            .expect("ada has a record"),
    );
    assert_eq!(record.activity.as_deref(), Some("typing"));
    assert_eq!(record.last_seen, 2_000);
    assert_eq!(
        presence.set_activity(&lobby, &key, Some("typing".into()), 2_500),
        Some(PresenceChange::Unchanged)
    );

    let record = updated(
        presence
            .set_activity(&lobby, &key, None, 3_000)
            .expect("ada has a record"),
    );
    assert_eq!(record.activity, None);
    assert_eq!(
        presence.get(&lobby, &key, 3_000).and_then(|r| r.activity),
        None
    );
}

/// Conformance P1.
#[test]
fn p1_activity_of_unknown_key_is_none() {
    let presence = MemoryPresence::new(TTL);
    let lobby = room("lobby");
    let key = PresenceKey::user("ada");
    assert_eq!(
        presence.set_activity(&lobby, &key, Some("x".into()), 0),
        None
    );
    presence.join(&lobby, &PresenceKey::user("bob"), ConnId::new(), 0);
    assert_eq!(
        presence.set_activity(&lobby, &key, Some("x".into()), 0),
        None
    );
}

/// Conformance P1.
#[test]
fn p1_rejoin_starts_a_new_online_period() {
    let presence = MemoryPresence::new(TTL);
    let lobby = room("lobby");
    let key = PresenceKey::user("ada");
    let conn = ConnId::new();
    presence.join(&lobby, &key, conn, 1_000);
    presence.set_activity(&lobby, &key, Some("typing".into()), 1_500);
    presence.leave(&lobby, &key, conn, 2_000);

    let record = joined(presence.join(&lobby, &key, ConnId::new(), 3_000));
    assert_eq!(record.joined_at, 3_000);
    assert_eq!(record.activity, None);
    assert_eq!(presence.record_count(), 1);
}

/// Conformance P2.
#[test]
fn p2_two_connections_of_one_user_are_one_record() {
    let presence = MemoryPresence::new(TTL);
    let lobby = room("lobby");
    let ada = PresenceKey::user("ada");
    let (tab1, tab2) = (ConnId::new(), ConnId::new());

    joined(presence.join(&lobby, &ada, tab1, 1_000));
    let record = updated(presence.join(&lobby, &ada, tab2, 2_000));
    assert_eq!(record.connections, 2);
    assert_eq!(record.joined_at, 1_000);
    assert_eq!(record.last_seen, 2_000);
    assert_eq!(presence.list(&lobby, 2_000).len(), 1);
    assert_eq!(presence.record_count(), 1);

    let record = updated(presence.leave(&lobby, &ada, tab1, 3_000));
    assert!(record.online);
    assert_eq!(record.connections, 1);
    assert_eq!(presence.online_count(&lobby), 1);

    let record = left(presence.leave(&lobby, &ada, tab2, 4_000));
    assert!(!record.online);
    assert_eq!(record.connections, 0);
    assert_eq!(presence.online_count(&lobby), 0);
}

/// Conformance P2.
#[test]
fn p2_online_count_counts_users_not_connections() {
    let presence = MemoryPresence::new(TTL);
    let lobby = room("lobby");
    for _ in 0..3 {
        presence.join(&lobby, &PresenceKey::user("ada"), ConnId::new(), 0);
    }
    presence.join(&lobby, &PresenceKey::user("bob"), ConnId::new(), 0);
    assert_eq!(presence.online_count(&lobby), 2);
    assert_eq!(
        presence
            .get(&lobby, &PresenceKey::user("ada"), 0)
            .map(|r| r.connections),
        Some(3)
    );
}

/// Conformance P3.
#[test]
fn p3_offline_records_expire_lazily_on_get() {
    let presence = MemoryPresence::new(TTL);
    let lobby = room("lobby");
    let key = PresenceKey::user("ada");
    let conn = ConnId::new();
    presence.join(&lobby, &key, conn, 0);
    presence.leave(&lobby, &key, conn, 1_000);

    assert!(presence.get(&lobby, &key, 1_000 + TTL_MS - 1).is_some());
    assert_eq!(presence.get(&lobby, &key, 1_000 + TTL_MS), None);
    // The read removed it, and with it the now empty room.
    assert_eq!(presence.record_count(), 0);
    assert_eq!(
        presence.set_activity(&lobby, &key, Some("x".into()), 1_000 + TTL_MS),
        None
    );
}

/// Conformance P3.
#[test]
fn p3_offline_records_expire_lazily_on_list() {
    let presence = MemoryPresence::new(TTL);
    let lobby = room("lobby");
    let (ada, bob) = (PresenceKey::user("ada"), PresenceKey::user("bob"));
    let conn = ConnId::new();
    presence.join(&lobby, &ada, conn, 0);
    presence.join(&lobby, &bob, ConnId::new(), 0);
    presence.leave(&lobby, &ada, conn, 1_000);

    assert_eq!(presence.list(&lobby, 1_000 + TTL_MS - 1).len(), 2);
    let records = presence.list(&lobby, 1_000 + TTL_MS);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].key, bob);
    assert_eq!(presence.record_count(), 1);
}

/// Conformance P3.
#[test]
fn p3_offline_records_expire_via_sweep() {
    let presence = MemoryPresence::new(TTL);
    let (lobby, other) = (room("lobby"), room("other"));
    let key = PresenceKey::user("ada");
    let conn = ConnId::new();
    presence.join(&lobby, &key, conn, 0);
    presence.leave(&lobby, &key, conn, 1_000);
    presence.join(&other, &key, ConnId::new(), 0);

    assert_eq!(presence.sweep(1_000 + TTL_MS - 1), 0);
    assert_eq!(presence.sweep(1_000 + TTL_MS), 1);
    assert_eq!(presence.record_count(), 1);
    assert!(presence.get(&other, &key, 1_000 + TTL_MS).is_some());
}

/// Conformance P3.
#[test]
fn p3_online_records_never_expire() {
    let presence = MemoryPresence::new(Duration::ZERO);
    let lobby = room("lobby");
    let key = PresenceKey::user("ada");
    presence.join(&lobby, &key, ConnId::new(), 0);

    assert_eq!(presence.sweep(u64::MAX), 0);
    assert!(presence.get(&lobby, &key, u64::MAX).is_some());
    assert_eq!(presence.list(&lobby, u64::MAX).len(), 1);
}

#[test]
fn duplicate_join_is_idempotent() {
    let presence = MemoryPresence::new(TTL);
    let lobby = room("lobby");
    let key = PresenceKey::user("ada");
    let conn = ConnId::new();
    let first = joined(presence.join(&lobby, &key, conn, 1_000));

    assert_eq!(
        presence.join(&lobby, &key, conn, 2_000),
        PresenceChange::Unchanged
    );
    assert_eq!(presence.get(&lobby, &key, 2_000), Some(first));
    // One leave is enough to go offline.
    left(presence.leave(&lobby, &key, conn, 3_000));
}

#[test]
fn leave_of_non_member_is_unchanged() {
    let presence = MemoryPresence::new(TTL);
    let lobby = room("lobby");
    let key = PresenceKey::user("ada");
    let conn = ConnId::new();

    assert_eq!(
        presence.leave(&lobby, &key, conn, 0),
        PresenceChange::Unchanged
    );
    presence.join(&lobby, &key, conn, 0);
    assert_eq!(
        presence.leave(&lobby, &key, ConnId::new(), 0),
        PresenceChange::Unchanged
    );
    left(presence.leave(&lobby, &key, conn, 0));
    assert_eq!(
        presence.leave(&lobby, &key, conn, 0),
        PresenceChange::Unchanged
    );
    assert_eq!(presence.record_count(), 1);
}

#[test]
fn rooms_are_independent() {
    let presence = MemoryPresence::new(TTL);
    let (lobby, kitchen) = (room("lobby"), room("kitchen"));
    let other_channel = RoomKey::new("games", "lobby");
    let key = PresenceKey::user("ada");
    let conn = ConnId::new();

    joined(presence.join(&lobby, &key, conn, 0));
    joined(presence.join(&kitchen, &key, conn, 0));
    presence.set_activity(&kitchen, &key, Some("cooking".into()), 1);

    assert_eq!(presence.online_count(&other_channel), 0);
    assert_eq!(presence.get(&other_channel, &key, 1), None);
    assert_eq!(presence.get(&lobby, &key, 1).and_then(|r| r.activity), None);
    left(presence.leave(&kitchen, &key, conn, 2));
    assert_eq!(presence.online_count(&lobby), 1);
    assert_eq!(presence.online_count(&kitchen), 0);
}

#[test]
fn list_orders_online_first_then_by_joined_at() {
    let presence = MemoryPresence::new(TTL);
    let lobby = room("lobby");
    let (ada, bob, cy, dee) = (
        PresenceKey::user("ada"),
        PresenceKey::user("bob"),
        PresenceKey::user("cy"),
        PresenceKey::user("dee"),
    );
    let (ada_conn, cy_conn) = (ConnId::new(), ConnId::new());
    presence.join(&lobby, &ada, ada_conn, 10);
    presence.join(&lobby, &bob, ConnId::new(), 40);
    presence.join(&lobby, &cy, cy_conn, 5);
    presence.join(&lobby, &dee, ConnId::new(), 20);
    presence.leave(&lobby, &ada, ada_conn, 50);
    presence.leave(&lobby, &cy, cy_conn, 60);

    let keys: Vec<_> = presence
        .list(&lobby, 70)
        .into_iter()
        .map(|r| (r.key, r.online))
        .collect();
    assert_eq!(
        keys,
        vec![(dee, true), (bob, true), (cy, false), (ada, false)]
    );
}

#[test]
fn drop_room_forgets_every_record() {
    let presence = MemoryPresence::new(TTL);
    let (lobby, kitchen) = (room("lobby"), room("kitchen"));
    for i in 0..5 {
        presence.join(
            &lobby,
            &PresenceKey::user(format!("u{i}")),
            ConnId::new(),
            0,
        );
    }
    presence.join(&kitchen, &PresenceKey::user("ada"), ConnId::new(), 0);
    assert_eq!(presence.record_count(), 6);

    presence.drop_room(&lobby);
    assert_eq!(presence.record_count(), 1);
    assert_eq!(presence.online_count(&lobby), 0);
    assert!(presence.list(&lobby, 0).is_empty());

    // The room comes back fresh on the next join.
    joined(presence.join(&lobby, &PresenceKey::user("u0"), ConnId::new(), 1));
    assert_eq!(presence.record_count(), 2);
}

/// Conformance P3.
#[test]
fn p3_churn_leaves_no_records_after_sweep() {
    let presence = MemoryPresence::new(Duration::ZERO);
    let rooms: Vec<RoomKey> = (0..50).map(|i| room(&format!("room-{i}"))).collect();
    for cycle in 0..1_000u64 {
        let room = &rooms[(cycle % 50) as usize];
        let conn = ConnId::new();
        let key = if cycle % 2 == 0 {
            PresenceKey::from(conn)
        } else {
            PresenceKey::user(format!("user-{}", cycle % 7))
        };
        joined(presence.join(room, &key, conn, cycle));
        left(presence.leave(room, &key, conn, cycle));
    }
    assert!(presence.record_count() > 0);

    presence.sweep(1_000);
    assert_eq!(presence.record_count(), 0);
    assert!(read(&presence.rooms).is_empty());
}

#[test]
fn store_is_object_safe_and_shareable() {
    let presence: Arc<dyn PresenceStore> = Arc::new(MemoryPresence::default());
    let lobby = room("lobby");
    let key = PresenceKey::user("ada");
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let presence = Arc::clone(&presence);
            let (lobby, key) = (lobby.clone(), key.clone());
            std::thread::spawn(move || {
                for _ in 0..100 {
                    let conn = ConnId::new();
                    presence.join(&lobby, &key, conn, 0);
                    presence.leave(&lobby, &key, conn, 0);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("no thread panics");
    }
    assert_eq!(presence.online_count(&lobby), 0);
    assert_eq!(presence.record_count(), 1);
}

#[test]
fn records_serialize_with_snake_case_fields_and_string_keys() {
    let conn = ConnId::from(uuid::Uuid::nil());
    let record = PresenceRecord {
        key: PresenceKey::from(conn),
        online: true,
        joined_at: 1,
        last_seen: 2,
        activity: Some("typing".into()),
        connections: 1,
    };
    assert_eq!(
        serde_json::to_value(&record).expect("serializable"),
        serde_json::json!({
            "key": "00000000-0000-0000-0000-000000000000",
            "online": true,
            "joined_at": 1,
            "last_seen": 2,
            "activity": "typing",
            "connections": 1,
        })
    );
    assert_eq!(
        serde_json::to_value(PresenceKey::user("ada")).expect("serializable"),
        serde_json::json!("ada")
    );
    assert_eq!(PresenceKey::user("ada").to_string(), "ada");
}

#[test]
fn now_ms_is_after_2020() {
    assert!(now_ms() > 1_577_836_800_000);
}
