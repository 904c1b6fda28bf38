//! What an accept loop does when `accept` fails, shared by [`serve`](crate::serve)
//! and the TCP transport.
//!
//! Out of file descriptors (`EMFILE`, `ENFILE`), `accept` fails at once
//! and the listener stays readable, so a loop that retries at once spins a
//! core; the pending client stays in the listen queue meanwhile, and is
//! accepted by the first attempt after a descriptor frees.

use std::{
    io,
    time::{Duration, Instant},
};

/// The first wait after a failed `accept`, doubled on each failure in a row
/// up to [`BACKOFF_MAX`]. The cap bounds how late a descriptor freed
/// elsewhere is seen; `serve` also ends the wait when one of its sockets
/// closes.
const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_millis(250);

/// Errors of one pending connection, not of the listener: the next accept
/// can go ahead at once.
pub(crate) fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// A run of failed accepts: logged once when it starts and once when it
/// ends, with a wait that doubles between attempts.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    started: Option<Instant>,
    failures: u64,
    wait: Duration,
}

impl Backoff {
    /// Records a failure; returns how long to wait before the next accept.
    pub(crate) fn failed(&mut self, err: &io::Error) -> Duration {
        self.failures += 1;
        if self.started.is_none() {
            self.started = Some(Instant::now());
            self.wait = BACKOFF_MIN;
            tracing::error!(
                %err,
                "accept failed (out of file descriptors?); waiting for a socket to close"
            );
        } else {
            self.wait = (self.wait * 2).min(BACKOFF_MAX);
        }
        self.wait
    }

    /// Records a successful accept, ending the run of failures if any.
    pub(crate) fn recovered(&mut self) {
        if let Some(started) = self.started.take() {
            tracing::warn!(
                failed_attempts = self.failures,
                after = ?started.elapsed(),
                "accepting connections again"
            );
            self.failures = 0;
        }
    }
}
