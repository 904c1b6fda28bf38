//! Conformance, section X (cluster), and S7 and S9 across nodes: several server
//! instances in one test process, each with its own Redis connections,
//! behind one real Redis, with real sockets.
//!
//! These tests need Redis. They are `#[ignore]`d so that `cargo test` does
//! not report them as passed without it; run them with
//!
//! ```sh
//! LIWEB_REDIS_URL=redis://127.0.0.1:6379 cargo test -p liweb-tests --test cluster -- --ignored
//! ```
//!
//! Each test uses its own key prefix, so they run in parallel on one Redis.
//! The fault test (X4) starts and stops its own `redis-server` on a free
//! port and never touches the shared one.

use std::{
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use liweb::{
    cluster::{ClusterError, RedisAdapter, RedisConfig},
    prelude::*,
};
use liweb_tests::{
    RoomRef, Running, StateOp, Target, TestClient, TestIn, TestOut, WAIT, eventually, fence,
    next_event,
};
use serde_json::{Value, json};

const NEEDS_REDIS: &str = "needs Redis: set LIWEB_REDIS_URL=redis://127.0.0.1:6379 and run with --ignored (see the README)";

/// The Redis URL of the environment; a clear failure when it is missing,
/// since these tests only run when asked for with `--ignored`.
fn redis_url() -> String {
    std::env::var("LIWEB_REDIS_URL").unwrap_or_else(|_| panic!("{NEEDS_REDIS}"))
}

/// A key prefix no other test (or earlier run) uses.
fn prefix(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("liweb-test:{test}:{nanos}")
}

/// Deletes the keys a test wrote under its prefix, so repeated runs do not
/// fill the shared Redis.
async fn cleanup(url: &str, prefix: &str) {
    let cleaned = async {
        let client = redis::Client::open(url)?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        // KEYS is fine on a test Redis; an application would SCAN.
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            redis::AsyncCommands::del::<_, ()>(&mut conn, keys).await?;
        }
        Ok::<_, redis::RedisError>(())
    };
    match tokio::time::timeout(WAIT, cleaned).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => eprintln!("could not clean up `{prefix}`: {err}"),
        Err(_) => eprintln!("could not clean up `{prefix}`: timed out"),
    }
}

fn config(prefix: &str) -> RedisConfig {
    RedisConfig::new()
        .prefix(prefix)
        .liveness_ttl(Duration::from_secs(2))
        .timeout(Duration::from_millis(500))
}

/// Errors an adapter reported.
#[derive(Clone, Default)]
struct Errors(Arc<Mutex<Vec<ClusterError>>>);

impl Errors {
    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

async fn node_with(url: &str, config: RedisConfig) -> (Running, Errors) {
    let errors = Errors::default();
    let sink = errors.clone();
    let adapter = tokio::time::timeout(WAIT, RedisAdapter::connect_with(url, config))
        .await
        .expect("connect timed out")
        .expect("Redis is reachable")
        .on_error(move |err| sink.0.lock().unwrap().push(err.clone()));
    let running = Running::start_with(|builder| builder.adapter(adapter)).await;
    (running, errors)
}

async fn node(prefix: &str) -> Running {
    node_with(&redis_url(), config(prefix)).await.0
}

async fn join(client: &mut TestClient, room: &RoomRef) {
    client.emit(TestIn::Join(room.clone())).unwrap();
    assert_eq!(
        next_event(client).await,
        TestOut::JoinOutcome(liweb_tests::JoinOutcome::Added)
    );
}

async fn room_emit(client: &mut TestClient, room: &RoomRef, text: &str) -> TestOut {
    client
        .emit(TestIn::RoomEmit {
            room: room.clone(),
            text: text.to_owned(),
            target: Target::Everyone,
        })
        .unwrap();
    next_event(client).await
}

fn message(text: &str) -> TestOut {
    TestOut::RoomMessage(text.to_owned())
}

/// Lets messages that should not come (a duplicate, an echo) arrive before
/// a fence proves they did not.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(150)).await;
}

/// Conformance X1.
#[tokio::test]
#[ignore = "needs Redis: LIWEB_REDIS_URL, run with --ignored"]
async fn x1_a_room_emit_on_one_node_reaches_members_on_another_exactly_once() {
    let prefix = prefix("x1");
    let a = node(&prefix).await;
    let b = node(&prefix).await;
    let room = RoomRef::new("chat", "general");
    let (mut sender, _) = a.client().await;
    let (mut member_b, _) = b.client().await;
    let (mut outsider_b, _) = b.client().await;
    join(&mut sender, &room).await;
    join(&mut member_b, &room).await;

    assert_eq!(room_emit(&mut sender, &room, "one").await, message("one"));
    assert_eq!(
        next_event(&mut sender).await,
        TestOut::Sent(1),
        "one local member"
    );
    assert_eq!(room_emit(&mut sender, &room, "two").await, message("two"));
    assert_eq!(next_event(&mut sender).await, TestOut::Sent(1));

    assert_eq!(next_event(&mut member_b).await, message("one"));
    assert_eq!(
        next_event(&mut member_b).await,
        message("two"),
        "no duplicate"
    );
    settle().await;
    fence(&mut member_b, "b").await;
    fence(&mut outsider_b, "not a member").await;
    // The sender's node skipped its own message when Redis echoed it.
    fence(&mut sender, "a").await;
    cleanup(&redis_url(), &prefix).await;
}

/// Conformance X1.
#[tokio::test]
#[ignore = "needs Redis: LIWEB_REDIS_URL, run with --ignored"]
async fn x1_multi_room_emits_and_broadcasts_reach_each_remote_connection_once() {
    let prefix = prefix("x1-multi");
    let a = node(&prefix).await;
    let b = node(&prefix).await;
    let lobby = RoomRef::new("chat", "lobby");
    let game = RoomRef::new("game", "1");
    let (mut sender, _) = a.client().await;
    let (mut both, _) = b.client().await;
    let (mut neither, _) = b.client().await;
    join(&mut both, &lobby).await;
    join(&mut both, &game).await;

    sender
        .emit(TestIn::MultiEmit {
            rooms: vec![lobby.clone(), game.clone()],
            text: "multi".into(),
            except: None,
        })
        .unwrap();
    assert_eq!(next_event(&mut sender).await, TestOut::Sent(0));
    assert_eq!(next_event(&mut both).await, message("multi"));

    sender.emit(TestIn::BroadcastAll("all".into())).unwrap();
    assert_eq!(
        next_event(&mut sender).await,
        TestOut::Broadcast("all".into())
    );
    assert_eq!(
        next_event(&mut both).await,
        TestOut::Broadcast("all".into())
    );
    assert_eq!(
        next_event(&mut neither).await,
        TestOut::Broadcast("all".into())
    );
    settle().await;
    fence(&mut both, "once").await;
    fence(&mut neither, "once").await;
    fence(&mut sender, "once").await;
    cleanup(&redis_url(), &prefix).await;
}

/// Conformance X1: a node stops hearing a room when its last member leaves
/// and hears it again when one joins.
#[tokio::test]
#[ignore = "needs Redis: LIWEB_REDIS_URL, run with --ignored"]
async fn x1_a_node_hears_a_room_only_while_it_has_members_there() {
    let prefix = prefix("x1-subscribe");
    let a = node(&prefix).await;
    let b = node(&prefix).await;
    let room = RoomRef::new("chat", "topic");
    let (mut sender, _) = a.client().await;
    let (mut member, _) = b.client().await;
    join(&mut member, &room).await;
    member.emit(TestIn::Leave(room.clone())).unwrap();
    assert_eq!(next_event(&mut member).await, TestOut::Left(true));

    assert_eq!(
        room_emit(&mut sender, &room, "away").await,
        TestOut::Sent(0)
    );
    settle().await;
    fence(&mut member, "not a member any more").await;

    join(&mut member, &room).await;
    assert_eq!(
        room_emit(&mut sender, &room, "back").await,
        TestOut::Sent(0)
    );
    assert_eq!(next_event(&mut member).await, message("back"));
    cleanup(&redis_url(), &prefix).await;
}

/// Conformance X2.
#[tokio::test]
#[ignore = "needs Redis: LIWEB_REDIS_URL, run with --ignored"]
async fn x2_state_written_on_one_node_is_read_and_synced_on_another() {
    let prefix = prefix("x2");
    let url = redis_url();
    let synced = |builder: liweb::ServerBuilder<TestIn, TestOut>| {
        builder.channel_defaults("poll", liweb::RoomDefaults::new().sync(true))
    };
    let start = |prefix: String| {
        let url = url.clone();
        async move {
            let adapter = RedisAdapter::connect_with(&url, config(&prefix))
                .await
                .expect("Redis is reachable");
            Running::start_with(|builder| synced(builder).adapter(adapter)).await
        }
    };
    let a = start(prefix.clone()).await;
    let b = start(prefix.clone()).await;
    let room = RoomRef::new("poll", "q1");
    let (mut writer, _) = a.client().await;

    let (mut watcher, _) = b.raw_client().await;
    watcher
        .emit("join", json!({"channel": "poll", "room": "q1"}))
        .await;
    assert_eq!(
        watcher.next().await,
        json!({"event": "state:snapshot", "payload": {"channel": "poll", "room": "q1", "state": {}}})
    );
    assert_eq!(
        watcher.next().await,
        json!({"event": "join_outcome", "payload": "added"})
    );

    writer
        .emit(TestIn::RoomState {
            room: room.clone(),
            op: StateOp::Set {
                key: "question".into(),
                value: json!({"text": "tabs?", "votes": [1, 2]}),
            },
        })
        .unwrap();
    assert_eq!(
        next_event(&mut writer).await,
        TestOut::StateResult(Ok(Value::Null))
    );
    assert_eq!(
        watcher.next().await,
        json!({"event": "state:patch", "payload": {
            "channel": "poll", "room": "q1",
            "op": "set", "key": "question", "value": {"text": "tabs?", "votes": [1, 2]}
        }})
    );

    let on_b = room.on(&b.server).state();
    assert_eq!(
        on_b.get::<Value>("question").await.unwrap(),
        Some(json!({"text": "tabs?", "votes": [1, 2]}))
    );
    assert!(on_b.has("question").await.unwrap());
    assert_eq!(
        on_b.update("missing", &1).await,
        Err(liweb::state::StateError::KeyMissing {
            key: "missing".into()
        })
    );
    assert_eq!(
        on_b.remove("question", |_| true).await,
        Err(liweb::state::StateError::NotAnArray {
            key: "question".into()
        })
    );
    on_b.patch("question", &json!({"text": "spaces?"}))
        .await
        .unwrap();
    let on_a = room.on(&a.server).state();
    assert_eq!(
        on_a.get::<Value>("question").await.unwrap(),
        Some(json!({"text": "spaces?", "votes": [1, 2]}))
    );
    assert!(on_a.delete("question").await.unwrap());
    assert!(!on_b.has("question").await.unwrap());
    drop(watcher);
    cleanup(&redis_url(), &prefix).await;
}

/// Conformance X2.
/// Conformance S7.
#[tokio::test]
#[ignore = "needs Redis: LIWEB_REDIS_URL, run with --ignored"]
async fn s7_x2_concurrent_increments_and_pushes_from_two_nodes_lose_nothing() {
    let prefix = prefix("s7");
    let a = node(&prefix).await;
    let b = node(&prefix).await;
    let room = RoomRef::new("game", "scores");
    const TASKS: usize = 4;
    const EACH: usize = 50;
    let mut tasks = Vec::new();
    for server in [&a.server, &b.server] {
        for task in 0..TASKS {
            let state = room.on(server).state();
            tasks.push(tokio::spawn(async move {
                for i in 0..EACH {
                    state.increment("hits", 1).await.unwrap();
                    state.decrement("misses", 2).await.unwrap();
                    if i % 5 == 0 {
                        state.push("log", &json!([task, i])).await.unwrap();
                    }
                }
            }));
        }
    }
    tokio::time::timeout(Duration::from_secs(60), async {
        for task in tasks {
            task.await.unwrap();
        }
    })
    .await
    .expect("the increments finished");
    let state = room.on(&a.server).state();
    let total = 2 * TASKS * EACH;
    assert_eq!(state.get::<usize>("hits").await.unwrap(), Some(total));
    assert_eq!(
        state.get::<i64>("misses").await.unwrap(),
        Some(-2 * i64::try_from(total).unwrap())
    );
    let log: Vec<Value> = state.get("log").await.unwrap().unwrap();
    assert_eq!(log.len(), 2 * TASKS * EACH / 5);

    // Integers that overflow and floats follow the in-memory store's rules.
    state.set("big", &i64::MAX).await.unwrap();
    assert_eq!(
        state.increment("big", 1).await.unwrap(),
        serde_json::Number::from(i64::MAX as u64 + 1)
    );
    state.set("half", &0.5).await.unwrap();
    assert_eq!(
        state.increment("half", 1).await.unwrap().as_f64(),
        Some(1.5)
    );
    state.set("text", "x").await.unwrap();
    assert_eq!(
        state.increment("text", 1).await,
        Err(liweb::state::StateError::NotANumber { key: "text".into() })
    );
    state.clear().await.unwrap();
    assert!(state.snapshot().await.unwrap().is_empty());
    cleanup(&redis_url(), &prefix).await;
}

/// Conformance X2.
/// Conformance S9.
#[tokio::test]
#[ignore = "needs Redis: LIWEB_REDIS_URL, run with --ignored"]
async fn s9_x2_concurrent_modifies_from_two_nodes_lose_nothing() {
    #[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
    struct Log {
        count: usize,
        recent: Vec<usize>,
    }
    const TASKS: usize = 50;
    const EACH: usize = 2;
    const KEPT: usize = 10;

    let prefix = prefix("s9");
    let a = node(&prefix).await;
    let b = node(&prefix).await;
    let room = RoomRef::new("chat", "history");
    let mut tasks = Vec::new();
    for server in [&a.server, &b.server] {
        for task in 0..TASKS {
            let state = room.on(server).state();
            tasks.push(tokio::spawn(async move {
                let mut counts = Vec::new();
                for n in 0..EACH {
                    let log = state
                        .modify("log", |log: Option<Log>| {
                            let mut log = log.unwrap_or_default();
                            log.count += 1;
                            log.recent.push(task * EACH + n);
                            let over = log.recent.len().saturating_sub(KEPT);
                            log.recent.drain(..over);
                            log
                        })
                        .await
                        .unwrap();
                    counts.push(log.count);
                }
                counts
            }));
        }
    }
    let mut counts = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        for task in tasks {
            counts.extend(task.await.unwrap());
        }
    })
    .await
    .expect("the modifies finished");

    // Every call saw the one before it, whichever node made it.
    let total = 2 * TASKS * EACH;
    counts.sort_unstable();
    counts.dedup();
    assert_eq!(counts.len(), total, "two calls saw one value");
    assert_eq!((counts.first(), counts.last()), (Some(&1), Some(&total)));
    let state = room.on(&b.server).state();
    let log: Log = state.get("log").await.unwrap().unwrap();
    assert_eq!(log.count, total);
    assert_eq!(log.recent.len(), KEPT);

    // A refusal on one node leaves the value the other node sees.
    let on_a = room.on(&a.server).state();
    let refused = on_a
        .try_modify("log", |_: Option<Log>| Err::<Log, _>("full"))
        .await;
    assert!(
        matches!(refused, Err(liweb::state::ModifyError::Refused("full"))),
        "{refused:?}"
    );
    let log: Log = state.get("log").await.unwrap().unwrap();
    assert_eq!(log.count, total);
    state.clear().await.unwrap();
    cleanup(&redis_url(), &prefix).await;
}

/// Conformance X3.
#[tokio::test]
#[ignore = "needs Redis: LIWEB_REDIS_URL, run with --ignored"]
async fn x3_presence_and_room_size_are_cluster_wide() {
    let prefix = prefix("x3");
    let a = node(&prefix).await;
    let b = node(&prefix).await;
    let room = RoomRef::new("chat", "presence");
    let (mut ada_a, ada_a_id) = a.client().await;
    let (mut ada_b, ada_b_id) = b.client().await;
    let (mut bob_b, bob_id) = b.client().await;
    for (client, user) in [
        (&mut ada_a, "ada"),
        (&mut ada_b, "ada"),
        (&mut bob_b, "bob"),
    ] {
        client.emit(TestIn::SetUser(user.into())).unwrap();
        join(client, &room).await;
    }

    let on_a = room.on(&a.server);
    assert_eq!(on_a.size(), 1, "the local size stays local");
    assert_eq!(on_a.cluster_size().await.unwrap(), 3);
    let mut expected = vec![ada_a_id, ada_b_id, bob_id];
    expected.sort_unstable_by_key(|id| *id.as_uuid());
    assert_eq!(on_a.cluster_members().await.unwrap(), expected);
    let presence = room.on(&b.server).cluster_presence().await.unwrap();
    assert_eq!(presence.len(), 2, "{presence:?}");
    let ada = presence
        .iter()
        .find(|record| record.key == liweb::presence::PresenceKey::user("ada"))
        .unwrap();
    assert!(ada.online);
    assert_eq!(ada.connections, 2, "one user on two nodes is one presence");
    assert_eq!(on_a.cluster_online_count().await.unwrap(), 2);

    bob_b.emit(TestIn::Leave(room.clone())).unwrap();
    assert_eq!(next_event(&mut bob_b).await, TestOut::Left(true));
    assert_eq!(on_a.cluster_size().await.unwrap(), 2);
    let presence = on_a.cluster_presence().await.unwrap();
    let bob = presence
        .iter()
        .find(|record| record.key == liweb::presence::PresenceKey::user("bob"))
        .expect("bob is kept as last seen");
    assert!(!bob.online);
    assert_eq!(on_a.cluster_online_count().await.unwrap(), 1);

    drop(ada_b);
    let on_b = room.on(&b.server);
    let deadline = Instant::now() + WAIT;
    while on_b.cluster_size().await.unwrap() != 1 {
        assert!(Instant::now() < deadline, "the closed connection left");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(ada_a);
    cleanup(&redis_url(), &prefix).await;
}

/// Conformance X3: a node that crashes (its runtime stops without any
/// connection leaving) disappears from presence and room size within the
/// liveness TTL.
#[tokio::test]
#[ignore = "needs Redis: LIWEB_REDIS_URL, run with --ignored"]
async fn x3_a_crashed_nodes_members_vanish_within_the_liveness_ttl() {
    let prefix = prefix("x3-crash");
    let ttl = Duration::from_millis(600);
    let a = node(&prefix).await;
    let room = RoomRef::new("chat", "crash");

    // Node C runs on a runtime of its own, so that it can be stopped dead.
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let url = redis_url();
    let crash_prefix = prefix.clone();
    let crashed = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let running = runtime.block_on(async {
            node_with(&url, config(&crash_prefix).liveness_ttl(ttl))
                .await
                .0
        });
        addr_tx.send(running.url()).unwrap();
        let _ = stop_rx.recv();
        // No graceful anything: every task of the node is dropped.
        runtime.shutdown_background();
        drop(running);
    });
    let c_url = addr_rx.recv_timeout(WAIT).expect("node C started");
    let mut on_c = TestClient::connect(&c_url).await.unwrap();
    join(&mut on_c, &room).await;
    let (mut on_a, _) = a.client().await;
    join(&mut on_a, &room).await;
    let handle = room.on(&a.server);
    assert_eq!(handle.cluster_size().await.unwrap(), 2);

    stop_tx.send(()).unwrap();
    crashed.join().unwrap();
    let stopped = Instant::now();
    let deadline = stopped + ttl + Duration::from_secs(2);
    loop {
        let size = handle.cluster_size().await.unwrap();
        let online = handle.cluster_online_count().await.unwrap();
        if size == 1 && online == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the crashed node's member is still counted: size {size}, online {online}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stopped.elapsed() <= ttl + Duration::from_secs(2));
    drop(on_c);
    cleanup(&redis_url(), &prefix).await;
}

/// A `redis-server` of the test's own, on a free port, stopped when dropped.
struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("`redis-server` is installed (the X4 test starts its own)");
        let redis = Self {
            port,
            child: Some(child),
        };
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Conformance X4.
#[tokio::test]
#[ignore = "needs Redis: LIWEB_REDIS_URL, run with --ignored"]
async fn x4_losing_redis_keeps_local_delivery_reports_errors_and_recovers() {
    let mut redis = OwnRedis::start(OwnRedis::free_port());
    let url = redis.url();
    let prefix = prefix("x4");
    let (a, a_errors) = node_with(&url, config(&prefix)).await;
    let (b, _b_errors) = node_with(&url, config(&prefix)).await;
    let room = RoomRef::new("chat", "faults");
    let (mut sender, _) = a.client().await;
    let (mut local, _) = a.client().await;
    let (mut remote, _) = b.client().await;
    join(&mut sender, &room).await;
    join(&mut local, &room).await;
    join(&mut remote, &room).await;
    assert_eq!(
        room_emit(&mut sender, &room, "before").await,
        message("before")
    );
    assert_eq!(next_event(&mut sender).await, TestOut::Sent(2));
    assert_eq!(next_event(&mut local).await, message("before"));
    assert_eq!(next_event(&mut remote).await, message("before"));

    redis.stop();
    assert_eq!(
        room_emit(&mut sender, &room, "during").await,
        message("during")
    );
    assert_eq!(next_event(&mut sender).await, TestOut::Sent(2));
    assert_eq!(
        next_event(&mut local).await,
        message("during"),
        "local delivery goes on"
    );
    eventually("an error reported", || a_errors.count(), |n| *n > 0).await;
    // A shared-state operation fails with a typed error, not a panic.
    let state = room.on(&a.server).state();
    assert!(matches!(
        state.set("k", &1).await,
        Err(liweb::state::StateError::Backend(_))
    ));

    let mut redis = OwnRedis::start(redis.port);
    // Both nodes reconnect and subscribe again; probe until an emit crosses.
    let crossed = tokio::time::timeout(WAIT, async {
        let mut probe = 0;
        loop {
            probe += 1;
            let text = format!("after-{probe}");
            assert_eq!(room_emit(&mut sender, &room, &text).await, message(&text));
            assert_eq!(next_event(&mut sender).await, TestOut::Sent(2));
            assert_eq!(next_event(&mut local).await, message(&text));
            if let Ok(got) =
                tokio::time::timeout(Duration::from_millis(200), next_event(&mut remote)).await
            {
                return got;
            }
        }
    })
    .await
    .expect("an emit crossed nodes after Redis came back");
    assert!(matches!(crossed, TestOut::RoomMessage(text) if text.starts_with("after-")));
    // The restarted Redis had lost the membership; heartbeats wrote it again.
    let handle = room.on(&a.server);
    let deadline = Instant::now() + WAIT;
    while handle.cluster_size().await.unwrap_or(0) != 3 {
        assert!(Instant::now() < deadline, "membership restored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    state.set("k", &2).await.unwrap();
    redis.stop();
}

/// Conformance X4: Redis unreachable at start is a typed error.
#[tokio::test]
#[ignore = "needs Redis: LIWEB_REDIS_URL, run with --ignored"]
async fn x4_an_unreachable_redis_at_start_is_a_connect_error() {
    let port = OwnRedis::free_port();
    let err = RedisAdapter::connect_with(
        &format!("redis://127.0.0.1:{port}"),
        RedisConfig::new().timeout(Duration::from_millis(500)),
    )
    .await
    .expect_err("nothing listens there");
    assert!(matches!(err, ClusterError::Connect { .. }), "{err:?}");
    assert!(matches!(
        RedisAdapter::connect("not a url").await,
        Err(ClusterError::InvalidUrl(_))
    ));
}

/// A connection is closed through whichever node is asked.
#[tokio::test]
#[ignore = "needs Redis: LIWEB_REDIS_URL, run with --ignored"]
async fn a_connection_on_another_node_can_be_disconnected() {
    let prefix = prefix("disconnect");
    let a = node(&prefix).await;
    let b = node(&prefix).await;
    let (mut client, id) = b.client().await;
    fence(&mut client, "connected").await;
    assert!(!a.server.disconnect(id, CloseCode::Other(4100), "moved"));
    assert_eq!(
        b.recorder.disconnected(id).await,
        liweb::DisconnectReason::ServerClosed(CloseCode::Other(4100))
    );
    cleanup(&redis_url(), &prefix).await;
}

/// Conformance X3: presence events and the joiner's snapshot span nodes.
#[tokio::test]
#[ignore = "needs Redis: LIWEB_REDIS_URL, run with --ignored"]
async fn x3_presence_events_and_snapshots_cross_nodes() {
    let prefix = prefix("x3-events");
    let url = redis_url();
    let start = |prefix: String| {
        let url = url.clone();
        async move {
            let adapter = RedisAdapter::connect_with(&url, config(&prefix))
                .await
                .expect("Redis is reachable");
            Running::start_with(|builder| {
                builder
                    .channel_defaults("live", liweb::RoomDefaults::new().presence_events(true))
                    .adapter(adapter)
            })
            .await
        }
    };
    let a = start(prefix.clone()).await;
    let b = start(prefix.clone()).await;
    let room = json!({"channel": "live", "room": "r"});

    let (mut first, first_id) = a.raw_client().await;
    first.emit("join", room.clone()).await;
    let snapshot = first.next().await;
    assert_eq!(snapshot["event"], "presence:snapshot");
    assert_eq!(snapshot["payload"]["presence"].as_array().unwrap().len(), 1);
    assert_eq!(first.next().await["event"], "join_outcome");

    let (mut second, second_id) = b.raw_client().await;
    second.emit("join", room.clone()).await;
    let snapshot = second.next().await;
    assert_eq!(snapshot["event"], "presence:snapshot");
    let keys: Vec<String> = snapshot["payload"]["presence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|record| record["key"].as_str().unwrap().to_owned())
        .collect();
    assert!(keys.contains(&first_id.to_string()), "{snapshot}");
    assert!(keys.contains(&second_id.to_string()), "{snapshot}");
    assert_eq!(second.next().await["event"], "join_outcome");

    let joined = first.next().await;
    assert_eq!(joined["event"], "presence:join", "{joined}");
    assert_eq!(joined["payload"]["presence"]["key"], second_id.to_string());
    settle().await;
    first.fence("no more").await;
    second.fence("not its own join").await;
    cleanup(&redis_url(), &prefix).await;
}

/// Collects a request's replies until its stream ends (at its timeout, in a
/// cluster), bounded by `WAIT`.
async fn all_replies<R>(replies: liweb::Replies<R>) -> Vec<(ConnId, Result<R, liweb::RequestError>)>
where
    R: serde::de::DeserializeOwned,
{
    use futures_util::StreamExt;
    tokio::time::timeout(WAIT, replies.collect::<Vec<_>>())
        .await
        .expect("the replies stream ends at its timeout")
}

/// Conformance X1 (requests): a server request reaches a connection on
/// another node, and its reply, or its error reply, comes back.
#[tokio::test]
#[ignore = "needs Redis: LIWEB_REDIS_URL, run with --ignored"]
async fn a_server_request_reaches_a_connection_on_another_node_and_its_reply_comes_back() {
    let prefix = prefix("request-to");
    let a = node(&prefix).await;
    let b = node(&prefix).await;
    let (answering, answering_id) = b.client().await;
    answering.on_request::<liweb_tests::test_out::Question, _, _>(|q: String| format!("{q}!"));
    let (mut by_hand, by_hand_id) = b.client().await;

    let replies = a
        .server
        .request_to::<String>(answering_id, TestOut::Question("ready".into()))
        .timeout(Duration::from_secs(2))
        .send()
        .unwrap();
    let started = Instant::now();
    let replies = all_replies(replies).await;
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0].0, answering_id);
    assert_eq!(replies[0].1.as_ref().unwrap(), "ready!");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a request to one connection ends at its reply"
    );

    let replies = a
        .server
        .request_to::<String>(by_hand_id, TestOut::Question("no?".into()))
        .timeout(Duration::from_secs(2))
        .send()
        .unwrap();
    match tokio::time::timeout(WAIT, by_hand.recv()).await.unwrap() {
        Some(liweb::client::Incoming::Request(TestOut::Question(q), responder)) => {
            assert_eq!(q, "no?");
            responder.reply_error("refused").unwrap();
        }
        other => panic!("expected the request on node B, got {other:?}"),
    }
    let replies = all_replies(replies).await;
    match &replies[..] {
        [(id, Err(liweb::RequestError::Rejected(error)))] => {
            assert_eq!(*id, by_hand_id);
            assert_eq!(error.message, "refused");
        }
        other => panic!("expected one error reply, got {other:?}"),
    }
    cleanup(&redis_url(), &prefix).await;
}

/// Conformance X1 (requests): a room request collects the replies of the
/// members on every node, each once.
#[tokio::test]
#[ignore = "needs Redis: LIWEB_REDIS_URL, run with --ignored"]
async fn a_room_request_collects_replies_from_members_on_every_node() {
    let prefix = prefix("room-request");
    let a = node(&prefix).await;
    let b = node(&prefix).await;
    let room = RoomRef::new("chat", "general");
    let mut ids = Vec::new();
    let mut clients = Vec::new();
    for (node, name) in [(&a, "a1"), (&b, "b1"), (&b, "b2")] {
        let (mut client, id) = node.client().await;
        join(&mut client, &room).await;
        let answer = name.to_owned();
        client.on_request::<liweb_tests::test_out::Question, _, _>(move |q: String| {
            format!("{answer}:{q}")
        });
        ids.push((id, name.to_owned()));
        clients.push(client);
    }
    let (outsider, _) = b.client().await;
    outsider.on_request::<liweb_tests::test_out::Question, _, _>(|_: String| "outsider".to_owned());

    let replies = a
        .server
        .channel("chat")
        .room("general")
        .request::<String>(TestOut::Question("vote".into()))
        .timeout(Duration::from_millis(800))
        .send()
        .unwrap();
    let mut got: Vec<(ConnId, String)> = all_replies(replies)
        .await
        .into_iter()
        .map(|(id, reply)| (id, reply.unwrap()))
        .collect();
    got.sort();
    let mut expected: Vec<(ConnId, String)> = ids
        .iter()
        .map(|(id, name)| (*id, format!("{name}:vote")))
        .collect();
    expected.sort();
    assert_eq!(got, expected, "each member once, the outsider not at all");
    cleanup(&redis_url(), &prefix).await;
}

/// What the chatting clients of the Redis restart test sent and received.
#[derive(Debug, Default)]
struct Book {
    /// Per sender: when each of its messages was sent, by sequence number.
    sent: std::collections::HashMap<String, Vec<Instant>>,
    /// Per receiver and sender: the sequence numbers received, in order.
    received: std::collections::HashMap<(String, String), Vec<usize>>,
    /// How many senders have stopped.
    done: usize,
}

/// A client that emits `{name}:{seq}` to `room` every 20 ms until `stop`,
/// and books every room message it receives; after `stop`, it receives
/// until it has every sender's last message (the caller bounds the wait).
async fn chatter(
    name: String,
    mut client: TestClient,
    room: RoomRef,
    book: Arc<Mutex<Book>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> TestClient {
    let mut ticks = tokio::time::interval(Duration::from_millis(20));
    let mut ending = false;
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                let mut book = book.lock().unwrap();
                if ending {
                    if book.done == 4 && book.sent.iter().all(|(sender, sent)| {
                        book.received
                            .get(&(name.clone(), sender.clone()))
                            .and_then(|seqs| seqs.last())
                            == Some(&(sent.len() - 1))
                    }) {
                        return client;
                    }
                    continue;
                }
                let sent = book.sent.entry(name.clone()).or_default();
                let text = format!("{name}:{}", sent.len());
                sent.push(Instant::now());
                client
                    .emit(TestIn::RoomEmit { room: room.clone(), text, target: Target::Everyone })
                    .expect("the client stays connected");
            }
            changed = stop.changed(), if !ending => {
                if changed.is_err() || *stop.borrow() {
                    ending = true;
                    book.lock().unwrap().done += 1;
                }
            }
            item = client.recv() => match item {
                Some(liweb::client::Incoming::Event(TestOut::RoomMessage(text))) => {
                    let (from, seq) = text.rsplit_once(':').expect("`name:seq`");
                    book.lock()
                        .unwrap()
                        .received
                        .entry((name.clone(), from.to_owned()))
                        .or_default()
                        .push(seq.parse().expect("a sequence number"));
                }
                Some(liweb::client::Incoming::Event(TestOut::Sent(_))) => {}
                other => panic!("{name} got {other:?}"),
            },
        }
    }
}

/// Polls `check` every 20 ms until it holds, failing after [`WAIT`].
async fn within_wait(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Membership and presence of `room` as every node sees it: four members
/// online, each with the `typing` activity.
async fn all_four_present(nodes: &[&Running], room: &RoomRef) -> bool {
    for node in nodes {
        let handle = room.on(&node.server);
        if handle.cluster_size().await.ok() != Some(4) {
            return false;
        }
        let Ok(presence) = handle.cluster_presence().await else {
            return false;
        };
        if presence.len() != 4
            || !presence
                .iter()
                .all(|record| record.online && record.activity.as_deref() == Some("typing"))
        {
            return false;
        }
    }
    true
}

/// Conformance X4: Redis is killed and restarted while clients on two
/// nodes chat continuously in one room.
///
/// Asserted: no member loses, duplicates or reorders a message of a sender
/// on its own node, during the outage too; cross-node messages are never
/// duplicated or reordered, and the only ones missing were sent between
/// shortly before the kill and the moment cross-node delivery was seen
/// again in both directions, which happens within [`WAIT`] of the restart;
/// both nodes report errors, and shared state fails with a typed error
/// while Redis is away; after the restart (an empty Redis) membership,
/// presence with its activities, and shared state work again on both
/// nodes. A second, instant restart — quicker than a heartbeat, so no
/// heartbeat fails — restores membership too. No connection is lost and
/// no handler panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Redis: LIWEB_REDIS_URL, run with --ignored"]
async fn x4_redis_restarted_under_load_loses_no_local_message_and_recovers() {
    let mut redis = OwnRedis::start(OwnRedis::free_port());
    let url = redis.url();
    let prefix = prefix("x4-restart");
    let (a, a_errors) = node_with(&url, config(&prefix)).await;
    let (b, b_errors) = node_with(&url, config(&prefix)).await;
    let room = RoomRef::new("chat", "restart");
    let mut chatters = Vec::new();
    for (node, name) in [(&a, "a1"), (&a, "a2"), (&b, "b1"), (&b, "b2")] {
        let (mut client, _) = node.client().await;
        join(&mut client, &room).await;
        client
            .emit(TestIn::SetActivity {
                room: room.clone(),
                activity: Some("typing".to_owned()),
            })
            .unwrap();
        assert_eq!(next_event(&mut client).await, TestOut::ActivitySet(true));
        chatters.push((name.to_owned(), client));
    }
    within_wait("the four members and their presence", async || {
        all_four_present(&[&a, &b], &room).await
    })
    .await;

    let book = Arc::new(Mutex::new(Book::default()));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut running = tokio::task::JoinSet::new();
    for (name, client) in chatters {
        running.spawn(chatter(
            name,
            client,
            room.clone(),
            book.clone(),
            stopped.clone(),
        ));
    }
    let cross = |book: &Book, receiver: &str, sender: &str, since: Instant| {
        let Some(sent) = book.sent.get(sender) else {
            return false;
        };
        book.received
            .get(&(receiver.to_owned(), sender.to_owned()))
            .is_some_and(|seqs| seqs.iter().any(|&seq| sent[seq] >= since))
    };
    let pairs = [("a1", "b1"), ("a2", "b2"), ("b1", "a1"), ("b2", "a2")];
    let started = Instant::now();
    within_wait("cross-node delivery before the outage", async || {
        let book = book.lock().unwrap();
        pairs.iter().all(|(r, s)| cross(&book, r, s, started))
    })
    .await;

    // The outage: longer than a heartbeat interval (a third of the 2 s
    // liveness TTL), with every client chatting through it.
    let killed = Instant::now();
    redis.stop();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    within_wait("errors reported on both nodes", async || {
        a_errors.count() > 0 && b_errors.count() > 0
    })
    .await;
    assert!(matches!(
        room.on(&a.server).state().set("k", &1).await,
        Err(liweb::state::StateError::Backend(_))
    ));
    let errors_during = (a_errors.count(), b_errors.count());

    let mut redis = OwnRedis::start(redis.port);
    let restarted = Instant::now();
    within_wait("cross-node delivery in both directions again", async || {
        let book = book.lock().unwrap();
        pairs.iter().all(|(r, s)| cross(&book, r, s, restarted))
    })
    .await;
    let recovered = Instant::now();
    // More traffic after the recovery, all of which must cross.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.send(true).unwrap();
    // Each chatter ends once it has every sender's last message: cross-node
    // messages sent after the recovery all arrive.
    let mut clients = Vec::new();
    while let Some(done) = tokio::time::timeout(WAIT, running.join_next())
        .await
        .expect("every member gets every sender's last message")
    {
        clients.push(done.expect("a chatter failed"));
    }
    {
        let book = book.lock().unwrap();
        let node_of = |name: &str| name.as_bytes()[0];
        let mut lost_cross = 0;
        for (sender, sent) in &book.sent {
            for receiver in ["a1", "a2", "b1", "b2"] {
                let seqs = &book.received[&(receiver.to_owned(), sender.clone())];
                assert!(
                    seqs.windows(2).all(|pair| pair[0] < pair[1]),
                    "{receiver} got {sender}'s messages twice or out of order: {seqs:?}"
                );
                if node_of(receiver) == node_of(sender) {
                    assert_eq!(
                        *seqs,
                        (0..sent.len()).collect::<Vec<_>>(),
                        "{receiver} lost messages of {sender} on its own node"
                    );
                } else {
                    let got: std::collections::HashSet<usize> = seqs.iter().copied().collect();
                    for (seq, at) in sent.iter().enumerate() {
                        if !got.contains(&seq) {
                            lost_cross += 1;
                            assert!(
                                *at + Duration::from_millis(500) >= killed && *at <= recovered,
                                "{receiver} lost {sender}:{seq}, sent {:?} after the kill, outside the outage",
                                at.checked_duration_since(killed),
                            );
                        }
                    }
                }
            }
        }
        let sent_total: usize = book.sent.values().map(Vec::len).sum();
        eprintln!(
            "x4 restart: {sent_total} messages sent; {lost_cross} cross-node deliveries lost; cross-node delivery back {:?} after the restart (outage {:?}); errors reported during the outage: {errors_during:?}",
            recovered - restarted,
            restarted - killed,
        );
    }

    // An empty Redis: membership and presence are written again.
    within_wait("membership and presence restored", async || {
        all_four_present(&[&a, &b], &room).await
    })
    .await;
    let on_a = room.on(&a.server).state();
    let on_b = room.on(&b.server).state();
    on_a.set("k", &2).await.unwrap();
    assert_eq!(on_b.get::<i64>("k").await.unwrap(), Some(2));
    on_a.increment("n", 1).await.unwrap();
    on_b.increment("n", 1).await.unwrap();
    assert_eq!(on_a.get::<i64>("n").await.unwrap(), Some(2));

    // An instant restart: no heartbeat fails, but Redis is empty again.
    redis.stop();
    let redis = OwnRedis::start(redis.port);
    within_wait(
        "membership and presence restored after an instant restart",
        async || all_four_present(&[&a, &b], &room).await,
    )
    .await;
    let [a1, _a2, b1, _b2] = &mut clients[..] else {
        panic!("four clients")
    };
    let crossed = tokio::time::timeout(WAIT, async {
        for probe in 0.. {
            let text = format!("probe:{probe}");
            assert_eq!(room_emit(a1, &room, &text).await, message(&text));
            assert!(matches!(next_event(a1).await, TestOut::Sent(_)));
            if let Ok(got) = tokio::time::timeout(Duration::from_millis(200), next_event(b1)).await
            {
                return got;
            }
        }
        unreachable!()
    })
    .await
    .expect("an emit crossed nodes after the instant restart");
    assert!(matches!(crossed, TestOut::RoomMessage(text) if text.starts_with("probe:")));

    for node in [&a, &b] {
        assert_eq!(node.server.connection_count(), 2, "no connection was lost");
        assert!(
            node.recorder
                .matching(|record| matches!(record, liweb_tests::Record::Error { .. }))
                .is_empty(),
            "no handler failed"
        );
    }
    drop(redis);
}
