//! [`RedisConfig`]: the adapter's settings.

use std::time::Duration;

/// Settings of a [`RedisAdapter`](super::RedisAdapter).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    /// Prefix of every topic and key (default `liweb`). Nodes of one
    /// application share it; different applications on one Redis must not.
    pub prefix: String,
    /// How long a node counts as alive after its last heartbeat (default
    /// 10 s). A crashed node's members and presence disappear from
    /// cluster-wide reads within this time. Heartbeats are sent three times
    /// per TTL.
    pub liveness_ttl: Duration,
    /// How long an offline presence record is kept (default 5 minutes).
    pub offline_ttl: Duration,
    /// How many messages may wait to be published (default 65,536); beyond
    /// that, emits still reach local members but are not published, and an
    /// error is reported.
    pub publish_queue: usize,
    /// How long connecting, and each command, may take (default 2 s).
    pub timeout: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            prefix: "liweb".to_owned(),
            liveness_ttl: Duration::from_secs(10),
            offline_ttl: Duration::from_secs(5 * 60),
            publish_queue: 65_536,
            timeout: Duration::from_secs(2),
        }
    }
}

impl RedisConfig {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// With this key prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// With this liveness TTL; see [`RedisConfig::liveness_ttl`].
    pub fn liveness_ttl(mut self, ttl: Duration) -> Self {
        self.liveness_ttl = ttl;
        self
    }

    /// With this offline presence TTL.
    pub fn offline_ttl(mut self, ttl: Duration) -> Self {
        self.offline_ttl = ttl;
        self
    }

    /// With this publish queue length.
    pub fn publish_queue(mut self, messages: usize) -> Self {
        self.publish_queue = messages;
        self
    }

    /// With this connect and command timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}
