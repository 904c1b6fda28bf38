//! What a state store is: the [`StateStore`] operations, the
//! [`StatePatch`] a change yields, and why an operation fails.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

use crate::{room::key::RoomKey, util::BoxFuture};

/// Called with every patch a [`RoomState`](super::RoomState) applies successfully.
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
    /// The function given to [`StateStore::modify`] refused the change, so
    /// nothing changed.
    ///
    /// Stores return it as they got it. [`RoomState::try_modify`](super::RoomState::try_modify)
    /// turns it back into the function's own error, so code using
    /// [`RoomState`](super::RoomState) never sees this variant.
    #[error("the change to state key `{key}` was refused")]
    Refused {
        /// The key.
        key: String,
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
            Refused { key } => matches!(other, Refused { key: k } if k == key),
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

/// What [`StateStore::modify`] applies to a key: its current value (`None`
/// when it is not set) in, its new value out, or an error that leaves the key
/// as it was.
pub type Modifier<'a> = dyn FnMut(Option<&Value>) -> Result<Value, StateError> + Send + 'a;

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
    /// [`MemoryStore`](super::MemoryStore) subtracts every `i64` exactly.
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

    /// Sets `key` to what `modify` returns for its current value (`None` when
    /// it is not set), with no other change to the key in between.
    ///
    /// An error from `modify` changes nothing and is returned as it is. A
    /// store may call `modify` more than once (a store that detects a
    /// conflicting write and tries again): the value of the last call is the
    /// one stored, and every call but the last returned `Ok`. `modify` may
    /// run while the room is locked, so it must not use the store.
    ///
    /// The default cannot be atomic with the other operations, so it does
    /// not try: it is a [`StateError::Backend`] error saying the store cannot
    /// modify. [`MemoryStore`](super::MemoryStore) and the Redis store
    /// implement it.
    fn modify<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
        modify: &'a mut Modifier<'_>,
    ) -> BoxFuture<'a, Result<StatePatch, StateError>> {
        let _ = (room, modify);
        Box::pin(std::future::ready(Err(StateError::backend(format!(
            "this store cannot modify `{key}`"
        )))))
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
