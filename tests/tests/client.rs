//! The typed Rust client: listeners, the stream, errors and close.

use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use liweb::{CloseCode, ErrorCode, client::Incoming};
use liweb_tests::{Running, TestIn, TestOut, WAIT, fence, next, next_event, test_out};

#[tokio::test]
async fn typed_listeners_get_their_events_and_recv_gets_the_rest() {
    let running = Running::start().await;
    let (mut client, _) = running.client().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    {
        let seen = Arc::clone(&seen);
        client.on::<test_out::Ordered>(move |n: u32| {
            seen.lock().unwrap().push(n);
            let _ = tx.send(n);
        });
    }
    client.emit(TestIn::Order(1)).unwrap();
    client.emit(TestIn::Order(2)).unwrap();
    for expected in [1, 2] {
        let n = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, expected);
    }
    // Events with a listener are not queued for `recv`: the next item is the fence.
    fence(&mut client, "listener events skipped recv").await;
    assert_eq!(*seen.lock().unwrap(), [1, 2]);
}

#[tokio::test]
async fn the_client_is_a_stream_of_incoming_items() {
    let running = Running::start().await;
    let (mut client, _) = running.client().await;
    client.emit(TestIn::Ping).unwrap();
    client.emit_raw(r#"{"event":"nope"}"#).unwrap();
    let first = tokio::time::timeout(WAIT, client.next()).await.unwrap();
    assert!(
        matches!(first, Some(Incoming::Event(TestOut::Pong))),
        "{first:?}"
    );
    match tokio::time::timeout(WAIT, client.next()).await.unwrap() {
        Some(Incoming::Error(error)) => assert_eq!(error.code, ErrorCode::UnknownEvent),
        other => panic!("expected an error event, got {other:?}"),
    }
}

#[tokio::test]
async fn closing_from_the_client_ends_the_stream_with_closed() {
    let running = Running::start().await;
    let (mut client, _) = running.client().await;
    assert_eq!(
        {
            client.emit(TestIn::Echo("x".into())).unwrap();
            next_event(&mut client).await
        },
        TestOut::Echoed("x".into())
    );
    client.close(CloseCode::Normal, "done").unwrap();
    assert!(matches!(next(&mut client).await, Incoming::Closed(_)));
    let after = tokio::time::timeout(WAIT, client.recv()).await.unwrap();
    assert!(after.is_none(), "nothing follows `Closed`: {after:?}");
    assert!(
        client.emit(TestIn::Ping).is_err(),
        "emitting after close fails"
    );
}
