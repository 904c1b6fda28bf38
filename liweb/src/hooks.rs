//! What the `on_error` hook receives.

use crate::{conn::Conn, error::HandlerError};

/// An error from handling an event or running a hook, given to
/// [`ServerBuilder::on_error`](crate::ServerBuilder::on_error).
#[derive(Debug)]
#[non_exhaustive]
pub struct ErrorReport<Out> {
    /// The connection the event came from.
    pub conn: Conn<Out>,
    /// The wire name of the event being handled; `None` for hooks.
    pub event: Option<&'static str>,
    /// What went wrong.
    pub error: HandlerError,
}
