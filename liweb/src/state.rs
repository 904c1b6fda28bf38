//! Room state: a JSON map per room, changed by atomic operations.
//!
//! Each room (a [`RoomKey`]: channel and room name) owns a map from string
//! keys to JSON values. Applications work through [`RoomState`], a typed
//! handle on one room; the map itself lives in a [`StateStore`], which is
//! [`MemoryStore`] in one process and can be a shared store (Redis) when
//! several processes serve the same rooms.
//!
//! Every operation is atomic: concurrent operations on one room never lose an
//! update, and an operation that fails (with a [`StateError`]) changes
//! nothing. Every successful change yields a [`StatePatch`] carrying the
//! changed key's value after the change, which is what members of a synced
//! room receive.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//!
//! use liweb::state::{MemoryStore, RoomKey, RoomState, StateError, StatePatch};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = tokio::runtime::Builder::new_current_thread().build()?;
//! runtime.block_on(async {
//!     let sent = Arc::new(Mutex::new(Vec::new()));
//!     let sink = Arc::clone(&sent);
//!     let lobby = RoomState::new(
//!         Arc::new(MemoryStore::new()),
//!         RoomKey::new("chat", "lobby"),
//!         Some(Arc::new(move |_room: &RoomKey, patch: &StatePatch| {
//!             sink.lock().unwrap().push(patch.clone());
//!         })),
//!     );
//!
//!     lobby.set("topic", "rust").await?;
//!     lobby.push("messages", &"hello").await?;
//!     assert_eq!(lobby.increment("visits", 1).await?, 1.into());
//!     assert_eq!(lobby.get::<String>("topic").await?.as_deref(), Some("rust"));
//!
//!     // A failed operation changes nothing and sends nothing.
//!     let missing = lobby.update("pinned", &1).await;
//!     assert_eq!(missing, Err(StateError::KeyMissing { key: "pinned".into() }));
//!     assert_eq!(sent.lock().unwrap().len(), 3);
//!     Ok::<_, StateError>(())
//! })?;
//! # Ok(())
//! # }
//! ```

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock},
};

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Map, Number, Value};

pub use crate::{room::key::RoomKey, util::BoxFuture};

/// Called with every patch a [`RoomState`] applies successfully.
pub type ChangeListener = Arc<dyn Fn(&RoomKey, &StatePatch) + Send + Sync>;

/// Why a state operation failed; a failed operation changed nothing.
///
/// Errors compare equal when their variants and fields do; two
/// [`StateError::Backend`] errors compare by the text of their sources.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// `update` of a key that is not set.
    #[error("state key `{key}` is not set")]
    KeyMissing {
        /// The key.
        key: String,
    },
    /// `push` or `remove` on a value that is not an array.
    #[error("state key `{key}` does not hold an array")]
    NotAnArray {
        /// The key.
        key: String,
    },
    /// `increment` or `decrement` on a value that is not a number.
    #[error("state key `{key}` does not hold a number")]
    NotANumber {
        /// The key.
        key: String,
    },
    /// `patch` on a value that is not an object, or with a patch that is not
    /// an object.
    #[error("state key `{key}` can only be patched when it and the patch are objects")]
    NotAnObject {
        /// The key.
        key: String,
    },
    /// `get::<T>` of a value that is not a `T`.
    #[error("state key `{key}` does not hold the requested type: {message}")]
    Decode {
        /// The key.
        key: String,
        /// What did not match, with the path inside the value when there is one.
        message: String,
    },
    /// A value that does not serialize to JSON.
    #[error("value for state key `{key}` cannot be encoded: {message}")]
    Encode {
        /// The key.
        key: String,
        /// Why serialization failed.
        message: String,
    },
    /// The store itself failed: its service could not be reached or
    /// answered with an error, or it holds a value it cannot read.
    ///
    /// The field is the underlying error (from a Redis store, a
    /// `redis::RedisError`, or a description of what went wrong), also
    /// given by [`source`](std::error::Error::source); downcast it to
    /// inspect it. It is shared so that the error stays `Clone`. Build one
    /// with [`StateError::backend`].
    #[error("the state store failed")]
    Backend(#[source] Arc<Box<dyn std::error::Error + Send + Sync>>),
}

impl StateError {
    /// A [`StateError::Backend`] caused by `source`: the error of the
    /// store's client library, or a message (`String`, `&str`) saying what
    /// went wrong.
    pub fn backend(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Backend(crate::error::shared(source))
    }
}

impl PartialEq for StateError {
    fn eq(&self, other: &Self) -> bool {
        use StateError::*;
        match self {
            KeyMissing { key } => matches!(other, KeyMissing { key: k } if k == key),
            NotAnArray { key } => matches!(other, NotAnArray { key: k } if k == key),
            NotANumber { key } => matches!(other, NotANumber { key: k } if k == key),
            NotAnObject { key } => matches!(other, NotAnObject { key: k } if k == key),
            Decode { key, message } => {
                matches!(other, Decode { key: k, message: m } if k == key && m == message)
            }
            Encode { key, message } => {
                matches!(other, Encode { key: k, message: m } if k == key && m == message)
            }
            Backend(source) => {
                matches!(other, Backend(s) if crate::error::same_source(s, source))
            }
        }
    }
}

/// One change, as members of a synced room receive it: the key's value after
/// the change.
///
/// On the wire it is an object tagged by `op`:
///
/// ```
/// use liweb::state::StatePatch;
/// use serde_json::json;
///
/// let patch = StatePatch::Set { key: "visits".into(), value: json!(3) };
/// assert_eq!(serde_json::to_value(&patch)?, json!({"op": "set", "key": "visits", "value": 3}));
/// assert_eq!(serde_json::to_value(StatePatch::Clear)?, json!({"op": "clear"}));
/// # Ok::<_, serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum StatePatch {
    /// `key` now holds `value`.
    Set {
        /// The changed key.
        key: String,
        /// Its whole value after the change.
        value: Value,
    },
    /// `key` is no longer set.
    Delete {
        /// The deleted key.
        key: String,
    },
    /// Every key of the room was removed.
    Clear,
}

impl StatePatch {
    /// The key the patch changes; `None` for [`StatePatch::Clear`].
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Set { key, .. } | Self::Delete { key } => Some(key),
            Self::Clear => None,
        }
    }
}

/// The operations of a state store.
///
/// Each operation is atomic: concurrent operations on one room never lose an
/// update, and a failed operation changes nothing. Operations that change a
/// key return the [`StatePatch`] describing the change. The trait is object
/// safe; the runtime holds stores as `Arc<dyn StateStore>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a state store",
    note = "use `liweb::state::MemoryStore`, or implement `StateStore` for your type"
)]
pub trait StateStore: Send + Sync + 'static {
    /// The value of `key`, or `None` when it is not set.
    fn get<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, StateError>>;

    /// Whether `key` is set.
    fn has<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
    ) -> BoxFuture<'a, Result<bool, StateError>>;

    /// Every key of the room with its value; empty for an unknown room.
    fn snapshot<'a>(
        &'a self,
        room: &'a RoomKey,
    ) -> BoxFuture<'a, Result<Map<String, Value>, StateError>>;

    /// Sets `key` to `value`, whether or not it was set.
    fn set<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
        value: Value,
    ) -> BoxFuture<'a, Result<StatePatch, StateError>>;

    /// Replaces the value of `key`; [`StateError::KeyMissing`] when it is not
    /// set.
    fn update<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
        value: Value,
    ) -> BoxFuture<'a, Result<StatePatch, StateError>>;

    /// Merges `fields` into the object at `key`, one level deep: each field
    /// replaces the field of the same name. Creates the object when `key` is
    /// not set; [`StateError::NotAnObject`] when its value is not an object.
    fn patch<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
        fields: Map<String, Value>,
    ) -> BoxFuture<'a, Result<StatePatch, StateError>>;

    /// Appends `item` to the array at `key`, creating `[item]` when `key` is
    /// not set; [`StateError::NotAnArray`] when its value is not an array.
    fn push<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
        item: Value,
    ) -> BoxFuture<'a, Result<StatePatch, StateError>>;

    /// Removes the items of the array at `key` for which `predicate` returns
    /// `true`, and says how many went.
    ///
    /// A missing key removes nothing (`Ok((0, None))`); a value that is not an
    /// array is [`StateError::NotAnArray`]. The patch is `None` when nothing
    /// was removed. The predicate may run while the room is locked, so it
    /// must not use the store.
    fn remove<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
        predicate: &'a (dyn Fn(&Value) -> bool + Send + Sync),
    ) -> BoxFuture<'a, Result<(usize, Option<StatePatch>), StateError>>;

    /// Adds `by` to the number at `key`, starting from 0 when it is not set,
    /// and returns the new number.
    ///
    /// The arithmetic is exact on integers while the result fits a JSON
    /// integer (`i64` or `u64`); a float, or a result that would overflow,
    /// gives an `f64`. [`StateError::NotANumber`] when the value is not a
    /// number.
    fn increment<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
        by: i64,
    ) -> BoxFuture<'a, Result<(Number, StatePatch), StateError>>;

    /// Subtracts `by` from the number at `key`, as [`increment`](Self::increment)
    /// adds.
    ///
    /// The default negates `by` and calls `increment`; `i64::MIN`, whose
    /// negation is not an `i64`, is then a [`StateError::Backend`] error.
    /// [`MemoryStore`] subtracts every `i64` exactly.
    fn decrement<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
        by: i64,
    ) -> BoxFuture<'a, Result<(Number, StatePatch), StateError>> {
        match by.checked_neg() {
            Some(by) => self.increment(room, key, by),
            None => Box::pin(std::future::ready(Err(StateError::backend(format!(
                "this store cannot decrement `{key}` by {by}"
            ))))),
        }
    }

    /// Removes `key`; the patch is `None` when it was not set.
    fn delete<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<StatePatch>, StateError>>;

    /// Removes every key of the room.
    fn clear<'a>(&'a self, room: &'a RoomKey) -> BoxFuture<'a, Result<StatePatch, StateError>>;

    /// Forgets the room entirely, because the room was deleted.
    fn drop_room<'a>(&'a self, room: &'a RoomKey) -> BoxFuture<'a, Result<(), StateError>>;
}

/// One room's map. `dropped` marks a map that has left the store's index, so
/// an operation that found it just before must look the room up again rather
/// than write into a map nobody will read.
#[derive(Debug, Default)]
struct RoomCell {
    values: Map<String, Value>,
    dropped: bool,
}

type Room = Arc<Mutex<RoomCell>>;

/// The in-memory [`StateStore`]: state lives as long as the process.
///
/// Each room has its own lock, held for the whole of one operation and never
/// across an `.await`, so operations on different rooms do not contend. A
/// room whose map becomes empty is forgotten, so rooms cost nothing once
/// their state is gone.
///
/// ```
/// use std::sync::Arc;
///
/// use liweb::state::{MemoryStore, RoomKey, RoomState, StateStore};
///
/// let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
/// let state = RoomState::new(store, RoomKey::new("game", "table-1"), None);
/// # let _ = state;
/// ```
#[derive(Debug, Default)]
pub struct MemoryStore {
    rooms: RwLock<HashMap<RoomKey, Room>>,
}

/// A panic while a lock was held cannot have left a half-applied operation:
/// every operation computes its result before it assigns anything.
fn lock(room: &Mutex<RoomCell>) -> MutexGuard<'_, RoomCell> {
    room.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn find(&self, room: &RoomKey) -> Option<Room> {
        let rooms = self.rooms.read().unwrap_or_else(PoisonError::into_inner);
        rooms.get(room).cloned()
    }

    fn find_or_create(&self, room: &RoomKey) -> Room {
        if let Some(found) = self.find(room) {
            return found;
        }
        let mut rooms = self.rooms.write().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(rooms.entry(room.clone()).or_default())
    }

    /// Runs `op` on the room's map, or on an empty map for an unknown room
    /// (which is not created).
    fn read<T>(&self, room: &RoomKey, op: impl FnOnce(&Map<String, Value>) -> T) -> T {
        if let Some(cell) = self.find(room) {
            let cell = lock(&cell);
            // A dropped map was emptied when it was dropped, so reading it is
            // reading the unknown room it has become.
            return op(&cell.values);
        }
        op(&Map::new())
    }

    /// Runs `op` on the room's map with the room locked.
    ///
    /// With `create` false an unknown room is not created: `op` runs on an
    /// empty scratch map, which suits operations that change nothing when
    /// the key is missing.
    fn write<T>(
        &self,
        room: &RoomKey,
        create: bool,
        op: impl FnOnce(&mut Map<String, Value>) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        loop {
            let cell = if create {
                self.find_or_create(room)
            } else {
                match self.find(room) {
                    Some(cell) => cell,
                    None => return op(&mut Map::new()),
                }
            };
            let mut guard = lock(&cell);
            if guard.dropped {
                continue;
            }
            let result = op(&mut guard.values);
            if guard.values.is_empty() {
                // Unlinking under the room's lock means no operation can slip
                // a write into this map between the check and the removal.
                // Taking the index lock here cannot deadlock: nothing waits
                // for a room's lock while holding the index lock.
                guard.dropped = true;
                let mut rooms = self.rooms.write().unwrap_or_else(PoisonError::into_inner);
                if rooms
                    .get(room)
                    .is_some_and(|indexed| Arc::ptr_eq(indexed, &cell))
                {
                    rooms.remove(room);
                }
            }
            return result;
        }
    }

    fn add(&self, room: &RoomKey, key: &str, by: i128) -> Result<(Number, StatePatch), StateError> {
        self.write(room, true, |values| {
            let sum = match values.get(key) {
                None => add(key, &Number::from(0), by)?,
                Some(Value::Number(current)) => add(key, current, by)?,
                Some(_) => return Err(not_a_number(key)),
            };
            values.insert(key.to_owned(), Value::Number(sum.clone()));
            Ok((sum.clone(), set_patch(key, Value::Number(sum))))
        })
    }
}

// The value rules of the operations, shared by every store so they cannot
// drift: each takes the key's current value (`None` when missing) and
// returns its new value, or why the operation does not apply.

/// `patch`: a missing key becomes `fields`; an object gets them merged in.
pub(crate) fn patched(
    key: &str,
    current: Option<&Value>,
    fields: &Map<String, Value>,
) -> Result<Value, StateError> {
    match current {
        None => Ok(Value::Object(fields.clone())),
        Some(Value::Object(object)) => {
            let mut object = object.clone();
            object.extend(fields.clone());
            Ok(Value::Object(object))
        }
        Some(_) => Err(not_an_object(key)),
    }
}

/// `push`: a missing key becomes `[item]`; an array gets `item` appended.
pub(crate) fn pushed(
    key: &str,
    current: Option<&Value>,
    item: &Value,
) -> Result<Value, StateError> {
    match current {
        None => Ok(Value::Array(vec![item.clone()])),
        Some(Value::Array(items)) => {
            let mut items = items.clone();
            items.push(item.clone());
            Ok(Value::Array(items))
        }
        Some(_) => Err(not_an_array(key)),
    }
}

/// `remove`: how many items match `predicate` and the array without them;
/// `None` when the key is missing or nothing matches. The predicate sees
/// every item before anything changes, so one that panics changes nothing.
pub(crate) fn without(
    key: &str,
    current: Option<&Value>,
    predicate: &(dyn Fn(&Value) -> bool + Send + Sync),
) -> Result<Option<(usize, Value)>, StateError> {
    let items = match current {
        None => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(not_an_array(key)),
    };
    let kept: Vec<Value> = items
        .iter()
        .filter(|item| !predicate(item))
        .cloned()
        .collect();
    let removed = items.len() - kept.len();
    Ok((removed > 0).then_some((removed, Value::Array(kept))))
}

pub(crate) fn set_patch(key: &str, value: Value) -> StatePatch {
    StatePatch::Set {
        key: key.to_owned(),
        value,
    }
}

pub(crate) fn not_a_number(key: &str) -> StateError {
    StateError::NotANumber {
        key: key.to_owned(),
    }
}

pub(crate) fn not_an_array(key: &str) -> StateError {
    StateError::NotAnArray {
        key: key.to_owned(),
    }
}

pub(crate) fn not_an_object(key: &str) -> StateError {
    StateError::NotAnObject {
        key: key.to_owned(),
    }
}

/// `current + by`, exact while the sum is a JSON integer.
pub(crate) fn add(key: &str, current: &Number, by: i128) -> Result<Number, StateError> {
    let exact = current
        .as_i64()
        .map(i128::from)
        .or_else(|| current.as_u64().map(i128::from))
        .and_then(|n| n.checked_add(by));
    let float = match exact {
        Some(sum) => {
            if let Ok(sum) = i64::try_from(sum) {
                return Ok(sum.into());
            }
            if let Ok(sum) = u64::try_from(sum) {
                return Ok(sum.into());
            }
            sum as f64
        }
        None => current.as_f64().unwrap_or(f64::NAN) + by as f64,
    };
    // Only a non-finite sum has no JSON form, and the sum of a finite f64 and
    // an i128 stays finite; this guards a store built with features that let
    // other numbers in.
    Number::from_f64(float).ok_or_else(|| StateError::Encode {
        key: key.to_owned(),
        message: format!("{float} is not a JSON number"),
    })
}

impl StateStore for MemoryStore {
    fn get<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, StateError>> {
        Box::pin(async move { Ok(self.read(room, |values| values.get(key).cloned())) })
    }

    fn has<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        Box::pin(async move { Ok(self.read(room, |values| values.contains_key(key))) })
    }

    fn snapshot<'a>(
        &'a self,
        room: &'a RoomKey,
    ) -> BoxFuture<'a, Result<Map<String, Value>, StateError>> {
        Box::pin(async move { Ok(self.read(room, Map::clone)) })
    }

    fn set<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
        value: Value,
    ) -> BoxFuture<'a, Result<StatePatch, StateError>> {
        Box::pin(async move {
            self.write(room, true, |values| {
                values.insert(key.to_owned(), value.clone());
                Ok(set_patch(key, value))
            })
        })
    }

    fn update<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
        value: Value,
    ) -> BoxFuture<'a, Result<StatePatch, StateError>> {
        Box::pin(async move {
            self.write(room, false, |values| match values.get_mut(key) {
                Some(slot) => {
                    *slot = value.clone();
                    Ok(set_patch(key, value))
                }
                None => Err(StateError::KeyMissing {
                    key: key.to_owned(),
                }),
            })
        })
    }

    fn patch<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
        fields: Map<String, Value>,
    ) -> BoxFuture<'a, Result<StatePatch, StateError>> {
        Box::pin(async move {
            self.write(room, true, |values| {
                let object = patched(key, values.get(key), &fields)?;
                values.insert(key.to_owned(), object.clone());
                Ok(set_patch(key, object))
            })
        })
    }

    fn push<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
        item: Value,
    ) -> BoxFuture<'a, Result<StatePatch, StateError>> {
        Box::pin(async move {
            self.write(room, true, |values| {
                let array = pushed(key, values.get(key), &item)?;
                values.insert(key.to_owned(), array.clone());
                Ok(set_patch(key, array))
            })
        })
    }

    fn remove<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
        predicate: &'a (dyn Fn(&Value) -> bool + Send + Sync),
    ) -> BoxFuture<'a, Result<(usize, Option<StatePatch>), StateError>> {
        Box::pin(async move {
            self.write(room, false, |values| {
                match without(key, values.get(key), predicate)? {
                    None => Ok((0, None)),
                    Some((removed, array)) => {
                        values.insert(key.to_owned(), array.clone());
                        Ok((removed, Some(set_patch(key, array))))
                    }
                }
            })
        })
    }

    fn increment<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
        by: i64,
    ) -> BoxFuture<'a, Result<(Number, StatePatch), StateError>> {
        Box::pin(async move { self.add(room, key, i128::from(by)) })
    }

    fn decrement<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
        by: i64,
    ) -> BoxFuture<'a, Result<(Number, StatePatch), StateError>> {
        Box::pin(async move { self.add(room, key, -i128::from(by)) })
    }

    fn delete<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<StatePatch>, StateError>> {
        Box::pin(async move {
            self.write(room, false, |values| {
                Ok(values.remove(key).map(|_| StatePatch::Delete {
                    key: key.to_owned(),
                }))
            })
        })
    }

    fn clear<'a>(&'a self, room: &'a RoomKey) -> BoxFuture<'a, Result<StatePatch, StateError>> {
        Box::pin(async move {
            self.write(room, false, |values| {
                values.clear();
                Ok(StatePatch::Clear)
            })
        })
    }

    fn drop_room<'a>(&'a self, room: &'a RoomKey) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            let removed = self
                .rooms
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(room);
            // The index lock is released above: a room's lock is never awaited
            // while the index lock is held.
            if let Some(cell) = removed {
                let mut cell = lock(&cell);
                cell.dropped = true;
                cell.values = Map::new();
            }
            Ok(())
        })
    }
}

/// The state of one room, with typed values: what handlers use.
///
/// Values go in through [`Serialize`] and come out through
/// [`Deserialize`]; every successful change is passed to the `on_change`
/// listener, which is how the runtime sends patches to the room's members.
/// Failed operations, and removes and deletes that found nothing, call
/// nothing. Cloning is cheap: clones share the store and the listener.
///
/// ```
/// use std::sync::Arc;
///
/// use liweb::state::{MemoryStore, RoomKey, RoomState};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, PartialEq, Debug)]
/// struct Card {
///     id: u32,
///     title: String,
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let runtime = tokio::runtime::Builder::new_current_thread().build()?;
/// runtime.block_on(async {
///     let board = RoomState::new(Arc::new(MemoryStore::new()), RoomKey::new("board", "b1"), None);
///     board.push("cards", &Card { id: 1, title: "write docs".into() }).await?;
///     board.push("cards", &Card { id: 2, title: "ship".into() }).await?;
///     assert_eq!(board.remove_where("cards", |card: &Card| card.id == 1).await?, 1);
///
///     let cards: Vec<Card> = board.get("cards").await?.unwrap_or_default();
///     assert_eq!(cards, [Card { id: 2, title: "ship".into() }]);
///     Ok::<_, liweb::state::StateError>(())
/// })?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RoomState {
    store: Arc<dyn StateStore>,
    room: RoomKey,
    on_change: Option<ChangeListener>,
}

impl fmt::Debug for RoomState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoomState")
            .field("room", &self.room)
            .field("on_change", &self.on_change.is_some())
            .finish_non_exhaustive()
    }
}

fn encode<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<Value, StateError> {
    serde_json::to_value(value).map_err(|err| StateError::Encode {
        key: key.to_owned(),
        message: err.to_string(),
    })
}

impl RoomState {
    /// The state of `room` in `store`; `on_change` receives every patch
    /// applied through this handle (and its clones).
    pub fn new(
        store: Arc<dyn StateStore>,
        room: RoomKey,
        on_change: Option<ChangeListener>,
    ) -> Self {
        Self {
            store,
            room,
            on_change,
        }
    }

    /// The room this state belongs to.
    pub fn room(&self) -> &RoomKey {
        &self.room
    }

    fn changed(&self, patch: &StatePatch) {
        if let Some(on_change) = &self.on_change {
            on_change(&self.room, patch);
        }
    }

    /// The value of `key` as a `T`, or `None` when it is not set;
    /// [`StateError::Decode`] when the value is not a `T`.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StateError> {
        let Some(value) = self.store.get(&self.room, key).await? else {
            return Ok(None);
        };
        serde_path_to_error::deserialize(value)
            .map(Some)
            .map_err(|err| StateError::Decode {
                key: key.to_owned(),
                message: err.to_string(),
            })
    }

    /// Whether `key` is set.
    pub async fn has(&self, key: &str) -> Result<bool, StateError> {
        self.store.has(&self.room, key).await
    }

    /// Every key of the room with its value.
    pub async fn snapshot(&self) -> Result<Map<String, Value>, StateError> {
        self.store.snapshot(&self.room).await
    }

    /// Sets `key` to `value`.
    ///
    /// `value` is serialized when `set` is called, so the future does not
    /// borrow it.
    pub fn set<'a, T: Serialize + ?Sized>(
        &'a self,
        key: &'a str,
        value: &T,
    ) -> impl Future<Output = Result<(), StateError>> + Send + use<'a, T> {
        let value = encode(key, value);
        async move {
            let patch = self.store.set(&self.room, key, value?).await?;
            self.changed(&patch);
            Ok(())
        }
    }

    /// Replaces the value of `key`; [`StateError::KeyMissing`] when it is not
    /// set. `value` is serialized when `update` is called.
    pub fn update<'a, T: Serialize + ?Sized>(
        &'a self,
        key: &'a str,
        value: &T,
    ) -> impl Future<Output = Result<(), StateError>> + Send + use<'a, T> {
        let value = encode(key, value);
        async move {
            let patch = self.store.update(&self.room, key, value?).await?;
            self.changed(&patch);
            Ok(())
        }
    }

    /// Merges the fields of `fields` into the object at `key`, one level
    /// deep, creating the object when `key` is not set.
    ///
    /// [`StateError::NotAnObject`] when `fields` does not serialize to an
    /// object or the current value is not an object. `fields` is serialized
    /// when `patch` is called.
    pub fn patch<'a, T: Serialize + ?Sized>(
        &'a self,
        key: &'a str,
        fields: &T,
    ) -> impl Future<Output = Result<(), StateError>> + Send + use<'a, T> {
        let fields = encode(key, fields).and_then(|fields| match fields {
            Value::Object(fields) => Ok(fields),
            _ => Err(not_an_object(key)),
        });
        async move {
            let patch = self.store.patch(&self.room, key, fields?).await?;
            self.changed(&patch);
            Ok(())
        }
    }

    /// Appends `item` to the array at `key`, creating the array when `key` is
    /// not set; [`StateError::NotAnArray`] when the value is not an array.
    /// `item` is serialized when `push` is called.
    pub fn push<'a, T: Serialize + ?Sized>(
        &'a self,
        key: &'a str,
        item: &T,
    ) -> impl Future<Output = Result<(), StateError>> + Send + use<'a, T> {
        let item = encode(key, item);
        async move {
            let patch = self.store.push(&self.room, key, item?).await?;
            self.changed(&patch);
            Ok(())
        }
    }

    /// Removes the items of the array at `key` for which `predicate` returns
    /// `true` and returns how many went; 0 when `key` is not set,
    /// [`StateError::NotAnArray`] when its value is not an array.
    ///
    /// The predicate runs with the room locked, so it must not use this
    /// state.
    pub async fn remove(
        &self,
        key: &str,
        predicate: impl Fn(&Value) -> bool + Send + Sync,
    ) -> Result<usize, StateError> {
        let (removed, patch) = self.store.remove(&self.room, key, &predicate).await?;
        if let Some(patch) = patch {
            self.changed(&patch);
        }
        Ok(removed)
    }

    /// [`remove`](Self::remove) with the items decoded as `T`; items that are
    /// not a `T` are kept.
    pub async fn remove_where<T: DeserializeOwned>(
        &self,
        key: &str,
        predicate: impl Fn(&T) -> bool + Send + Sync,
    ) -> Result<usize, StateError> {
        self.remove(key, move |item| {
            T::deserialize(item).is_ok_and(|item| predicate(&item))
        })
        .await
    }

    /// Adds `by` to the number at `key` (starting from 0) and returns the new
    /// number; see [`StateStore::increment`] for integer and float
    /// arithmetic.
    pub async fn increment(&self, key: &str, by: i64) -> Result<Number, StateError> {
        let (number, patch) = self.store.increment(&self.room, key, by).await?;
        self.changed(&patch);
        Ok(number)
    }

    /// Subtracts `by` from the number at `key` (starting from 0) and returns
    /// the new number.
    pub async fn decrement(&self, key: &str, by: i64) -> Result<Number, StateError> {
        let (number, patch) = self.store.decrement(&self.room, key, by).await?;
        self.changed(&patch);
        Ok(number)
    }

    /// Removes `key`; `false` when it was not set.
    pub async fn delete(&self, key: &str) -> Result<bool, StateError> {
        let patch = self.store.delete(&self.room, key).await?;
        if let Some(patch) = &patch {
            self.changed(patch);
        }
        Ok(patch.is_some())
    }

    /// Removes every key of the room.
    pub async fn clear(&self) -> Result<(), StateError> {
        let patch = self.store.clear(&self.room).await?;
        self.changed(&patch);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

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
        store
            .rooms
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
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

    /// Conformance S5.
    #[test]
    fn s5_default_decrement_reports_what_it_cannot_negate() {
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
            fn clear<'a>(
                &'a self,
                room: &'a RoomKey,
            ) -> BoxFuture<'a, Result<StatePatch, StateError>> {
                self.0.clear(room)
            }
            fn drop_room<'a>(&'a self, room: &'a RoomKey) -> BoxFuture<'a, Result<(), StateError>> {
                self.0.drop_room(room)
            }
        }

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
}
