//! [`ClusterError`]: why a cluster operation failed.

use std::sync::Arc;

/// Why a cluster operation failed.
///
/// The variants caused by another error carry it as their
/// [`source`](std::error::Error::source) (from the Redis adapter, usually a
/// `redis::RedisError`; downcast it to inspect it), shared so that the error
/// stays `Clone`; their messages do not repeat it. Errors compare equal when
/// their variants and fields do, sources by their text.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The cluster's service could not be reached when the adapter started.
    #[error("cannot connect to `{url}`")]
    Connect {
        /// Where the adapter tried to connect (without a password).
        url: String,
        /// Why: the client library's error, or the connection timed out.
        #[source]
        source: Arc<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The URL given to the adapter is not valid; the field is the client
    /// library's error.
    #[error("invalid cluster URL")]
    InvalidUrl(#[source] Arc<Box<dyn std::error::Error + Send + Sync>>),
    /// A command to the cluster's service failed (it went away, or answered
    /// with an error). Local delivery is not affected.
    #[error("cluster command `{op}` failed")]
    Command {
        /// What the adapter was doing.
        op: &'static str,
        /// Why: the client library's error, or a description.
        #[source]
        source: Arc<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The subscription connection was lost; the adapter reconnects and
    /// subscribes again on its own. The field says why.
    #[error("cluster subscription lost")]
    SubscriptionLost(#[source] Arc<Box<dyn std::error::Error + Send + Sync>>),
    /// A message from another node could not be read (another version of
    /// liweb, or something else publishing on liweb's topics); the field
    /// says what is wrong with it.
    #[error("unreadable cluster message: {0}")]
    BadMessage(String),
}

impl PartialEq for ClusterError {
    fn eq(&self, other: &Self) -> bool {
        use crate::error::same_source as same;
        use ClusterError::*;
        match self {
            Connect { url, source } => {
                matches!(other, Connect { url: u, source: s } if u == url && same(s, source))
            }
            InvalidUrl(source) => matches!(other, InvalidUrl(s) if same(s, source)),
            Command { op, source } => {
                matches!(other, Command { op: o, source: s } if o == op && same(s, source))
            }
            SubscriptionLost(source) => matches!(other, SubscriptionLost(s) if same(s, source)),
            BadMessage(what) => matches!(other, BadMessage(w) if w == what),
        }
    }
}

impl Eq for ClusterError {}

/// Receives the adapter's errors; see `RedisAdapter::on_error` (feature `redis`).
pub type ClusterErrorHook = std::sync::Arc<dyn Fn(&ClusterError) + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_with_a_cause_give_it_as_source_without_printing_it() {
        use std::error::Error as _;

        use crate::error::shared;

        let refused =
            || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused by peer");
        let errors = [
            (
                ClusterError::Connect {
                    url: "redis://host".into(),
                    source: shared(refused()),
                },
                "cannot connect to `redis://host`",
            ),
            (
                ClusterError::InvalidUrl(shared(refused())),
                "invalid cluster URL",
            ),
            (
                ClusterError::Command {
                    op: "publish",
                    source: shared(refused()),
                },
                "cluster command `publish` failed",
            ),
            (
                ClusterError::SubscriptionLost(shared(refused())),
                "cluster subscription lost",
            ),
        ];
        for (err, text) in errors {
            assert_eq!(err.to_string(), text);
            let source = err.source().expect("the variant has a source");
            let io = source.downcast_ref::<std::io::Error>();
            assert_eq!(
                io.map(std::io::Error::kind),
                Some(std::io::ErrorKind::ConnectionRefused),
                "{err:?}"
            );
            crate::error::assert_source_not_repeated(&err);
            assert_eq!(err.clone(), err);
        }

        let lost = |why: &str| ClusterError::SubscriptionLost(shared(why.to_owned()));
        assert_eq!(lost("closed"), lost("closed"));
        assert_ne!(lost("closed"), lost("timed out"));
        assert_ne!(lost("closed"), ClusterError::InvalidUrl(shared("closed")));
    }
}
