//! A connection's deadlines and its rate limit.

use tokio::time::{Duration, Instant};
/// The per-connection token bucket of [`Config::max_events_per_second`](crate::Config::max_events_per_second):
/// one token per event, refilled continuously, [`Config::event_burst`](crate::Config::event_burst)
/// at most.
pub(super) struct RateLimit {
    per_second: f64,
    burst: f64,
    tokens: f64,
    last: tokio::time::Instant,
    /// Whether this connection's first refusal was logged: a flood is
    /// logged once, not once per dropped event.
    logged: bool,
}

impl RateLimit {
    pub(super) fn new(per_second: u32, burst: u32, now: tokio::time::Instant) -> Self {
        // A bucket smaller than one token would refuse everything.
        let burst = f64::from(burst.max(1));
        Self {
            per_second: f64::from(per_second),
            burst,
            tokens: burst,
            last: now,
            logged: false,
        }
    }

    /// True the first time it is called: whether to log a refusal.
    pub(super) fn first_refusal(&mut self) -> bool {
        !std::mem::replace(&mut self.logged, true)
    }

    pub(super) fn take(&mut self, now: tokio::time::Instant) -> bool {
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The connection's timers, all served by one `Sleep` set to the earliest.
/// They live in the connection's task, so they end with it.
pub(super) struct Timers {
    /// When the close handshake must be over.
    pub(super) close: Option<Instant>,
    /// When authentication must be over.
    pub(super) auth: Option<Instant>,
    /// When the next ping goes out.
    pub(super) ping: Option<Instant>,
    /// When the unanswered ping times out.
    pub(super) pong: Option<Instant>,
    /// The last inbound data frame, for the idle timeout.
    pub(super) last_activity: Instant,
}

impl Timers {
    pub(super) fn next(&self, idle: Option<Duration>) -> Option<Instant> {
        [
            self.close,
            self.auth,
            self.ping,
            self.pong,
            idle.map(|idle| self.last_activity + idle),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}
