//! `modify` and `try_modify` (conformance S9): a function applied to a
//! key's current value as one atomic step.

use std::{collections::HashMap, sync::Arc};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Minimal, TIMEOUT, lobby, patches, recorded_state, rooms, set};
use crate::state::{MemoryStore, ModifyError, StateError, StateStore};

/// Conformance S9.
#[tokio::test]
async fn s9_modify_returns_the_new_value_and_sends_it_as_a_patch() {
    let store = Arc::new(MemoryStore::new());
    let (state, recorded) = recorded_state(&store, lobby());

    let mut seen = Vec::new();
    let first = state
        .modify("count", |current: Option<u32>| {
            seen.push(current);
            current.unwrap_or(10) + 1
        })
        .await;
    assert_eq!(first, Ok(11));
    let second = state
        .modify("count", |current: Option<u32>| {
            seen.push(current);
            current.unwrap_or(10) * 2
        })
        .await;
    assert_eq!(second, Ok(22));
    assert_eq!(seen, [None, Some(11)]);
    assert_eq!(state.get::<u32>("count").await, Ok(Some(22)));
    assert_eq!(
        patches(&recorded),
        [set("count", json!(11)), set("count", json!(22))]
    );
}

/// Conformance S9.
#[tokio::test]
async fn s9_a_refused_try_modify_changes_nothing_and_sends_no_patch() {
    #[derive(Debug, PartialEq)]
    struct TooMany(u32);

    let store = Arc::new(MemoryStore::new());
    let (state, recorded) = recorded_state(&store, lobby());
    let take = |seats: Option<u32>| match seats.unwrap_or(0) {
        taken @ 2.. => Err(TooMany(taken)),
        taken => Ok(taken + 1),
    };

    // Refused on a key that is not set: nothing is created, not even the room.
    let refused = state
        .try_modify("other", |_: Option<u32>| Err(TooMany(0)))
        .await;
    assert_eq!(refused, Err(ModifyError::Refused(TooMany(0))));
    assert_eq!(state.has("other").await, Ok(false));
    assert_eq!(rooms(&store), 0);

    assert_eq!(state.try_modify("seats", take).await, Ok(1));
    assert_eq!(state.try_modify("seats", take).await, Ok(2));
    assert_eq!(
        state.try_modify("seats", take).await,
        Err(ModifyError::Refused(TooMany(2)))
    );
    assert_eq!(state.get::<u32>("seats").await, Ok(Some(2)));
    assert_eq!(
        patches(&recorded),
        [set("seats", json!(1)), set("seats", json!(2))]
    );
}

/// Conformance S9.
#[tokio::test]
async fn s9_modify_of_a_value_of_another_type_is_a_decode_error_and_changes_nothing() {
    let store = Arc::new(MemoryStore::new());
    let (state, recorded) = recorded_state(&store, lobby());
    state.set("topic", "rust").await.unwrap();

    let mut called = false;
    let err = state
        .modify("topic", |n: Option<u32>| {
            called = true;
            n.unwrap_or(0)
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StateError::Decode { key, .. } if key == "topic"),
        "{err:?}"
    );
    assert!(!called, "the function ran on a value that is not its type");

    // JSON object keys must be strings, so this value does not serialize.
    let err = state
        .modify("bad", |_: Option<HashMap<(u8, u8), u8>>| {
            HashMap::from([((1, 2), 3)])
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StateError::Encode { key, .. } if key == "bad"),
        "{err:?}"
    );
    assert_eq!(state.has("bad").await, Ok(false));

    assert_eq!(
        state.get::<String>("topic").await,
        Ok(Some("rust".to_owned()))
    );
    assert_eq!(patches(&recorded), [set("topic", json!("rust"))]);
}

/// Conformance S9.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn s9_concurrent_modifies_lose_no_update() {
    const TASKS: u64 = 100;
    const EACH: u64 = 20;
    const KEPT: usize = 10;

    #[derive(Debug, Default, Serialize, Deserialize)]
    struct Log {
        count: u64,
        recent: Vec<u64>,
    }

    let store = Arc::new(MemoryStore::new());
    let (state, recorded) = recorded_state(&store, lobby());
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let state = state.clone();
            tokio::spawn(async move {
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
                        .await?;
                    // Yield between changes so the tasks interleave.
                    tokio::task::yield_now().await;
                    counts.push(log.count);
                }
                Ok::<_, StateError>(counts)
            })
        })
        .collect();
    let mut counts = Vec::new();
    tokio::time::timeout(TIMEOUT, async {
        for task in tasks {
            counts.extend(task.await.unwrap().unwrap());
        }
    })
    .await
    .unwrap();

    // Each call saw the one before it: the counts it returned are 1..=N,
    // each once.
    counts.sort_unstable();
    counts.dedup();
    assert_eq!(counts.len() as u64, TASKS * EACH, "two calls saw one value");
    assert_eq!(
        (counts.first(), counts.last()),
        (Some(&1), Some(&(TASKS * EACH)))
    );
    let log: Log = state.get("log").await.unwrap().unwrap();
    assert_eq!(log.count, TASKS * EACH);
    assert_eq!(log.recent.len(), KEPT);
    assert_eq!(patches(&recorded).len() as u64, TASKS * EACH);
}

/// Conformance S9.
#[test]
fn s9_default_modify_is_a_backend_error_and_changes_nothing() {
    let store = Minimal(MemoryStore::new());
    let room = lobby();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut called = false;
    let mut modify = |_: Option<&Value>| {
        called = true;
        Ok(json!(1))
    };
    let failed = runtime.block_on(store.modify(&room, "n", &mut modify));
    assert!(matches!(failed, Err(StateError::Backend(_))), "{failed:?}");
    let why = failed
        .as_ref()
        .err()
        .and_then(std::error::Error::source)
        .map(ToString::to_string);
    assert_eq!(why.as_deref(), Some("this store cannot modify `n`"));
    assert!(!called);
    assert_eq!(runtime.block_on(store.get(&room, "n")), Ok(None));
}
