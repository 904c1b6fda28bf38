//! The state operations, through the memory store and `RoomState`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use serde::Deserialize;
use serde_json::{Map, Number, Value, json};

use super::{patch::*, *};

mod modify;

/// Every test wait is bounded, so a lost wake-up fails instead of hanging.
const TIMEOUT: Duration = Duration::from_secs(30);

type Recorded = Arc<Mutex<Vec<(RoomKey, StatePatch)>>>;

fn lobby() -> RoomKey {
    RoomKey::new("chat", "lobby")
}

fn state(store: &Arc<MemoryStore>, room: RoomKey) -> RoomState {
    RoomState::new(Arc::clone(store) as Arc<dyn StateStore>, room, None)
}

fn recorded_state(store: &Arc<MemoryStore>, room: RoomKey) -> (RoomState, Recorded) {
    let recorded = Recorded::default();
    let sink = Arc::clone(&recorded);
    let listener: ChangeListener = Arc::new(move |room: &RoomKey, patch: &StatePatch| {
        sink.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((room.clone(), patch.clone()));
    });
    let state = RoomState::new(
        Arc::clone(store) as Arc<dyn StateStore>,
        room,
        Some(listener),
    );
    (state, recorded)
}

fn patches(recorded: &Recorded) -> Vec<StatePatch> {
    recorded
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|(_, patch)| patch.clone())
        .collect()
}

fn set(key: &str, value: Value) -> StatePatch {
    set_patch(key, value)
}

fn rooms(store: &MemoryStore) -> usize {
    store.room_count()
}

/// Conformance S1.
#[tokio::test]
async fn s1_set_get_has_delete_clear_snapshot_behave_as_a_map() {
    let store = Arc::new(MemoryStore::new());
    let state = state(&store, lobby());

    assert_eq!(state.get::<String>("topic").await, Ok(None));
    assert_eq!(state.has("topic").await, Ok(false));
    assert_eq!(state.snapshot().await, Ok(Map::new()));
    assert_eq!(rooms(&store), 0, "reads must not create the room");

    state.set("topic", "rust").await.unwrap();
    state.set("count", &3).await.unwrap();
    assert_eq!(
        state.get::<String>("topic").await,
        Ok(Some("rust".to_owned()))
    );
    assert_eq!(state.get::<u32>("count").await, Ok(Some(3)));
    assert_eq!(state.has("topic").await, Ok(true));

    state.set("topic", "serde").await.unwrap();
    assert_eq!(
        state.get::<String>("topic").await,
        Ok(Some("serde".to_owned()))
    );

    let expected = json!({"topic": "serde", "count": 3});
    assert_eq!(state.snapshot().await.map(Value::Object), Ok(expected));

    assert_eq!(state.delete("topic").await, Ok(true));
    assert_eq!(state.delete("topic").await, Ok(false));
    assert_eq!(state.has("topic").await, Ok(false));
    assert_eq!(state.get::<Value>("topic").await, Ok(None));

    state.clear().await.unwrap();
    assert_eq!(state.snapshot().await, Ok(Map::new()));
    assert_eq!(rooms(&store), 0, "an emptied room is forgotten");

    state.set("again", &true).await.unwrap();
    assert_eq!(state.get::<bool>("again").await, Ok(Some(true)));
}

/// Conformance S2.
#[tokio::test]
async fn s2_update_of_missing_key_is_key_missing_and_changes_nothing() {
    let store = Arc::new(MemoryStore::new());
    let (state, recorded) = recorded_state(&store, lobby());

    let missing = Err(StateError::KeyMissing {
        key: "topic".into(),
    });
    assert_eq!(state.update("topic", "rust").await, missing);
    assert_eq!(state.has("topic").await, Ok(false));
    assert_eq!(rooms(&store), 0, "a failed update must not create the room");

    state.set("other", &1).await.unwrap();
    assert_eq!(state.update("topic", "rust").await, missing);
    assert_eq!(
        state.snapshot().await.map(Value::Object),
        Ok(json!({"other": 1}))
    );

    state.update("other", &2).await.unwrap();
    assert_eq!(state.get::<u32>("other").await, Ok(Some(2)));
    assert_eq!(
        patches(&recorded),
        [set("other", json!(1)), set("other", json!(2))]
    );
}

/// Conformance S3.
#[tokio::test]
async fn s3_push_creates_the_array_and_rejects_non_arrays() {
    let store = Arc::new(MemoryStore::new());
    let state = state(&store, lobby());

    state.push("log", "a").await.unwrap();
    assert_eq!(
        state.get::<Vec<String>>("log").await,
        Ok(Some(vec!["a".to_owned()]))
    );
    state.push("log", "b").await.unwrap();
    assert_eq!(state.get::<Value>("log").await, Ok(Some(json!(["a", "b"]))));

    state.set("name", "x").await.unwrap();
    let not_array = Err(StateError::NotAnArray { key: "name".into() });
    assert_eq!(state.push("name", "y").await, not_array);
    assert_eq!(state.get::<Value>("name").await, Ok(Some(json!("x"))));
}

/// Conformance S4.
#[tokio::test]
async fn s4_remove_on_missing_key_is_a_no_op_and_rejects_non_arrays() {
    let store = Arc::new(MemoryStore::new());
    let (state, recorded) = recorded_state(&store, lobby());

    assert_eq!(state.remove("log", |_| true).await, Ok(0));
    assert_eq!(state.has("log").await, Ok(false));
    assert_eq!(rooms(&store), 0, "a no-op remove must not create the room");

    state.set("count", &5).await.unwrap();
    let not_array = Err(StateError::NotAnArray {
        key: "count".into(),
    });
    assert_eq!(state.remove("count", |_| true).await, not_array);
    assert_eq!(state.get::<u32>("count").await, Ok(Some(5)));

    for n in [1, 2, 3, 4] {
        state.push("log", &n).await.unwrap();
    }
    assert_eq!(state.remove("log", |item| item == &json!(9)).await, Ok(0));
    let even = |item: &Value| item.as_u64().is_some_and(|n| n % 2 == 0);
    assert_eq!(state.remove("log", even).await, Ok(2));
    assert_eq!(state.get::<Value>("log").await, Ok(Some(json!([1, 3]))));

    let sent = patches(&recorded);
    assert_eq!(
        sent.len(),
        6,
        "set, four pushes and one effective remove: {sent:?}"
    );
    assert_eq!(sent.last(), Some(&set("log", json!([1, 3]))));
}

/// Conformance S4.
#[tokio::test]
async fn s4_remove_where_keeps_items_of_another_type() {
    #[derive(Deserialize)]
    struct Card {
        id: u32,
    }

    let store = Arc::new(MemoryStore::new());
    let state = state(&store, lobby());
    for item in [
        json!({"id": 1}),
        json!("note"),
        json!({"id": 2}),
        json!({"id": "1"}),
    ] {
        state.push("cards", &item).await.unwrap();
    }
    assert_eq!(
        state
            .remove_where("cards", |card: &Card| card.id == 1)
            .await,
        Ok(1)
    );
    let left = json!(["note", {"id": 2}, {"id": "1"}]);
    assert_eq!(state.get::<Value>("cards").await, Ok(Some(left)));
}

/// Conformance S4.
#[test]
fn s4_remove_with_a_panicking_predicate_changes_nothing() {
    let store = MemoryStore::new();
    let room = lobby();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime
        .block_on(store.set(&room, "log", json!([1, 2, 3])))
        .unwrap();

    let panicking = |item: &Value| item == &json!(3) && panic!("predicate failed");
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(store.remove(&room, "log", &panicking))
    }));
    assert!(outcome.is_err());

    // The poisoned room lock is recovered and the array is whole.
    let after = runtime.block_on(store.get(&room, "log"));
    assert_eq!(after, Ok(Some(json!([1, 2, 3]))));
}

/// Conformance S5.
#[tokio::test]
async fn s5_increment_and_decrement_start_from_zero() {
    let store = Arc::new(MemoryStore::new());
    let state = state(&store, lobby());

    assert_eq!(state.increment("visits", 2).await, Ok(2.into()));
    assert_eq!(state.increment("visits", 3).await, Ok(5.into()));
    assert_eq!(state.decrement("visits", 7).await, Ok((-2).into()));
    assert_eq!(state.decrement("debt", 4).await, Ok((-4).into()));
    assert_eq!(state.get::<i64>("visits").await, Ok(Some(-2)));
}

/// Conformance S5.
#[tokio::test]
async fn s5_increment_of_a_non_number_is_not_a_number_and_changes_nothing() {
    let store = Arc::new(MemoryStore::new());
    let (state, recorded) = recorded_state(&store, lobby());
    state.set("name", "x").await.unwrap();

    let not_number = Err(StateError::NotANumber { key: "name".into() });
    assert_eq!(state.increment("name", 1).await, not_number);
    assert_eq!(state.decrement("name", 1).await, not_number);
    assert_eq!(state.get::<Value>("name").await, Ok(Some(json!("x"))));
    assert_eq!(patches(&recorded).len(), 1);
}

/// Conformance S5.
#[tokio::test]
async fn s5_integers_stay_integers_and_floats_stay_floats() {
    let store = Arc::new(MemoryStore::new());
    let state = state(&store, lobby());

    state.set("int", &10).await.unwrap();
    let sum = state.increment("int", 5).await.unwrap();
    assert!(sum.is_i64());
    assert_eq!(sum, 15.into());

    state.set("float", &1.5).await.unwrap();
    let sum = state.increment("float", 2).await.unwrap();
    assert!(sum.is_f64());
    assert_eq!(sum.as_f64(), Some(3.5));

    // A float that happens to be whole is still a float.
    state.set("whole", &2.0).await.unwrap();
    let sum = state.decrement("whole", 1).await.unwrap();
    assert!(sum.is_f64());
    assert_eq!(sum.as_f64(), Some(1.0));
}

/// Conformance S5.
#[tokio::test]
async fn s5_overflow_falls_back_to_f64() {
    let store = Arc::new(MemoryStore::new());
    let state = state(&store, lobby());

    // Past `i64::MAX` the sum is still an exact JSON integer, as a u64.
    state.set("big", &i64::MAX).await.unwrap();
    assert_eq!(
        state.increment("big", 1).await,
        Ok((i64::MAX as u64 + 1).into())
    );

    state.set("huge", &u64::MAX).await.unwrap();
    let sum = state.increment("huge", 1).await.unwrap();
    assert!(sum.is_f64());
    assert_eq!(sum.as_f64(), Some(u64::MAX as f64 + 1.0));

    state.set("low", &i64::MIN).await.unwrap();
    let sum = state.decrement("low", 1).await.unwrap();
    assert!(sum.is_f64());
    assert_eq!(sum.as_f64(), Some(i64::MIN as f64 - 1.0));

    // Subtracting `i64::MIN` adds 2^63, which has no i64 negation.
    assert_eq!(
        state.decrement("zero", i64::MIN).await,
        Ok((1u64 << 63).into())
    );
    assert_eq!(state.get::<u64>("zero").await, Ok(Some(1 << 63)));
}

/// A store that only implements the required methods, by delegation.
struct Minimal(MemoryStore);

impl StateStore for Minimal {
    fn get<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, StateError>> {
        self.0.get(room, key)
    }
    fn has<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        self.0.has(room, key)
    }
    fn snapshot<'a>(
        &'a self,
        room: &'a RoomKey,
    ) -> BoxFuture<'a, Result<Map<String, Value>, StateError>> {
        self.0.snapshot(room)
    }
    fn set<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
        value: Value,
    ) -> BoxFuture<'a, Result<StatePatch, StateError>> {
        self.0.set(room, key, value)
    }
    fn update<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
        value: Value,
    ) -> BoxFuture<'a, Result<StatePatch, StateError>> {
        self.0.update(room, key, value)
    }
    fn patch<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
        fields: Map<String, Value>,
    ) -> BoxFuture<'a, Result<StatePatch, StateError>> {
        self.0.patch(room, key, fields)
    }
    fn push<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
        item: Value,
    ) -> BoxFuture<'a, Result<StatePatch, StateError>> {
        self.0.push(room, key, item)
    }
    fn remove<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
        predicate: &'a (dyn Fn(&Value) -> bool + Send + Sync),
    ) -> BoxFuture<'a, Result<(usize, Option<StatePatch>), StateError>> {
        self.0.remove(room, key, predicate)
    }
    fn increment<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
        by: i64,
    ) -> BoxFuture<'a, Result<(Number, StatePatch), StateError>> {
        self.0.increment(room, key, by)
    }
    fn delete<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<StatePatch>, StateError>> {
        self.0.delete(room, key)
    }
    fn clear<'a>(&'a self, room: &'a RoomKey) -> BoxFuture<'a, Result<StatePatch, StateError>> {
        self.0.clear(room)
    }
    fn drop_room<'a>(&'a self, room: &'a RoomKey) -> BoxFuture<'a, Result<(), StateError>> {
        self.0.drop_room(room)
    }
}

/// Conformance S5.
#[test]
fn s5_default_decrement_reports_what_it_cannot_negate() {
    let store = Minimal(MemoryStore::new());
    let room = lobby();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (number, _) = runtime.block_on(store.decrement(&room, "n", 3)).unwrap();
    assert_eq!(number, (-3).into());
    let failed = runtime.block_on(store.decrement(&room, "n", i64::MIN));
    assert!(matches!(failed, Err(StateError::Backend(_))), "{failed:?}");
    let why = failed
        .as_ref()
        .err()
        .and_then(std::error::Error::source)
        .map(ToString::to_string);
    assert_eq!(
        why.as_deref(),
        Some("this store cannot decrement `n` by -9223372036854775808")
    );
    assert_eq!(runtime.block_on(store.get(&room, "n")), Ok(Some(json!(-3))));
}

#[test]
fn backend_errors_carry_their_cause_as_source_not_in_their_message() {
    use std::error::Error as _;

    let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused by peer");
    let err = StateError::backend(refused);
    assert_eq!(err.to_string(), "the state store failed");
    let source = err.source().expect("a backend error has a source");
    let io = source
        .downcast_ref::<std::io::Error>()
        .expect("the source is the underlying error itself");
    assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
    crate::error::assert_source_not_repeated(&err);

    // A clone shares the source; sources that read differently differ.
    let copy = err.clone();
    assert!(copy.source().is_some_and(|s| s.is::<std::io::Error>()));
    assert_eq!(copy, err);
    assert_ne!(err, StateError::backend("refused by someone else"));
    assert_ne!(err, StateError::KeyMissing { key: "k".into() });

    let described = StateError::backend("gave up");
    let why = described.source().map(ToString::to_string);
    assert_eq!(why.as_deref(), Some("gave up"));
    assert_eq!(described, StateError::backend("gave up".to_owned()));
}

/// Conformance S6.
#[tokio::test]
async fn s6_patch_creates_the_object_and_merges_shallowly() {
    let store = Arc::new(MemoryStore::new());
    let state = state(&store, lobby());

    state
        .patch("settings", &json!({"theme": "dark", "nested": {"a": 1}}))
        .await
        .unwrap();
    let created = json!({"theme": "dark", "nested": {"a": 1}});
    assert_eq!(state.get::<Value>("settings").await, Ok(Some(created)));

    state
        .patch("settings", &json!({"lang": "fr", "nested": {"b": 2}}))
        .await
        .unwrap();
    let merged = json!({"theme": "dark", "lang": "fr", "nested": {"b": 2}});
    assert_eq!(state.get::<Value>("settings").await, Ok(Some(merged)));
}

/// Conformance S6.
#[tokio::test]
async fn s6_patch_rejects_non_objects_and_changes_nothing() {
    let store = Arc::new(MemoryStore::new());
    let (state, recorded) = recorded_state(&store, lobby());
    let not_object = |key: &str| Err(StateError::NotAnObject { key: key.into() });

    state.set("list", &[1, 2]).await.unwrap();
    assert_eq!(
        state.patch("list", &json!({"a": 1})).await,
        not_object("list")
    );
    assert_eq!(state.get::<Value>("list").await, Ok(Some(json!([1, 2]))));

    state.set("settings", &json!({"a": 1})).await.unwrap();
    assert_eq!(
        state.patch("settings", &[1, 2]).await,
        not_object("settings")
    );
    assert_eq!(
        state.patch("settings", "text").await,
        not_object("settings")
    );
    assert_eq!(
        state.get::<Value>("settings").await,
        Ok(Some(json!({"a": 1})))
    );

    assert_eq!(state.patch("fresh", &5).await, not_object("fresh"));
    assert_eq!(state.has("fresh").await, Ok(false));
    assert_eq!(patches(&recorded).len(), 2);
}

/// Conformance S7.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn s7_concurrent_increments_lose_no_update() {
    const TASKS: i64 = 64;
    const EACH: i64 = 500;

    let store = Arc::new(MemoryStore::new());
    let (state, recorded) = recorded_state(&store, lobby());
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let state = state.clone();
            tokio::spawn(async move {
                for _ in 0..EACH {
                    state.increment("hits", 1).await?;
                }
                Ok::<_, StateError>(())
            })
        })
        .collect();
    tokio::time::timeout(TIMEOUT, async {
        for task in tasks {
            task.await.unwrap().unwrap();
        }
    })
    .await
    .unwrap();

    assert_eq!(state.get::<i64>("hits").await, Ok(Some(TASKS * EACH)));
    assert_eq!(patches(&recorded).len() as i64, TASKS * EACH);
}

/// Conformance S7.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn s7_concurrent_pushes_lose_no_update() {
    const TASKS: u64 = 32;
    const EACH: u64 = 200;

    let store = Arc::new(MemoryStore::new());
    let state = state(&store, lobby());
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let state = state.clone();
            tokio::spawn(async move {
                for n in 0..EACH {
                    state.push("log", &(task * EACH + n)).await?;
                }
                Ok::<_, StateError>(())
            })
        })
        .collect();
    tokio::time::timeout(TIMEOUT, async {
        for task in tasks {
            task.await.unwrap().unwrap();
        }
    })
    .await
    .unwrap();

    let mut log: Vec<u64> = state.get("log").await.unwrap().unwrap_or_default();
    log.sort_unstable();
    assert_eq!(log, (0..TASKS * EACH).collect::<Vec<_>>());
}

/// Conformance S7.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn s7_emptying_and_refilling_a_room_concurrently_loses_no_update() {
    // A delete that empties the room unlinks its map while other tasks
    // are about to write to it; every write must land where reads see it.
    const TASKS: u64 = 8;
    const EACH: u64 = 2000;

    let store = Arc::new(MemoryStore::new());
    let state = state(&store, lobby());
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let state = state.clone();
            tokio::spawn(async move {
                let key = format!("scratch-{task}");
                for n in 0..EACH {
                    state.set(&key, &n).await?;
                    let read = state.get::<u64>(&key).await?;
                    let deleted = state.delete(&key).await?;
                    if read != Some(n) || !deleted {
                        return Ok(Some(format!("{key}: wrote {n}, read {read:?}")));
                    }
                }
                Ok::<_, StateError>(None)
            })
        })
        .collect();
    tokio::time::timeout(TIMEOUT, async {
        for task in tasks {
            assert_eq!(task.await.unwrap(), Ok(None));
        }
    })
    .await
    .unwrap();

    assert_eq!(state.snapshot().await, Ok(Map::new()));
    assert_eq!(rooms(&store), 0);
}

#[tokio::test]
async fn on_change_receives_exactly_the_successful_patches_in_order() {
    let store = Arc::new(MemoryStore::new());
    let (state, recorded) = recorded_state(&store, lobby());

    state.set("a", &1).await.unwrap();
    state.update("missing", &1).await.unwrap_err();
    state.push("list", &1).await.unwrap();
    state.push("a", &2).await.unwrap_err();
    assert_eq!(state.remove("list", |_| false).await, Ok(0));
    assert_eq!(state.remove("list", |_| true).await, Ok(1));
    state.increment("n", 2).await.unwrap();
    state.increment("list", 2).await.unwrap_err();
    state.patch("obj", &json!({"x": 1})).await.unwrap();
    assert_eq!(state.delete("a").await, Ok(true));
    assert_eq!(state.delete("a").await, Ok(false));
    state.clear().await.unwrap();

    assert_eq!(
        patches(&recorded),
        [
            set("a", json!(1)),
            set("list", json!([1])),
            set("list", json!([])),
            set("n", json!(2)),
            set("obj", json!({"x": 1})),
            StatePatch::Delete { key: "a".into() },
            StatePatch::Clear,
        ]
    );
    let all_lobby = recorded
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .all(|(room, _)| room == &lobby());
    assert!(all_lobby);
}

#[tokio::test]
async fn rooms_are_independent() {
    let store = Arc::new(MemoryStore::new());
    let lobby = state(&store, lobby());
    let other_room = state(&store, RoomKey::new("chat", "other"));
    let other_channel = state(&store, RoomKey::new("game", "lobby"));

    lobby.set("topic", "rust").await.unwrap();
    other_room.set("topic", "go").await.unwrap();
    assert_eq!(other_channel.get::<String>("topic").await, Ok(None));
    assert_eq!(
        lobby.get::<String>("topic").await,
        Ok(Some("rust".to_owned()))
    );

    other_room.clear().await.unwrap();
    assert_eq!(
        lobby.get::<String>("topic").await,
        Ok(Some("rust".to_owned()))
    );

    store.drop_room(lobby.room()).await.unwrap();
    assert_eq!(lobby.snapshot().await, Ok(Map::new()));
    assert_eq!(rooms(&store), 0);
}

#[tokio::test]
async fn get_of_the_wrong_type_is_a_decode_error_naming_the_key() {
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct User {
        name: String,
    }

    let store = Arc::new(MemoryStore::new());
    let state = state(&store, lobby());
    state.set("topic", "rust").await.unwrap();
    state.set("user", &json!({"name": 5})).await.unwrap();

    let err = state.get::<u32>("topic").await.unwrap_err();
    assert!(
        matches!(&err, StateError::Decode { key, .. } if key == "topic"),
        "{err:?}"
    );

    let err = state.get::<User>("user").await.unwrap_err();
    let StateError::Decode { key, message } = &err else {
        panic!("expected a decode error, got {err:?}");
    };
    assert_eq!(key, "user");
    assert!(message.starts_with("name: "), "{message}");
    assert!(err.to_string().contains("`user`"), "{err}");
}

#[tokio::test]
async fn values_that_do_not_serialize_are_encode_errors() {
    let store = Arc::new(MemoryStore::new());
    let state = state(&store, lobby());
    // JSON object keys must be strings.
    let bad = HashMap::from([((1, 2), "x")]);
    let err = state.set("bad", &bad).await.unwrap_err();
    assert!(
        matches!(&err, StateError::Encode { key, .. } if key == "bad"),
        "{err:?}"
    );
    assert_eq!(state.has("bad").await, Ok(false));
}

#[test]
fn patches_use_the_tagged_wire_format() {
    let delete = StatePatch::Delete { key: "k".into() };
    assert_eq!(
        serde_json::to_value(&delete).unwrap(),
        json!({"op": "delete", "key": "k"})
    );
    let set = set("k", json!([1]));
    let wire = json!({"op": "set", "key": "k", "value": [1]});
    assert_eq!(serde_json::to_value(&set).unwrap(), wire);
    assert_eq!(serde_json::from_value::<StatePatch>(wire).unwrap(), set);
    assert_eq!(set.key(), Some("k"));
    assert_eq!(StatePatch::Clear.key(), None);
}

#[test]
fn room_state_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let store = Arc::new(MemoryStore::new());
    let state = state(&store, lobby());
    // `Cell` is not `Sync`; serializing eagerly keeps it out of the future.
    let value = std::cell::Cell::new(1);
    assert_send(&state.set("k", &value));
    assert_send(&state.get::<u32>("k"));
    assert_send(&state.remove_where("k", |n: &u32| *n == 1));
}
