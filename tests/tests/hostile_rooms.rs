//! K2: joins that are refused, and rooms only looked up, leave no room (and
//! so no memory) behind; a connection cannot be in more rooms than
//! `max_rooms_per_connection`. Bystanders chat through every attack.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use liweb::{ErrorCode, JoinRejected, RoomDefaults, client::Incoming};
use liweb_tests::{
    JoinOutcome, RoomRef, Running, StateOp, Target, TestClient, TestIn, TestOut, TestServer, WAIT,
    bystanders::Bystanders, eventually,
};
use serde_json::json;

/// The channel whose rooms clients name: deleted when empty.
const TEMP: &str = "temp";

/// How many distinct rooms each attack names.
const NAMES: usize = 2_000;

/// How many requests go out before their answers are read.
const BATCH: usize = 100;

fn temp_rooms(server: &TestServer) -> usize {
    server.channel(TEMP).rooms().len()
}

/// Samples the channel's room count until stopped; returns the largest.
fn watch_rooms(server: &TestServer) -> (Arc<AtomicBool>, tokio::task::JoinHandle<usize>) {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let server = server.clone();
    let task = tokio::spawn(async move {
        let most = AtomicUsize::new(0);
        while !stopped.load(Ordering::Relaxed) {
            most.fetch_max(temp_rooms(&server), Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        most.into_inner()
    });
    (stop, task)
}

/// The next item that is not a bystander's concern, within `WAIT`.
async fn next(client: &mut TestClient) -> Incoming<TestOut> {
    tokio::time::timeout(WAIT, client.recv())
        .await
        .expect("the server did not answer in time")
        .expect("the connection ended")
}

/// Sends `requests` in batches, reading `answers_each` items after each
/// request, and hands every item to `check`.
async fn attack(
    client: &mut TestClient,
    requests: impl Iterator<Item = TestIn>,
    answers_each: usize,
    mut check: impl FnMut(Incoming<TestOut>),
) {
    let requests: Vec<TestIn> = requests.collect();
    for batch in requests.chunks(BATCH) {
        for request in batch {
            client
                .emit(request.clone())
                .expect("the attacker could send");
        }
        for _ in 0..batch.len() * answers_each {
            check(next(client).await);
        }
    }
}

/// K2: thousands of joins of distinct names, each refused by the
/// application (here a join guard, which runs after the room was looked
/// up), leave the channel with no room, during the attack and after; each
/// refusal is answered.
#[tokio::test]
async fn k2_refused_joins_of_distinct_names_leave_no_room_behind() {
    let running = Running::start_with(|builder| {
        builder
            // The attack sends far more than the default rate allows.
            .max_events_per_second(None)
            .channel_defaults(TEMP, RoomDefaults::new().delete_when_empty(true))
            .join_guard(TEMP, |_conn, _room| async {
                Err(JoinRejected::new("this channel is closed"))
            })
    })
    .await;
    let bystanders = Bystanders::start(&running).await;
    assert_eq!(temp_rooms(&running.server), 0);
    let (stop, most) = watch_rooms(&running.server);

    let (mut attacker, _) = running.client().await;
    let (mut errors, mut refused) = (0, 0);
    attack(
        &mut attacker,
        (0..NAMES).map(|n| TestIn::Join(RoomRef::new(TEMP, &format!("r{n}")))),
        2,
        |item| match item {
            Incoming::Error(error) => {
                assert_eq!(error.code, ErrorCode::JoinRejected, "{error:?}");
                errors += 1;
            }
            Incoming::Event(TestOut::JoinOutcome(JoinOutcome::Rejected(reason))) => {
                assert_eq!(reason, "this channel is closed");
                refused += 1;
            }
            other => panic!("unexpected {other:?}"),
        },
    )
    .await;
    assert_eq!((errors, refused), (NAMES, NAMES));
    assert_eq!(temp_rooms(&running.server), 0, "right after the attack");

    drop(attacker);
    eventually(
        "the attacker to be gone",
        || running.server.connection_count(),
        |count| *count == 2,
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let most = most.await.unwrap();
    // One join is handled at a time per connection: at most its room exists.
    assert!(most <= 1, "{most} refused rooms existed at once");
    assert_eq!(temp_rooms(&running.server), 0, "after the attacker left");
    assert_eq!(
        running.server.channel("bystanders").rooms(),
        ["lobby"],
        "the bystanders' room is untouched"
    );
    bystanders.finish().await;
}

/// K2: rooms only looked up (emitted to, their state read or written, an
/// activity set) and never joined are gone once the handler is done, state
/// included.
#[tokio::test]
async fn k2_rooms_looked_up_and_abandoned_are_gone() {
    let running = Running::start_with(|builder| {
        builder
            // The attack sends far more than the default rate allows.
            .max_events_per_second(None)
            .channel_defaults(TEMP, RoomDefaults::new().delete_when_empty(true))
    })
    .await;
    let bystanders = Bystanders::start(&running).await;
    let (stop, most) = watch_rooms(&running.server);
    let (mut attacker, _) = running.client().await;
    let room = |n: usize| RoomRef::new(TEMP, &format!("r{n}"));
    let requests = (0..NAMES).map(|n| match n % 4 {
        0 => TestIn::RoomEmit {
            room: room(n),
            text: "anyone?".into(),
            target: Target::Everyone,
        },
        1 => TestIn::RoomState {
            room: room(n),
            op: StateOp::Get { key: "k".into() },
        },
        2 => TestIn::RoomState {
            room: room(n),
            op: StateOp::Set {
                key: "k".into(),
                value: json!("x".repeat(100)),
            },
        },
        _ => TestIn::SetActivity {
            room: room(n),
            activity: Some("typing".into()),
        },
    });
    attack(&mut attacker, requests, 1, |item| match item {
        Incoming::Event(TestOut::Sent(0) | TestOut::ActivitySet(false)) => {}
        Incoming::Event(TestOut::StateResult(Ok(value))) => assert_eq!(value, json!(null)),
        other => panic!("unexpected {other:?}"),
    })
    .await;
    assert_eq!(temp_rooms(&running.server), 0);
    stop.store(true, Ordering::Relaxed);
    let most = most.await.unwrap();
    assert!(most <= 1, "{most} abandoned rooms existed at once");

    // The state written to abandoned rooms went with them: reading it
    // again finds nothing (and leaves nothing either).
    for n in (2..NAMES).step_by(4).take(20) {
        attacker
            .emit(TestIn::RoomState {
                room: room(n),
                op: StateOp::Get { key: "k".into() },
            })
            .unwrap();
        match next(&mut attacker).await {
            Incoming::Event(TestOut::StateResult(Ok(value))) => {
                assert_eq!(value, json!(null), "room r{n} kept its state")
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(temp_rooms(&running.server), 0);
    bystanders.finish().await;
}

/// K2: a join past `max_rooms_per_connection` is refused with the
/// documented `error` code `room_limit` and `JoinError::TooManyRooms`,
/// counted in `Stats::room_limit_refusals`, and leaves no room behind;
/// leaving a room makes a place.
#[tokio::test]
async fn k2_a_join_past_max_rooms_per_connection_gets_room_limit() {
    const LIMIT: usize = 3;
    let running = Running::start_with(|builder| {
        builder
            // The attack sends far more than the default rate allows.
            .max_events_per_second(None)
            .channel_defaults(TEMP, RoomDefaults::new().delete_when_empty(true))
            .max_rooms_per_connection(LIMIT)
    })
    .await;
    let bystanders = Bystanders::start(&running).await;
    let (mut attacker, _) = running.client().await;
    for n in 0..LIMIT {
        attacker
            .emit(TestIn::Join(RoomRef::new(TEMP, &format!("mine{n}"))))
            .unwrap();
        assert!(matches!(
            next(&mut attacker).await,
            Incoming::Event(TestOut::JoinOutcome(JoinOutcome::Added))
        ));
    }
    let (stop, most) = watch_rooms(&running.server);
    let (mut errors, mut refused) = (0, 0);
    attack(
        &mut attacker,
        (0..NAMES).map(|n| TestIn::Join(RoomRef::new(TEMP, &format!("r{n}")))),
        2,
        |item| match item {
            Incoming::Error(error) => {
                assert_eq!(error.code, ErrorCode::RoomLimit, "{error:?}");
                assert!(error.message.contains("3 rooms"), "{error:?}");
                errors += 1;
            }
            Incoming::Event(TestOut::JoinOutcome(JoinOutcome::Rejected(reason))) => {
                assert_eq!(
                    reason,
                    "the connection is in 3 rooms, the most it may be in"
                );
                refused += 1;
            }
            other => panic!("unexpected {other:?}"),
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    assert_eq!((errors, refused), (NAMES, NAMES));
    assert_eq!(running.server.stats().room_limit_refusals, NAMES as u64);
    assert_eq!(
        running.server.channel(TEMP).rooms(),
        ["mine0", "mine1", "mine2"]
    );
    let most = most.await.unwrap();
    assert!(most <= LIMIT + 1, "{most} rooms existed at once");

    // Leaving one makes a place for another.
    attacker
        .emit(TestIn::Leave(RoomRef::new(TEMP, "mine0")))
        .unwrap();
    assert!(matches!(
        next(&mut attacker).await,
        Incoming::Event(TestOut::Left(true))
    ));
    attacker
        .emit(TestIn::Join(RoomRef::new(TEMP, "other")))
        .unwrap();
    assert!(matches!(
        next(&mut attacker).await,
        Incoming::Event(TestOut::JoinOutcome(JoinOutcome::Added))
    ));
    assert_eq!(
        running.server.channel(TEMP).rooms(),
        ["mine1", "mine2", "other"]
    );
    bystanders.finish().await;
}
