//! [`RoomState`]: the typed handle on one room's state.

use std::{convert::Infallible, fmt, sync::Arc};

use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Number, Value};

use super::{
    patch::not_an_object,
    store::{ChangeListener, StateError, StatePatch, StateStore},
};
use crate::room::key::RoomKey;

/// The state of one room, with typed values: what handlers use.
///
/// Values go in through [`Serialize`] and come out through
/// [`Deserialize`](serde::Deserialize); every successful change is passed to the `on_change`
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
    /// What must live as long as this handle: the room's own handle, so a
    /// room that goes away with its last handle does not drop the state
    /// while it is still being written.
    _keep: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

impl fmt::Debug for RoomState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoomState")
            .field("room", &self.room)
            .field("on_change", &self.on_change.is_some())
            .finish_non_exhaustive()
    }
}

/// Why [`RoomState::try_modify`] changed nothing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModifyError<E> {
    /// The function returned this error.
    #[error("the function refused the change")]
    Refused(#[source] E),
    /// The state operation failed: the current value is not a `T`
    /// ([`StateError::Decode`]), the new one does not serialize
    /// ([`StateError::Encode`]), or the store failed.
    #[error(transparent)]
    State(#[from] StateError),
}

fn decode<T: DeserializeOwned>(key: &str, value: &Value) -> Result<T, StateError> {
    serde_path_to_error::deserialize(value).map_err(|err| StateError::Decode {
        key: key.to_owned(),
        message: err.to_string(),
    })
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
            _keep: None,
        }
    }

    /// This handle, keeping `keep` alive as long as it or a clone lives.
    pub(crate) fn keeping(mut self, keep: Arc<dyn std::any::Any + Send + Sync>) -> Self {
        self._keep = Some(keep);
        self
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
        match self.store.get(&self.room, key).await? {
            Some(value) => decode(key, &value).map(Some),
            None => Ok(None),
        }
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

    /// Sets `key` to what `f` makes of its current value (`None` when it is
    /// not set) and returns the new value.
    ///
    /// Read and write are one atomic step: no change to `key` from this
    /// process or another node comes between them, so concurrent `modify`
    /// calls lose no update, where [`get`](Self::get) then
    /// [`update`](Self::update) would. Members of a synced room get the new
    /// value as a patch, as for [`set`](Self::set).
    ///
    /// `f` may run more than once (a shared store tries again when another
    /// node wrote the key in between), so it should do nothing but compute
    /// the value; and it may run with the room locked, so it must not use
    /// this state. [`StateError::Decode`] when the current value is not a
    /// `T`; use [`try_modify`](Self::try_modify) when `f` can refuse.
    ///
    /// ```
    /// use std::sync::Arc;
    ///
    /// use liweb::state::{MemoryStore, RoomKey, RoomState};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    /// # runtime.block_on(async {
    /// let room = RoomState::new(Arc::new(MemoryStore::new()), RoomKey::new("chat", "lobby"), None);
    /// // The last three messages, however many tasks post at once.
    /// for text in ["a", "b", "c", "d"] {
    ///     room.modify("recent", |recent: Option<Vec<String>>| {
    ///         let mut recent = recent.unwrap_or_default();
    ///         recent.push(text.to_owned());
    ///         recent.split_off(recent.len().saturating_sub(3))
    ///     })
    ///     .await?;
    /// }
    /// assert_eq!(room.get::<Vec<String>>("recent").await?, Some(vec!["b".into(), "c".into(), "d".into()]));
    /// # Ok::<_, liweb::state::StateError>(())
    /// # })?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn modify<T, F>(&self, key: &str, mut f: F) -> Result<T, StateError>
    where
        T: Serialize + DeserializeOwned + Send,
        F: FnMut(Option<T>) -> T + Send,
    {
        match self
            .try_modify(key, |current| Ok::<_, Infallible>(f(current)))
            .await
        {
            Ok(value) => Ok(value),
            Err(ModifyError::State(err)) => Err(err),
            Err(ModifyError::Refused(never)) => match never {},
        }
    }

    /// [`modify`](Self::modify) with a function that may refuse: when `f`
    /// returns `Err`, `key` keeps its value, no patch is sent, and the error
    /// comes back as [`ModifyError::Refused`].
    ///
    /// ```
    /// use std::sync::Arc;
    ///
    /// use liweb::state::{MemoryStore, ModifyError, RoomKey, RoomState};
    ///
    /// #[derive(Debug, PartialEq)]
    /// struct RoomFull;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    /// # runtime.block_on(async {
    /// let room = RoomState::new(Arc::new(MemoryStore::new()), RoomKey::new("game", "t1"), None);
    /// let take_seat = |seats: Option<u32>| match seats.unwrap_or(0) {
    ///     2.. => Err(RoomFull),
    ///     taken => Ok(taken + 1),
    /// };
    /// assert_eq!(room.try_modify("seats", take_seat).await, Ok(1));
    /// assert_eq!(room.try_modify("seats", take_seat).await, Ok(2));
    /// assert_eq!(room.try_modify("seats", take_seat).await, Err(ModifyError::Refused(RoomFull)));
    /// assert_eq!(room.get::<u32>("seats").await?, Some(2));
    /// # Ok::<_, liweb::state::StateError>(())
    /// # })?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn try_modify<T, E, F>(&self, key: &str, mut f: F) -> Result<T, ModifyError<E>>
    where
        T: Serialize + DeserializeOwned + Send,
        E: Send,
        F: FnMut(Option<T>) -> Result<T, E> + Send,
    {
        // What the last call of `f` made: the store stores the value of the
        // last call, so this is what it stored, or why it stored nothing.
        let mut last: Option<Result<T, E>> = None;
        let mut apply = |current: Option<&Value>| {
            last = None;
            let current = current.map(|value| decode(key, value)).transpose()?;
            match f(current) {
                Ok(next) => {
                    let value = encode(key, &next)?;
                    last = Some(Ok(next));
                    Ok(value)
                }
                Err(err) => {
                    last = Some(Err(err));
                    Err(StateError::Refused {
                        key: key.to_owned(),
                    })
                }
            }
        };
        let stored = self.store.modify(&self.room, key, &mut apply).await;
        match (stored, last) {
            (Ok(patch), Some(Ok(value))) => {
                self.changed(&patch);
                Ok(value)
            }
            (Err(StateError::Refused { .. }), Some(Err(err))) => Err(ModifyError::Refused(err)),
            (Err(err), _) => Err(ModifyError::State(err)),
            (Ok(patch), _) => {
                // The store broke its contract; the change is made, so say so.
                self.changed(&patch);
                Err(ModifyError::State(StateError::backend(format!(
                    "the store changed state key `{key}` without the value of the last call"
                ))))
            }
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
