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

mod memory;
pub(crate) mod patch;
mod room_state;
mod store;
#[cfg(test)]
mod tests;

pub use self::{
    memory::MemoryStore,
    room_state::{ModifyError, RoomState},
    store::{ChangeListener, Modifier, StateError, StatePatch, StateStore},
};
pub use crate::{room::key::RoomKey, util::BoxFuture};
