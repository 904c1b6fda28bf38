//! Conformance L2: thousands of connect → join → leave → disconnect cycles
//! over real sockets leave no connection, room membership, presence record
//! or task behind.

use std::{collections::HashMap, sync::Arc, time::Duration};

use liweb::{
    CloseCode,
    client::Incoming,
    presence::{MemoryPresence, PresenceStore},
};
use liweb_tests::{
    JoinOutcome, Record, RoomRef, Running, TestClient, TestIn, TestOut, WAIT, eventually, next,
};
use tokio::task::JoinSet;

const CYCLES: usize = 2_000;
/// How many clients run their cycle at once.
const BATCH: usize = 100;
/// Each cycle joins one `stay` and one `leave` room out of this many of each.
const ROOMS: usize = 10;
const TTL: Duration = Duration::from_millis(50);

fn stay_room(n: usize) -> RoomRef {
    RoomRef::new("churn", &format!("stay-{}", n % ROOMS))
}

fn leave_room(n: usize) -> RoomRef {
    RoomRef::new("churn", &format!("leave-{}", n % ROOMS))
}

/// The next event, skipping the other members' presence events and the
/// state snapshots (which the typed client cannot decode).
async fn next_answer(client: &mut TestClient) -> Incoming<TestOut> {
    loop {
        match next(client).await {
            Incoming::Malformed {
                event: Some(event), ..
            } if event.starts_with("presence:") || event.starts_with("state:") => continue,
            other => return other,
        }
    }
}

async fn until_closed(client: &mut TestClient) {
    loop {
        match next_answer(client).await {
            Incoming::Closed(_) => return,
            Incoming::Event(_) => continue,
            other => panic!("expected the close, got {other:?}"),
        }
    }
}

/// One cycle; the way it ends varies with `n`.
async fn cycle(url: String, n: usize) {
    let mut client = tokio::time::timeout(WAIT, TestClient::connect(&url))
        .await
        .expect("connect timed out")
        .expect("connect failed");
    let (stay, leave) = (stay_room(n), leave_room(n));
    client.emit(TestIn::Join(stay)).unwrap();
    client.emit(TestIn::Join(leave.clone())).unwrap();
    for _ in 0..2 {
        match next_answer(&mut client).await {
            Incoming::Event(TestOut::JoinOutcome(outcome)) => {
                assert_eq!(outcome, JoinOutcome::Added)
            }
            other => panic!("expected a join outcome, got {other:?}"),
        }
    }
    client.emit(TestIn::Leave(leave)).unwrap();
    match next_answer(&mut client).await {
        Incoming::Event(TestOut::Left(true)) => {}
        other => panic!("expected `left: true`, got {other:?}"),
    }
    match n % 3 {
        0 => {
            client.close(CloseCode::Normal, "done").unwrap();
            until_closed(&mut client).await;
        }
        1 => {
            client
                .emit(TestIn::CloseMe {
                    code: 4000,
                    reason: "done".into(),
                })
                .unwrap();
            until_closed(&mut client).await;
        }
        _ => drop(client),
    }
}

/// Conformance L2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l2_churn_leaves_no_connection_membership_presence_record_or_task_behind() {
    let store = Arc::new(MemoryPresence::new(TTL));
    let shared: Arc<dyn PresenceStore> = store.clone();
    let running =
        Running::start_with(|builder| builder.presence_ttl(TTL).presence_store(shared)).await;
    let server = &running.server;
    // Exercise the presence event and state sync paths under churn too.
    for n in 0..ROOMS {
        stay_room(n).on(server).set_presence_events(true);
        leave_room(n).on(server).set_sync(true);
    }
    let metrics = tokio::runtime::Handle::current().metrics();
    // The server's own tasks (the accept loop, the presence sweep) are alive
    // from here on; everything a connection starts must be gone at the end.
    let baseline = metrics.num_alive_tasks();

    let url = running.url();
    for batch in 0..CYCLES / BATCH {
        let mut cycles = JoinSet::new();
        for i in 0..BATCH {
            cycles.spawn(cycle(url.clone(), batch * BATCH + i));
        }
        while let Some(done) = cycles.join_next().await {
            done.expect("a cycle failed");
        }
    }

    // Every connection connected and disconnected exactly once.
    let records = running
        .recorder
        .wait_until("every disconnect", |records| {
            records
                .iter()
                .filter(|r| matches!(r, Record::Disconnected(..)))
                .count()
                >= CYCLES
        })
        .await;
    let mut seen: HashMap<_, (usize, usize)> = HashMap::new();
    for record in &records {
        match record {
            Record::Connected(id) => seen.entry(*id).or_default().0 += 1,
            Record::Disconnected(id, _) => seen.entry(*id).or_default().1 += 1,
            other => panic!("unexpected record {other:?}"),
        }
    }
    assert_eq!(seen.len(), CYCLES);
    assert!(
        seen.values().all(|&counts| counts == (1, 1)),
        "{:?}",
        seen.iter().find(|(_, counts)| **counts != (1, 1))
    );
    assert_eq!(server.connection_count(), 0);
    assert!(server.connections().is_empty());

    // No membership on either side of the index.
    let mut expected_rooms: Vec<String> = (0..ROOMS)
        .flat_map(|n| [stay_room(n).room, leave_room(n).room])
        .collect();
    expected_rooms.sort();
    let churn = server.channel("churn");
    assert_eq!(churn.rooms(), expected_rooms);
    for name in &expected_rooms {
        let room = churn.room(name);
        assert_eq!(room.size(), 0, "{name}");
        assert!(room.members().is_empty(), "{name}");
        assert_eq!(room.online_count(), 0, "{name}");
    }
    let conns = running.recorder.conns();
    assert_eq!(conns.len(), CYCLES);
    for conn in &conns {
        assert!(conn.is_closed());
        assert_eq!(
            conn.room_count(),
            0,
            "{:?} is still in {:?}",
            conn.id(),
            conn.rooms()
        );
    }

    // Offline presence records expire; the sweep removes them without reads.
    eventually(
        "the presence sweep",
        || store.record_count(),
        |count| *count == 0,
    )
    .await;
    for name in &expected_rooms {
        assert!(churn.room(name).presence().is_empty(), "{name}");
    }

    // The connections' tasks (reader, writer, the HTTP connection, the
    // clients' own) have all ended.
    eventually(
        "the connections' tasks to end",
        || metrics.num_alive_tasks(),
        |alive| *alive <= baseline,
    )
    .await;
    assert_eq!(metrics.num_alive_tasks(), baseline);
}
