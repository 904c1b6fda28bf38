//! Conformance, section M (messaging): each test is written once and runs
//! on every transport × codec combination (`m1_...::ws_json`,
//! `m1_...::tcp_bincode`, ...).

use std::time::Duration;

use liweb::{CloseCode, CodecKind, DisconnectReason, EmitError, ErrorCode, client::Incoming};
use liweb_tests::{
    Record, Role, Running, TestClient, TestIn, TestOut, WAIT, conformance, encode, fence, next,
    next_event,
};
use serde_json::json;

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

/// Sends a message of bytes as they are: a text frame for JSON, a binary
/// frame for the binary codecs (on TCP, a `MESSAGE` either way).
fn send_raw(client: &TestClient, bytes: Vec<u8>) {
    match (client.codec(), String::from_utf8(bytes)) {
        (CodecKind::Json, Ok(text)) => client.emit_raw(text),
        (_, Ok(text)) => client.emit_raw_binary(text.into_bytes()),
        (_, Err(err)) => client.emit_raw_binary(err.into_bytes()),
    }
    .unwrap();
}

conformance! {
    /// Conformance M1.
    async fn m1_handlers_run_once_each_in_registration_order_with_the_payload(combo) {
        let running = Running::start().await;
        let (mut client, _) = running.client_on(combo).await;
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
        // A unit event and its answer.
        client.emit(TestIn::Ping).unwrap();
        assert_eq!(next_event(&mut client).await, TestOut::Pong);
    }

    /// Conformance M2.
    async fn m2_unknown_event_gets_an_error_naming_it_and_the_connection_stays_open(combo) {
        let running = Running::start().await;
        let (mut client, _) = running.client_on(combo).await;
        send_raw(&client, encode(combo.codec, "no_such_event", None, &json!({"x": 1})));
        let error = next_error(&mut client).await;
        assert_eq!(error.code, ErrorCode::UnknownEvent);
        assert_eq!(error.event.as_deref(), Some("no_such_event"));
        assert!(error.message.contains("no_such_event"), "{}", error.message);
        fence(&mut client, "still open").await;
        assert!(handled(&running).is_empty());
    }

    /// Conformance M3.
    async fn m3_payload_of_the_wrong_shape_gets_bad_payload_and_no_handler_runs(combo) {
        let running = Running::start().await;
        let (mut client, _) = running.client_on(combo).await;

        // `say` wants `{text, tags}`.
        let wrong = json!({"text": "hi", "tags": ["ok", 5]});
        send_raw(&client, encode(combo.codec, "say", None, &wrong));
        let error = next_error(&mut client).await;
        assert_eq!(error.code, ErrorCode::BadPayload);
        assert_eq!(error.event.as_deref(), Some("say"));
        if combo.self_describing() {
            assert!(
                error.message.contains("tags[1]"),
                "the field path is named: {}",
                error.message
            );
        } else {
            assert!(error.message.starts_with("invalid payload"), "{}", error.message);
        }

        if combo.self_describing() {
            send_raw(&client, encode(combo.codec, "say", None, &json!({"tags": []})));
            let error = next_error(&mut client).await;
            assert_eq!(error.code, ErrorCode::BadPayload);
            assert!(
                error.message.contains("text"),
                "the missing field is named: {}",
                error.message
            );
        }

        send_raw(&client, encode(combo.codec, "say", None, &("hi", 5u8)));
        let error = next_error(&mut client).await;
        assert_eq!(error.code, ErrorCode::BadPayload);
        assert_eq!(error.event.as_deref(), Some("say"));

        send_raw(&client, encode(combo.codec, "order", None, "seven"));
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
    async fn m4_messages_that_are_not_messages_get_an_error_and_never_panic(combo) {
        let running = Running::start().await;
        let (mut client, _) = running.client_on(combo).await;
        let garbage: Vec<Vec<u8>> = match combo.codec {
            CodecKind::Json => [
                "not json at all",
                "[1,2,3]",
                "42",
                r#"{"payload":{"text":"no event"}}"#,
                r#"{"event":7}"#,
                r#"{"event":"echo","payload":"x""#,
                "",
            ]
            .map(|text| text.as_bytes().to_vec())
            .to_vec(),
            _ => vec![
                vec![],
                vec![0xc1],
                vec![0xff; 64],
                vec![0xdf, 0xff, 0xff, 0xff, 0xff],
                vec![0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 1, 2],
                b"{\"event\":\"echo\",\"payload\":\"json\"}".to_vec(),
            ],
        };
        for bad in garbage {
            send_raw(&client, bad.clone());
            let error = next_error(&mut client).await;
            assert_eq!(error.code, ErrorCode::BadFrame, "for {bad:?}: {error:?}");
            assert_eq!(error.event, None);
        }
        if combo.codec == CodecKind::Json {
            // A unit event accepts a missing payload and `null`.
            client.emit_raw(r#"{"event":"ping"}"#).unwrap();
            assert_eq!(next_event(&mut client).await, TestOut::Pong);
            client.emit_raw(r#"{"event":"ping","payload":null}"#).unwrap();
            assert_eq!(next_event(&mut client).await, TestOut::Pong);
        }
        fence(&mut client, "still open").await;
        assert!(handled(&running).is_empty());
        assert!(
            running
                .recorder
                .matching(|r| matches!(r, Record::Error { .. }))
                .is_empty()
        );
    }

    /// Conformance M4: a WebSocket frame of the other kind (binary on a JSON
    /// connection, text on a binary one). TCP has one kind of message.
    on [ws_json, ws_msgpack, ws_bincode]
    async fn m4_a_frame_of_the_wrong_kind_gets_unsupported_frame(combo) {
        let running = Running::start().await;
        let (mut client, _) = running.client_on(combo).await;
        match combo.codec {
            CodecKind::Json => client.emit_raw_binary(vec![0x82, 0xa1, 0x61]),
            _ => client.emit_raw(r#"{"event":"echo","payload":"text"}"#),
        }
        .unwrap();
        let error = next_error(&mut client).await;
        assert_eq!(error.code, ErrorCode::UnsupportedFrame);
        fence(&mut client, "after").await;
        assert!(handled(&running).is_empty());
    }

    /// Conformance M5.
    async fn m5_a_message_over_the_limit_closes_with_the_too_large_code(combo) {
        const LIMIT: usize = 1024;
        let running = Running::start_with(|builder| builder.max_frame_size(LIMIT)).await;
        let (mut client, id) = running.client_on(combo).await;
        // The largest echo that fits the limit passes.
        let fits = (0..LIMIT)
            .rev()
            .map(|n| "a".repeat(n))
            .find(|text| encode(combo.codec, "echo", None, text).len() <= LIMIT)
            .unwrap();
        assert!(encode(combo.codec, "echo", None, &fits).len() >= LIMIT - 4);
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
        let (mut other, _) = running.client_on(combo).await;
        fence(&mut other, "server alive").await;
    }

    /// Conformance M6.
    async fn m6_handler_error_reaches_the_error_hook_and_later_handlers_still_run(combo) {
        let running = Running::start().await;
        let (mut client, id) = running.client_on(combo).await;
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
                // The handler's own error ("boom") is the source.
                error: "handler failed".into()
            }]
        );
        // Documented: the other handlers of the event run after an error.
        assert!(records.contains(&Record::Handled("fail_second", String::new())));
    }

    /// Conformance M7.
    async fn m7_handler_panic_is_caught_and_reported_and_everything_keeps_working(combo) {
        let running = Running::start().await;
        let (mut client, id) = running.client_on(combo).await;
        let (mut bystander, _) = running.client_on(combo).await;
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
    async fn m8_events_of_one_connection_are_handled_in_arrival_order(combo) {
        // More events at once than the default rate limit's burst.
        let running = Running::start_with(|builder| builder.max_events_per_second(None)).await;
        let (mut client, _) = running.client_on(combo).await;
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
    async fn m9_emit_delivers_exactly_one_event_message(combo) {
        let running = Running::start().await;
        let (mut peer, _) = running.peer_on(combo).await;
        peer.emit("echo", "one").await;
        peer.emit("echo", "two").await;
        // Each emit is one message holding exactly the event and its payload,
        // and the first reply is followed directly by the second.
        for text in ["one", "two"] {
            let msg = peer.next().await;
            assert_eq!(msg.bytes(), encode(combo.codec, "echoed", None, text));
            assert_eq!(msg.event(), "echoed");
            assert_eq!(msg.ack(), None);
            assert_eq!(msg.payload::<String>(), text);
            if combo.self_describing() {
                assert_eq!(msg.json(), json!({"event": "echoed", "payload": text}));
            }
        }
    }

    /// Conformance M10.
    async fn m10_broadcast_reaches_everyone_and_broadcast_except_skips_the_sender(combo) {
        let running = Running::start().await;
        let (mut a, _) = running.client_on(combo).await;
        let (mut b, _) = running.client_on(combo).await;
        let (mut c, _) = running.client_on(combo).await;

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
    async fn m11_broadcast_with_a_predicate_reaches_exactly_the_matching_connections(combo) {
        let running = Running::start().await;
        let (mut admin1, _) = running.client_on(combo).await;
        let (mut member, _) = running.client_on(combo).await;
        let (mut admin2, _) = running.client_on(combo).await;
        let (mut unset, _) = running.client_on(combo).await;
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
    async fn m15_emit_to_a_closed_connection_returns_an_error_and_does_not_panic(combo) {
        let running = Running::start().await;
        let (client, id) = running.client_on(combo).await;
        let conn = running.conn(id);
        assert!(conn.emit(TestOut::Pong).is_ok());
        drop(client);
        running.recorder.disconnected(id).await;
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
