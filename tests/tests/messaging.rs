//! Conformance, section M (messaging), over real WebSocket sockets.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use liweb::{CloseCode, DisconnectReason, EmitError, ErrorCode, client::Incoming};
use liweb_tests::{
    Record, Role, Running, TestClient, TestIn, TestOut, WAIT, fence, next, next_event,
};
use tokio_tungstenite::tungstenite::Message;

/// The next `error` event, failing on anything else.
async fn next_error(client: &mut TestClient) -> liweb::ErrorPayload {
    match next(client).await {
        Incoming::Error(error) => error,
        other => panic!("expected an error event, got {other:?}"),
    }
}

fn handled(running: &Running) -> Vec<Record> {
    running
        .recorder
        .matching(|r| matches!(r, Record::Handled(..)))
}

/// Conformance M1.
#[tokio::test]
async fn m1_handlers_run_once_each_in_registration_order_with_the_payload() {
    let running = Running::start().await;
    let (mut client, _) = running.client().await;
    client
        .emit(TestIn::Say {
            text: "hi".into(),
            tags: vec!["a".into(), "b".into()],
        })
        .unwrap();
    fence(&mut client, "after say").await;
    assert_eq!(
        handled(&running),
        vec![
            Record::Handled("say_first", "hi|a,b".into()),
            Record::Handled("say_second", "hi".into()),
        ]
    );
}

/// Conformance M2.
#[tokio::test]
async fn m2_unknown_event_gets_an_error_naming_it_and_the_connection_stays_open() {
    let running = Running::start().await;
    let (mut client, _) = running.client().await;
    client
        .emit_raw(r#"{"event":"no_such_event","payload":{"x":1}}"#)
        .unwrap();
    let error = next_error(&mut client).await;
    assert_eq!(error.code, ErrorCode::UnknownEvent);
    assert_eq!(error.event.as_deref(), Some("no_such_event"));
    assert!(error.message.contains("no_such_event"), "{}", error.message);
    fence(&mut client, "still open").await;
    assert!(handled(&running).is_empty());
}

/// Conformance M3.
#[tokio::test]
async fn m3_payload_of_the_wrong_shape_gets_the_field_path_and_no_handler_runs() {
    let running = Running::start().await;
    let (mut client, _) = running.client().await;

    client
        .emit_raw(r#"{"event":"say","payload":{"text":"hi","tags":["ok",5]}}"#)
        .unwrap();
    let error = next_error(&mut client).await;
    assert_eq!(error.code, ErrorCode::BadPayload);
    assert_eq!(error.event.as_deref(), Some("say"));
    assert!(
        error.message.contains("tags[1]"),
        "the field path is named: {}",
        error.message
    );

    client
        .emit_raw(r#"{"event":"say","payload":{"tags":[]}}"#)
        .unwrap();
    let error = next_error(&mut client).await;
    assert_eq!(error.code, ErrorCode::BadPayload);
    assert!(
        error.message.contains("text"),
        "the missing field is named: {}",
        error.message
    );

    client
        .emit_raw(r#"{"event":"order","payload":"seven"}"#)
        .unwrap();
    let error = next_error(&mut client).await;
    assert_eq!(error.code, ErrorCode::BadPayload);
    assert_eq!(error.event.as_deref(), Some("order"));

    fence(&mut client, "still open").await;
    assert!(
        handled(&running).is_empty(),
        "no handler ran: {:?}",
        handled(&running)
    );
}

/// Conformance M4.
#[tokio::test]
async fn m4_frames_that_are_not_messages_get_an_error_and_never_panic() {
    let running = Running::start().await;
    let (mut client, _) = running.client().await;
    for bad in [
        "not json at all",
        "[1,2,3]",
        "42",
        r#"{"payload":{"text":"no event"}}"#,
        r#"{"event":7}"#,
        r#"{"event":"echo","payload":"x""#,
        "",
    ] {
        client.emit_raw(bad).unwrap();
        let error = next_error(&mut client).await;
        assert_eq!(error.code, ErrorCode::BadFrame, "for {bad:?}: {error:?}");
        assert_eq!(error.event, None);
    }
    // A unit event accepts a missing payload and `null`.
    client.emit_raw(r#"{"event":"ping"}"#).unwrap();
    assert_eq!(next_event(&mut client).await, TestOut::Pong);
    client
        .emit_raw(r#"{"event":"ping","payload":null}"#)
        .unwrap();
    assert_eq!(next_event(&mut client).await, TestOut::Pong);
    fence(&mut client, "still open").await;
}

/// Conformance M4.
#[tokio::test]
async fn m4_binary_frame_on_a_json_connection_gets_an_error() {
    let running = Running::start().await;
    let (mut socket, _) = tokio_tungstenite::connect_async(running.url())
        .await
        .unwrap();
    socket
        .send(Message::binary(vec![0x82, 0xa1, 0x61]))
        .await
        .unwrap();
    socket
        .send(Message::text(r#"{"event":"echo","payload":"after"}"#))
        .await
        .unwrap();
    let mut texts = Vec::new();
    while texts.len() < 2 {
        match tokio::time::timeout(WAIT, socket.next()).await.unwrap() {
            Some(Ok(Message::Text(text))) => {
                texts.push(serde_json::from_str::<serde_json::Value>(&text).unwrap())
            }
            Some(Ok(_)) => {}
            other => panic!("connection ended: {other:?}"),
        }
    }
    assert_eq!(texts[0]["event"], "error");
    assert_eq!(texts[0]["payload"]["code"], "unsupported_frame");
    assert_eq!(
        texts[1],
        serde_json::json!({"event": "echoed", "payload": "after"})
    );
}

/// Conformance M5.
#[tokio::test]
async fn m5_frame_over_the_limit_closes_with_the_too_large_code() {
    let running = Running::start_with(|builder| builder.max_frame_size(1024)).await;
    let (mut client, id) = running.client().await;
    // Just under the limit passes.
    let fits = "a".repeat(1024 - r#"{"event":"echo","payload":""}"#.len());
    client.emit(TestIn::Echo(fits.clone())).unwrap();
    assert_eq!(next_event(&mut client).await, TestOut::Echoed(fits));

    client.emit(TestIn::Echo("a".repeat(64 * 1024))).unwrap();
    match next(&mut client).await {
        Incoming::Closed(Some((code, _))) => assert_eq!(code, CloseCode::TooLarge),
        other => panic!("expected a 1009 close, got {other:?}"),
    }
    assert_eq!(
        running.recorder.disconnected(id).await,
        DisconnectReason::ServerClosed(CloseCode::TooLarge)
    );
    // The server still serves others.
    let (mut other, _) = running.client().await;
    fence(&mut other, "server alive").await;
}

/// Conformance M6.
#[tokio::test]
async fn m6_handler_error_reaches_the_error_hook_and_later_handlers_still_run() {
    let running = Running::start().await;
    let (mut client, id) = running.client().await;
    client.emit(TestIn::Fail).unwrap();
    fence(&mut client, "after fail").await;
    let records = running.recorder.records();
    let errors: Vec<_> = records
        .iter()
        .filter(|r| matches!(r, Record::Error { .. }))
        .collect();
    assert_eq!(
        errors,
        vec![&Record::Error {
            conn: id,
            event: Some("fail"),
            error: "handler failed: boom".into()
        }]
    );
    // Documented: the other handlers of the event run after an error.
    assert!(records.contains(&Record::Handled("fail_second", String::new())));
}

/// Conformance M7.
#[tokio::test]
async fn m7_handler_panic_is_caught_and_reported_and_everything_keeps_working() {
    let running = Running::start().await;
    let (mut client, id) = running.client().await;
    let (mut bystander, _) = running.client().await;
    client.emit(TestIn::Panic).unwrap();
    fence(&mut client, "the panicking connection still works").await;
    fence(&mut bystander, "other connections still work").await;
    let errors = running
        .recorder
        .matching(|r| matches!(r, Record::Error { .. }));
    assert_eq!(
        errors,
        vec![Record::Error {
            conn: id,
            event: Some("panic"),
            error: "handler panicked: handler panicked on purpose".into()
        }]
    );
    assert_eq!(running.server.connection_count(), 2);
}

/// Conformance M8.
#[tokio::test]
async fn m8_events_of_one_connection_are_handled_in_arrival_order() {
    let running = Running::start().await;
    let (mut client, _) = running.client().await;
    const N: u32 = 120;
    for n in 0..N {
        client.emit(TestIn::Order(n)).unwrap();
    }
    for n in 0..N {
        assert_eq!(next_event(&mut client).await, TestOut::Ordered(n));
    }
    let order: Vec<_> = running
        .recorder
        .matching(|r| matches!(r, Record::Handled("order", _)))
        .into_iter()
        .map(|r| match r {
            Record::Handled(_, n) => n.parse::<u32>().unwrap(),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(order, (0..N).collect::<Vec<_>>());
}

/// Conformance M9.
#[tokio::test]
async fn m9_emit_delivers_exactly_one_event_frame() {
    let running = Running::start().await;
    let (mut socket, _) = tokio_tungstenite::connect_async(running.url())
        .await
        .unwrap();
    socket
        .send(Message::text(r#"{"event":"echo","payload":"one"}"#))
        .await
        .unwrap();
    socket
        .send(Message::text(r#"{"event":"echo","payload":"two"}"#))
        .await
        .unwrap();
    let mut frames = Vec::new();
    while frames.len() < 2 {
        match tokio::time::timeout(WAIT, socket.next()).await.unwrap() {
            Some(Ok(Message::Text(text))) => frames.push(text.as_str().to_owned()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // Each emit is one frame holding exactly `{"event","payload"}`, and the
    // first reply is followed directly by the second.
    assert_eq!(
        frames,
        [
            r#"{"event":"echoed","payload":"one"}"#,
            r#"{"event":"echoed","payload":"two"}"#
        ]
    );
}

/// Conformance M10.
#[tokio::test]
async fn m10_broadcast_reaches_everyone_and_broadcast_except_skips_the_sender() {
    let running = Running::start().await;
    let (mut a, _) = running.client().await;
    let (mut b, _) = running.client().await;
    let (mut c, _) = running.client().await;

    a.emit(TestIn::BroadcastAll("to all".into())).unwrap();
    for client in [&mut a, &mut b, &mut c] {
        assert_eq!(
            next_event(client).await,
            TestOut::Broadcast("to all".into())
        );
    }

    a.emit(TestIn::BroadcastOthers("not a".into())).unwrap();
    for client in [&mut b, &mut c] {
        assert_eq!(next_event(client).await, TestOut::Broadcast("not a".into()));
    }
    // The broadcast was queued before the echo answer would be: if `a` had
    // received it, it would come before the fence.
    fence(&mut a, "sender skipped").await;
}

/// Conformance M11.
#[tokio::test]
async fn m11_broadcast_with_a_predicate_reaches_exactly_the_matching_connections() {
    let running = Running::start().await;
    let (mut admin1, _) = running.client().await;
    let (mut member, _) = running.client().await;
    let (mut admin2, _) = running.client().await;
    let (mut unset, _) = running.client().await;
    admin1.emit(TestIn::SetRole(Role::Admin)).unwrap();
    member.emit(TestIn::SetRole(Role::Member)).unwrap();
    admin2.emit(TestIn::SetRole(Role::Admin)).unwrap();
    for client in [&mut admin1, &mut member, &mut admin2] {
        fence(client, "role set").await;
    }

    member
        .emit(TestIn::BroadcastAdmins("admins only".into()))
        .unwrap();
    for admin in [&mut admin1, &mut admin2] {
        assert_eq!(
            next_event(admin).await,
            TestOut::Broadcast("admins only".into())
        );
    }
    for other in [&mut member, &mut unset] {
        fence(other, "no admin broadcast").await;
    }
}

/// Conformance M15.
#[tokio::test]
async fn m15_emit_to_a_closed_connection_returns_an_error_and_does_not_panic() {
    let running = Running::start().await;
    let (client, id) = running.client().await;
    let conn = running.recorder.conns().pop().unwrap();
    assert!(conn.emit(TestOut::Pong).is_ok());
    drop(client);
    running
        .recorder
        .wait_until("on_disconnect", |records| {
            records
                .iter()
                .any(|r| matches!(r, Record::Disconnected(d, _) if *d == id))
        })
        .await;
    assert!(conn.is_closed());
    assert!(matches!(conn.emit(TestOut::Pong), Err(EmitError::Closed)));
    assert!(
        !conn.close(CloseCode::Normal, "again"),
        "closing twice is a no-op"
    );
    assert_eq!(
        running.server.broadcast(TestOut::Pong).unwrap(),
        0,
        "no one is left to reach"
    );
}

#[tokio::test]
async fn slow_consumer_is_closed_by_policy_and_others_keep_receiving() {
    // L1 in part: a client that never reads is closed once its queue is over
    // the byte limit; a reading client gets every message.
    let running = Running::start_with(|builder| {
        builder
            .max_queue_bytes(256 * 1024)
            .close_timeout(Duration::from_millis(200))
    })
    .await;
    // A raw TCP connection that performs the handshake and then never reads.
    let raw = stalled_raw_client(running.addr).await;
    let records = running
        .recorder
        .wait_until("the raw client to connect", |records| {
            records.iter().any(|r| matches!(r, Record::Connected(_)))
        })
        .await;
    let Some(Record::Connected(raw_id)) = records.first().cloned() else {
        panic!("the first record is the raw client's connect: {records:?}");
    };

    let (mut reader, _) = running.client().await;
    // 400 messages of 16 KiB: 6.4 MiB, far over the stalled client's socket
    // buffers plus its 256 KiB queue.
    reader
        .emit(TestIn::Flood {
            size: 16 * 1024,
            count: 400,
        })
        .unwrap();
    for _ in 0..400 {
        match next_event(&mut reader).await {
            TestOut::Flood(text) => assert_eq!(text.len(), 16 * 1024),
            other => panic!("unexpected {other:?}"),
        }
    }
    let records = running
        .recorder
        .wait_until("the stalled client to be closed", |records| {
            records
                .iter()
                .any(|r| matches!(r, Record::Disconnected(id, _) if *id == raw_id))
        })
        .await;
    assert!(
        records.contains(&Record::Disconnected(
            raw_id,
            DisconnectReason::ServerClosed(CloseCode::SlowConsumer)
        )),
        "{records:#?}"
    );
    drop(raw);
}

/// A WebSocket handshake over a raw TCP stream that then never reads.
async fn stalled_raw_client(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let mut byte = [0u8; 1];
    tokio::time::timeout(WAIT, async {
        while !response.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).await.unwrap();
            response.push(byte[0]);
        }
    })
    .await
    .unwrap();
    assert!(
        response.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    stream
}
