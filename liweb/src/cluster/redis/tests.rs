//! The adapter's pure parts: key names, error chains, presence merging.

use super::{
    node::command_error,
    presence::{Stored, merge_presence},
    store::{backend, parse},
    tasks::ReconnectFailed,
    *,
};
use crate::{presence::PresenceKey, room::key::RoomKey};

#[test]
fn room_names_keep_channel_and_room_apart() {
    for (channel, room) in [("a:b", "c"), ("a", "b:c"), ("", ""), ("ch", "é:1")] {
        let key = RoomKey::new(channel, room);
        assert_eq!(Keys::parse_room(&Keys::room_name(&key)), Some(key));
    }
    assert_ne!(
        Keys::room_name(&RoomKey::new("a:b", "c")),
        Keys::room_name(&RoomKey::new("a", "b:c"))
    );
}

#[test]
fn passwords_do_not_reach_error_messages() {
    assert_eq!(
        redacted("redis://user:secret@host:6379/0"),
        "redis://user:***@host:6379/0"
    );
    assert_eq!(redacted("redis://host:6379"), "redis://host:6379");
}

#[test]
fn redis_errors_are_the_source_of_cluster_and_state_errors() {
    let failure = || redis::RedisError::from((redis::ErrorKind::IoError, "broken pipe"));
    let cluster = command_error("publish", failure());
    let state = backend(failure());
    for err in [&cluster as &(dyn std::error::Error + 'static), &state] {
        assert!(!err.to_string().contains("broken pipe"), "{err}");
        let source = err.source().expect("a redis failure has a source");
        let redis = source.downcast_ref::<redis::RedisError>();
        assert_eq!(
            redis.map(redis::RedisError::kind),
            Some(redis::ErrorKind::IoError)
        );
        crate::error::assert_source_not_repeated(err);
    }
}

#[test]
fn invalid_json_in_the_store_is_a_chain_of_three() {
    use std::error::Error as _;

    let err = parse("topic", "{nope").unwrap_err();
    assert_eq!(err.to_string(), "the state store failed");
    let invalid = err.source().expect("the backend error has a source");
    assert_eq!(invalid.to_string(), "state key `topic` holds invalid JSON");
    let json = invalid.source().expect("the invalid JSON has a source");
    assert!(json.is::<serde_json::Error>(), "{json:?}");
    crate::error::assert_source_not_repeated(&err);
}

#[tokio::test]
async fn an_invalid_url_gives_the_client_error_as_source() {
    use std::error::Error as _;

    let err = RedisAdapter::connect("not a url").await.unwrap_err();
    assert!(matches!(err, ClusterError::InvalidUrl(_)), "{err:?}");
    assert_eq!(err.to_string(), "invalid cluster URL");
    assert!(
        err.source()
            .is_some_and(|source| source.is::<redis::RedisError>())
    );
}

#[test]
fn a_failed_reconnection_says_so_before_its_cause() {
    use std::error::Error as _;

    let err = ClusterError::SubscriptionLost(shared(ReconnectFailed("timed out".into())));
    let reconnect = err.source().expect("a lost subscription has a source");
    assert_eq!(reconnect.to_string(), "reconnecting failed");
    let cause = reconnect.source().map(ToString::to_string);
    assert_eq!(cause.as_deref(), Some("timed out"));
    crate::error::assert_source_not_repeated(&err);
}

#[test]
fn presence_merges_connections_of_one_key_across_nodes() {
    let ada = |joined_at, last_seen, activity: Option<&str>| Stored {
        key: "u:ada".into(),
        joined_at,
        last_seen,
        activity: activity.map(str::to_owned),
    };
    let records = vec![
        (true, "c1".into(), ada(10, 20, None)),
        (true, "c2".into(), ada(5, 30, Some("typing"))),
        (false, "~u:ada".into(), ada(1, 2, None)),
        (
            false,
            "~u:bob".into(),
            Stored {
                key: "u:bob".into(),
                joined_at: 1,
                last_seen: 90,
                activity: None,
            },
        ),
        (
            false,
            "~u:old".into(),
            Stored {
                key: "u:old".into(),
                joined_at: 1,
                last_seen: 1,
                activity: None,
            },
        ),
    ];
    let merged = merge_presence(records, 100, 50);
    assert_eq!(merged.len(), 2, "{merged:?}");
    assert_eq!(merged[0].key, PresenceKey::user("ada"));
    assert!(merged[0].online);
    assert_eq!(merged[0].connections, 2);
    assert_eq!(merged[0].joined_at, 5);
    assert_eq!(merged[0].activity.as_deref(), Some("typing"));
    assert_eq!(merged[1].key, PresenceKey::user("bob"));
    assert!(!merged[1].online);
}
