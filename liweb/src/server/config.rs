//! A server's limits and timeouts, its counters, and the upgrade hook's
//! refusal.

use std::{
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

/// Limits and timeouts of a server. Set through [`ServerBuilder`](crate::ServerBuilder).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The largest inbound frame, in bytes (default 64 KiB). A larger frame
    /// closes the connection with [`CloseCode::TooLarge`](crate::CloseCode::TooLarge)
    /// as soon as its header announces the size, before it is buffered.
    pub max_frame_size: usize,
    /// The most bytes queued for one connection's writer (default 1 MiB).
    /// Going over closes the connection with
    /// [`CloseCode::SlowConsumer`](crate::CloseCode::SlowConsumer).
    pub max_queue_bytes: usize,
    /// The most bytes queued for all connections together (default
    /// 256 MiB): a server-wide bound on outbound memory whatever clients do.
    /// When a frame takes the total over it, the connections holding the
    /// most are closed first, with
    /// [`CloseCode::SlowConsumer`](crate::CloseCode::SlowConsumer) and their
    /// backlog dropped, until the total is back under three quarters of it;
    /// each is counted in [`Stats::budget_closes`].
    pub max_total_queue_bytes: usize,
    /// How long a close handshake may take before the connection is dropped
    /// (default 2 s).
    pub close_timeout: Duration,
    /// The transport's read buffer per connection, in bytes (default 4 KiB).
    pub read_buffer_size: usize,
    /// How often the server pings each connection (default 25 s); `None`
    /// turns the heartbeat off. WebSocket ping frames; browsers answer them
    /// without any code.
    pub ping_interval: Option<Duration>,
    /// How long a ping may go unanswered before the connection is closed
    /// with [`CloseCode::PingTimeout`](crate::CloseCode::PingTimeout)
    /// (default 20 s). Any inbound frame counts as an answer.
    pub ping_timeout: Duration,
    /// Closes a connection that sends no event for this long, with
    /// [`CloseCode::IdleTimeout`](crate::CloseCode::IdleTimeout); pongs do
    /// not count. Off by default.
    pub idle_timeout: Option<Duration>,
    /// The most connections open at once, counting those still
    /// authenticating; more upgrades are refused with `503 Service
    /// Unavailable` (TCP: a `CLOSE` with 1013). 10,000 by default; `None`
    /// lifts the limit.
    pub max_connections: Option<usize>,
    /// The most events one connection may send per second, on average
    /// (default 100); an event over the limit is dropped unread and answered
    /// with an `error` event of code `rate_limited`. `None` lifts the limit.
    pub max_events_per_second: Option<u32>,
    /// How many events a connection may send at once before
    /// [`max_events_per_second`](Config::max_events_per_second) applies: the
    /// size of its token bucket. `None` (the default) holds one second's
    /// worth.
    pub event_burst: Option<u32>,
    /// How many failed authentications one remote address may make per
    /// minute (default 30, as a burst, then one every two seconds). An
    /// address over the limit gets `auth:error` `too many failed attempts`
    /// and close 4001 without its credentials being checked. IPv6
    /// addresses count per /64 network. `None` lifts the limit.
    pub max_auth_failures_per_minute: Option<u32>,
    /// The `Origin` values allowed to open connections; an upgrade with
    /// another `Origin` is refused with `403 Forbidden`, one without an
    /// `Origin` (a non-browser client) is accepted. Any origin by default.
    pub allowed_origins: Option<Arc<[String]>>,
    /// The most rooms one connection may be in at once (default 100); a
    /// join past it fails with
    /// [`JoinError::TooManyRooms`](crate::JoinError::TooManyRooms) and the
    /// client gets an `error` event of code `room_limit`. `None`: no limit.
    pub max_rooms_per_connection: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_frame_size: 64 * 1024,
            max_queue_bytes: 1024 * 1024,
            max_total_queue_bytes: 256 * 1024 * 1024,
            close_timeout: Duration::from_secs(2),
            read_buffer_size: 4 * 1024,
            ping_interval: Some(Duration::from_secs(25)),
            ping_timeout: Duration::from_secs(20),
            idle_timeout: None,
            max_connections: Some(10_000),
            max_events_per_second: Some(100),
            event_burst: None,
            max_auth_failures_per_minute: Some(30),
            allowed_origins: None,
            max_rooms_per_connection: Some(100),
        }
    }
}

/// An upgrade hook's refusal: the HTTP status and body the client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRejection {
    /// The response status.
    pub status: http::StatusCode,
    /// The response body.
    pub message: String,
}

impl UpgradeRejection {
    /// A refusal with a status and a message.
    pub fn new(status: http::StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

/// Counters of what the server refused, dropped or closed; read them with
/// [`Server::stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) rejected_origin: AtomicU64,
    pub(crate) rejected_full: AtomicU64,
    pub(crate) rejected_upgrade: AtomicU64,
    pub(crate) rejected_shutdown: AtomicU64,
    pub(crate) rejected_subprotocol: AtomicU64,
    pub(crate) rate_limited: AtomicU64,
    pub(crate) auth_failures: AtomicU64,
    pub(crate) auth_timeouts: AtomicU64,
    pub(crate) auth_throttled: AtomicU64,
    pub(crate) slow_consumers: AtomicU64,
    pub(crate) budget_closes: AtomicU64,
    pub(crate) ping_timeouts: AtomicU64,
    pub(crate) idle_timeouts: AtomicU64,
}

/// A snapshot of the server's counters, from [`Server::stats`](crate::Server::stats). Every
/// refusal, drop and policy close is counted here as well as logged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Connections open to the application (authenticated, if auth is on).
    pub connections: usize,
    /// Connections of every state, those authenticating included.
    pub live: usize,
    /// Upgrades refused because of their `Origin` (403).
    pub rejected_origin: u64,
    /// Connections refused at the connection limit (WebSocket: 503; TCP:
    /// a `CLOSE` with 1013).
    pub rejected_full: u64,
    /// Connections refused by the upgrade hook (either transport).
    pub rejected_upgrade: u64,
    /// Connections refused during shutdown (WebSocket: 503; TCP: a
    /// `CLOSE` with 1001).
    pub rejected_shutdown: u64,
    /// Connections refused because they asked only for `liweb.*` codecs
    /// this server does not support (WebSocket: 400; TCP: a `CLOSE` with
    /// 1003).
    pub rejected_subprotocol: u64,
    /// Events dropped by the rate limit.
    pub rate_limited: u64,
    /// Authentications refused.
    pub auth_failures: u64,
    /// Authentications that did not finish in time.
    pub auth_timeouts: u64,
    /// Authentications refused unchecked because their remote address
    /// failed too often ([`Config::max_auth_failures_per_minute`]).
    pub auth_throttled: u64,
    /// Connections closed for reading too slowly
    /// ([`CloseCode::SlowConsumer`](crate::CloseCode::SlowConsumer)), those
    /// closed for the server-wide budget included.
    pub slow_consumers: u64,
    /// Connections closed because the bytes queued for all connections went
    /// over [`Config::max_total_queue_bytes`] and they held the most.
    pub budget_closes: u64,
    /// Bytes queued for all connections now, not yet written; at most about
    /// [`Config::max_total_queue_bytes`].
    pub queued_bytes: usize,
    /// Connections closed for not answering pings.
    pub ping_timeouts: u64,
    /// Connections closed for being idle.
    pub idle_timeouts: u64,
    /// Joins refused at
    /// [`Config::max_rooms_per_connection`](crate::Config::max_rooms_per_connection).
    pub room_limit_refusals: u64,
}

/// The close reason of connections ended by [`Server::shutdown`].
pub(crate) const GOING_AWAY: &str = "server shutting down";
