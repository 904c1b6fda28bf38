//! Small things every layer uses. A leaf.

use std::{future::Future, pin::Pin};

/// A boxed, sendable future, as returned by [`StateStore`](crate::state::StateStore)
/// methods and the cluster's links.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
