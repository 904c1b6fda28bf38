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

/// At most one line per this long about failing accepts: while descriptors
/// free one at a time, accepts succeed and fail in turn, and each turn is
/// not worth a line.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Runs of failed accepts (failures with no success between them): the wait
/// doubles within a run; a run is logged when it starts and when it ends,
/// at most once per [`LOG_EVERY`], with the failures counted meanwhile.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    /// When the current run began, and its failures.
    run: Option<(Instant, u64)>,
    wait: Duration,
    /// Failures not yet in a logged line.
    unlogged: u64,
    /// When a failure was last logged.
    logged_at: Option<Instant>,
    /// Whether a failure was logged and its recovery not yet.
    owes_recovery: bool,
}

impl Backoff {
    /// Records a failure; returns how long to wait before the next accept.
    pub(crate) fn failed(&mut self, err: &io::Error) -> Duration {
        let now = Instant::now();
        match &mut self.run {
            Some((_, failures)) => {
                *failures += 1;
                self.wait = (self.wait * 2).min(BACKOFF_MAX);
            }
            None => {
                self.run = Some((now, 1));
                self.wait = BACKOFF_MIN;
            }
        }
        self.unlogged += 1;
        if self
            .logged_at
            .is_none_or(|at| now.duration_since(at) >= LOG_EVERY)
        {
            tracing::error!(
                %err,
                failed_attempts = self.unlogged,
                "accept failed (out of file descriptors?); waiting for a socket to close"
            );
            self.unlogged = 0;
            self.logged_at = Some(now);
            self.owes_recovery = true;
        }
        self.wait
    }

    /// Records a successful accept, ending the run of failures if any.
    pub(crate) fn recovered(&mut self) {
        if let Some((started, failures)) = self.run.take()
            && std::mem::take(&mut self.owes_recovery)
        {
            tracing::warn!(
                failed_attempts = failures,
                after = ?started.elapsed(),
                "accepting connections again"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_within_a_run_up_to_the_cap_and_restarts_after_a_success() {
        let err = io::Error::from_raw_os_error(24);
        let mut backoff = Backoff::default();
        let waits: Vec<u64> = (0..9)
            .map(|_| backoff.failed(&err).as_millis() as u64)
            .collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 250, 250, 250]);
        backoff.recovered();
        assert_eq!(backoff.failed(&err), BACKOFF_MIN);
    }
}
