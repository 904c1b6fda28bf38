//! Conformance, section C (connection), over real WebSocket sockets.

use futures_util::{SinkExt, StreamExt};
use liweb::{CloseCode, DisconnectReason, client::Incoming};
use liweb_tests::{Record, Running, TestIn, WAIT, fence, next};
use tokio_tungstenite::{
    MaybeTlsStream,
    tungstenite::{self, Message, client::IntoClientRequest},
};

/// Conformance C1.
#[tokio::test]
async fn c1_connect_fires_on_connect_once_with_a_uuid_id() {
    let running = Running::start().await;
    let (mut client, id) = running.client().await;

    assert_eq!(id.as_uuid().get_version_num(), 4, "the id is a v4 UUID");
    assert_eq!(running.server.connection_count(), 1);
    assert!(running.server.get(id).is_some());
    // A round trip proves the connection is live; only then count the hooks.
    fence(&mut client, "after connect").await;
    let connects = running
        .recorder
        .matching(|r| matches!(r, Record::Connected(_)));
    assert_eq!(connects, vec![Record::Connected(id)]);
}

/// Conformance C2.
#[tokio::test]
async fn c2_close_fires_on_disconnect_exactly_once_and_count_returns_to_zero() {
    let running = Running::start().await;
    let (mut client, id) = running.client().await;
    fence(&mut client, "before close").await;

    client.close(CloseCode::Normal, "bye").unwrap();
    assert!(matches!(next(&mut client).await, Incoming::Closed(_)));
    let records = running
        .recorder
        .wait_until("on_disconnect", |records| {
            records
                .iter()
                .any(|r| matches!(r, Record::Disconnected(..)))
        })
        .await;
    let disconnects: Vec<_> = records
        .iter()
        .filter(|r| matches!(r, Record::Disconnected(..)))
        .collect();
    assert_eq!(
        disconnects,
        vec![&Record::Disconnected(
            id,
            DisconnectReason::ClientClosed(Some((CloseCode::Normal, "bye".to_owned())))
        )]
    );
    assert_eq!(running.server.connection_count(), 0);
    assert!(running.server.get(id).is_none());

    // A second client connecting and leaving adds exactly one more disconnect.
    let (other, _) = running.client().await;
    drop(other);
    let records = running
        .recorder
        .wait_until("the second disconnect", |records| {
            records
                .iter()
                .filter(|r| matches!(r, Record::Disconnected(..)))
                .count()
                == 2
        })
        .await;
    assert_eq!(
        records
            .iter()
            .filter(|r| matches!(r, Record::Disconnected(id2, _) if *id2 == id))
            .count(),
        1
    );
    assert_eq!(running.server.connection_count(), 0);
}

/// Conformance C5.
#[tokio::test]
async fn c5_other_paths_are_not_upgraded() {
    let running = Running::start().await;
    let url = format!("ws://{}/elsewhere", running.addr);
    let result = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .unwrap();
    match result {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 404),
        other => panic!("expected an HTTP 404, got {other:?}"),
    }
    // A plain GET on the right path is no upgrade either.
    let (_client, _) = running.client().await;
    assert_eq!(
        running
            .recorder
            .matching(|r| matches!(r, Record::Connected(_)))
            .len(),
        1
    );
}

/// Conformance C6.
#[tokio::test]
async fn c6_metadata_has_headers_remote_address_and_query_as_sent() {
    let running = Running::start().await;
    let mut request = format!("ws://{}/ws?token=abc&room=a%20b&flag", running.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-test", "Value 1".parse().unwrap());
    request
        .headers_mut()
        .append("x-multi", "one".parse().unwrap());
    request
        .headers_mut()
        .append("x-multi", "two".parse().unwrap());
    let (socket, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .unwrap()
        .unwrap();
    let local = match socket.get_ref() {
        MaybeTlsStream::Plain(stream) => stream.local_addr().unwrap(),
        _ => unreachable!("plain ws"),
    };
    running
        .recorder
        .wait_until("on_connect", |records| {
            records.iter().any(|r| matches!(r, Record::Connected(_)))
        })
        .await;
    let conn = running.recorder.conns().pop().unwrap();
    let meta = conn.meta();
    assert_eq!(meta.headers()["x-test"], "Value 1");
    let multi: Vec<_> = meta.headers().get_all("x-multi").iter().collect();
    assert_eq!(multi, ["one", "two"]);
    assert_eq!(meta.remote_addr(), Some(local));
    assert_eq!(meta.path(), "/ws");
    assert_eq!(meta.query(), Some("token=abc&room=a%20b&flag"));
    assert_eq!(meta.query_param("token").as_deref(), Some("abc"));
    assert_eq!(meta.query_param("room").as_deref(), Some("a b"));
    assert_eq!(meta.query_param("flag").as_deref(), Some(""));
    assert_eq!(meta.query_param("missing"), None);
    assert_eq!(meta.transport(), liweb::Transport::WebSocket);
    assert_eq!(meta.codec(), liweb::CodecKind::Json);
    drop(socket);
}

/// Conformance C7.
#[tokio::test]
async fn c7_server_close_code_and_reason_reach_the_client() {
    let running = Running::start().await;
    let (mut client, id) = running.client().await;
    client
        .emit(TestIn::CloseMe {
            code: 4321,
            reason: "see you".into(),
        })
        .unwrap();
    match next(&mut client).await {
        Incoming::Closed(Some((code, reason))) => {
            assert_eq!(code, CloseCode::Other(4321));
            assert_eq!(code.as_u16(), 4321);
            assert_eq!(reason, "see you");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    assert_eq!(
        running.recorder.disconnected(id).await,
        DisconnectReason::ServerClosed(CloseCode::Other(4321))
    );
}

/// Conformance C7.
#[tokio::test]
async fn c7_close_with_a_standard_code_over_a_raw_socket() {
    // The same promise checked below the Rust client, on the raw close frame.
    let running = Running::start().await;
    let (mut socket, _) = tokio_tungstenite::connect_async(running.url())
        .await
        .unwrap();
    socket
        .send(Message::text(
            r#"{"event":"close_me","payload":{"code":1008,"reason":"policy"}}"#,
        ))
        .await
        .unwrap();
    let frame = tokio::time::timeout(WAIT, async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await
    .unwrap()
    .expect("a close frame with a code");
    assert_eq!(u16::from(frame.code), 1008);
    assert_eq!(frame.reason.as_str(), "policy");
}
