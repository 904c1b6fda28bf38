//! [`MemoryStore`]: room state in this process.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock},
};

use serde_json::{Map, Number, Value};

use super::{
    patch::{add, not_a_number, patched, pushed, set_patch, without},
    store::{Modifier, StateError, StatePatch, StateStore},
};
use crate::{room::key::RoomKey, util::BoxFuture};

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
    /// How many rooms have a map, for tests of forgetting empty rooms.
    #[cfg(test)]
    pub(super) fn room_count(&self) -> usize {
        self.rooms
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

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

    /// Runs `modify` once, with the room locked from the read to the write.
    fn modify<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
        modify: &'a mut Modifier<'_>,
    ) -> BoxFuture<'a, Result<StatePatch, StateError>> {
        Box::pin(async move {
            self.write(room, true, |values| {
                let next = modify(values.get(key))?;
                values.insert(key.to_owned(), next.clone());
                Ok(set_patch(key, next))
            })
        })
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
