//! The life of connections and events around the handlers, over real
//! sockets: the upgrade hook (C9) and graceful shutdown (C8) on every
//! transport × codec combination, middleware and its error policies,
//! handler guards, `Conn::closed` and the `on_message` hook.

use std::{
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use liweb::{
    CloseCode, Conn, DisconnectReason, State, UpgradeRejection,
    client::Incoming,
    middleware::{Envelope, ErrorPolicy, MiddlewareOptions, Next},
};
use liweb_tests::{
    Link, Record, Recorder, Refusal, Running, TestIn, TestOut, WAIT, conformance, connect, fence,
    next, next_event, test_in,
};
use serde_json::json;
use tokio::sync::mpsc::{self, UnboundedSender};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type In = TestIn;
type Out = TestOut;

fn handled(running: &Running) -> Vec<Record> {
    running
        .recorder
        .matching(|r| matches!(r, Record::Handled(..)))
}

fn disconnects(running: &Running) -> Vec<Record> {
    running
        .recorder
        .matching(|r| matches!(r, Record::Disconnected(..)))
}

/// Conformance C9: the hook reads the upgrade request's headers, which
/// only WebSocket has; the next test covers every transport.
#[tokio::test]
async fn c9_an_upgrade_hook_refusal_is_an_http_error_and_no_connection() {
    let running = Running::start_with(|builder| {
        builder.on_upgrade(|meta: liweb::ConnMeta| async move {
            match meta.headers().get("x-key") {
                Some(key) if key == "open sesame" => Ok(()),
                Some(_) => Err(UpgradeRejection::new(
                    http::StatusCode::FORBIDDEN,
                    "wrong key",
                )),
                None => Err(UpgradeRejection::new(http::StatusCode::UNAUTHORIZED, "no")),
            }
        })
    })
    .await;
    assert_eq!(
        connect(running.url()).await.err(),
        Some(http::StatusCode::UNAUTHORIZED)
    );
    let mut request = running.url().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("x-key", "guess".parse().unwrap());
    assert_eq!(
        connect(request).await.err(),
        Some(http::StatusCode::FORBIDDEN)
    );
    let stats = running.server.stats();
    assert_eq!((stats.rejected_upgrade, stats.live), (2, 0));

    let mut request = running.url().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("x-key", "open sesame".parse().unwrap());
    let mut client = connect(request).await.expect("the hook lets it in");
    client.fence("accepted").await;
    // Only the accepted connection reached any hook.
    let records = running.recorder.records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(matches!(records[0], Record::Connected(_)));
}

/// An upgrade hook that refuses the first attempt, panics on the second and
/// admits the rest.
fn refuse_then_panic_then_admit(
    builder: liweb::ServerBuilder<In, Out>,
) -> liweb::ServerBuilder<In, Out> {
    let attempts = Arc::new(AtomicUsize::new(0));
    builder.on_upgrade(move |_meta: liweb::ConnMeta| {
        let attempt = attempts.fetch_add(1, Ordering::SeqCst);
        async move {
            match attempt {
                0 => Err(UpgradeRejection::new(
                    http::StatusCode::FORBIDDEN,
                    "wrong key",
                )),
                1 => panic!("the upgrade hook panicked on purpose"),
                _ => Ok(()),
            }
        }
    })
}

conformance! {
    /// Conformance C9: a refusal is an HTTP error on WebSocket and a
    /// `CLOSE` 1008 with the hook's message on TCP; a panicking hook is a
    /// refusal too (500 on WebSocket) and the server goes on.
    async fn c9_an_upgrade_hook_refusal_or_panic_refuses_and_no_connection_is_created(combo) {
        let running = Running::start_with(refuse_then_panic_then_admit).await;
        let refused = running.try_open_peer(combo).await.err();
        let panicked = running.try_open_peer(combo).await.err();
        match combo.link {
            Link::WebSocket => {
                assert_eq!(refused, Some(Refusal::Http(http::StatusCode::FORBIDDEN)));
                assert_eq!(
                    panicked,
                    Some(Refusal::Http(http::StatusCode::INTERNAL_SERVER_ERROR))
                );
            }
            Link::Tcp => {
                assert_eq!(refused, Some(Refusal::Close(1008, "wrong key".to_owned())));
                assert!(
                    matches!(panicked, Some(Refusal::Close(1008, _))),
                    "{panicked:?}"
                );
            }
        }
        let stats = running.server.stats();
        assert_eq!((stats.rejected_upgrade, stats.live), (2, 0));
        assert!(running.recorder.records().is_empty(), "no hook fired");

        let (mut peer, id) = running.peer_on(combo).await;
        peer.fence("admitted").await;
        assert_eq!(running.recorder.records(), vec![Record::Connected(id)]);
    }

    /// Conformance C8.
    async fn c8_shutdown_sends_going_away_refuses_new_connections_and_fires_each_hook_once(combo) {
        let running = Running::start().await;
        let (mut first, first_id) = running.peer_on(combo).await;
        let (mut second, second_id) = running.peer_on(combo).await;

        let server = running.server.clone();
        let shutting_down = tokio::spawn(async move { server.shutdown(WAIT).await });
        for peer in [&mut first, &mut second] {
            let (code, reason) = peer.closed().await;
            assert_eq!(code, 1001);
            assert!(reason.contains("shutting down"), "{reason}");
        }
        assert!(running.server.is_shutting_down());
        match (combo.link, running.try_open_peer(combo).await.err()) {
            (Link::WebSocket, Some(Refusal::Http(status))) => {
                assert_eq!(status, http::StatusCode::SERVICE_UNAVAILABLE);
            }
            (Link::Tcp, Some(Refusal::Close(code, _))) => assert_eq!(code, 1001),
            (_, other) => panic!("expected a refusal, got {other:?}"),
        }
        first.close().await;
        second.close().await;
        tokio::time::timeout(WAIT, shutting_down)
            .await
            .expect("shutdown returns once every connection is gone")
            .unwrap();

        assert_eq!(running.server.stats().live, 0);
        assert_eq!(running.server.connection_count(), 0);
        let mut ended = disconnects(&running);
        ended.sort_by_key(|r| match r {
            Record::Disconnected(id, _) => u8::from(*id != first_id),
            _ => unreachable!(),
        });
        let going_away = DisconnectReason::ServerClosed(CloseCode::GoingAway);
        assert_eq!(
            ended,
            vec![
                Record::Disconnected(first_id, going_away.clone()),
                Record::Disconnected(second_id, going_away),
            ]
        );
        let stats = running.server.stats();
        assert_eq!(stats.rejected_shutdown, 1);
        assert_eq!(
            running
                .recorder
                .matching(|r| matches!(r, Record::Connected(_)))
                .len(),
            2,
            "the refused connection fired no hook"
        );
    }

    /// Conformance C8.
    async fn c8_shutdown_ends_a_connection_that_does_not_answer_by_the_deadline(combo) {
        const DEADLINE: Duration = Duration::from_millis(100);
        let running = Running::start().await;
        // This peer never reads, so it never answers the close.
        let (_silent, id) = running.peer_on(combo).await;
        let started = tokio::time::Instant::now();
        tokio::time::timeout(WAIT, running.server.shutdown(DEADLINE))
            .await
            .expect("shutdown is bounded by its deadline");
        assert!(started.elapsed() >= DEADLINE);
        assert_eq!(running.server.stats().live, 0);
        assert_eq!(
            disconnects(&running),
            vec![Record::Disconnected(
                id,
                DisconnectReason::ServerClosed(CloseCode::GoingAway)
            )]
        );
    }
}

/// A middleware step that records around the rest of the chain.
fn recording(
    recorder: &Recorder,
    name: &'static str,
) -> impl Fn(
    Envelope<Out>,
    Next<In, Out>,
) -> futures_util::future::BoxFuture<'static, Result<(), Infallible>>
+ Send
+ Sync
+ 'static {
    let recorder = recorder.clone();
    move |envelope: Envelope<Out>, next: Next<In, Out>| {
        let recorder = recorder.clone();
        Box::pin(async move {
            let event = envelope.event();
            recorder.push(Record::Hook(name, format!("before {event}")));
            next.run(envelope).await;
            recorder.push(Record::Hook(name, format!("after {event}")));
            Ok(())
        })
    }
}

/// Middleware runs in the order added, around the handlers.
#[tokio::test]
async fn middleware_runs_in_order_around_the_handlers() {
    let recorder = Recorder::default();
    let (outer, inner) = (recording(&recorder, "outer"), recording(&recorder, "inner"));
    let running = Running::start_recording(recorder, move |builder| {
        builder.middleware(outer).middleware(inner)
    })
    .await;
    let (mut client, _) = running.raw_client().await;
    client.emit("say", json!({ "text": "hi" })).await;
    client.fence("after say").await;
    let records = running
        .recorder
        .matching(|r| matches!(r, Record::Hook(..) | Record::Handled(..)));
    assert_eq!(
        &records[..6],
        &[
            Record::Hook("outer", "before say".into()),
            Record::Hook("inner", "before say".into()),
            Record::Handled("say_first", "hi|".into()),
            Record::Handled("say_second", "hi".into()),
            Record::Hook("inner", "after say".into()),
            Record::Hook("outer", "after say".into()),
        ]
    );
    // The fence's echo went through the chain too.
    assert_eq!(records.len(), 10, "{records:?}");
}

/// A middleware step that never passes `say` on, and passes everything else.
async fn stall_say(envelope: Envelope<Out>, next: Next<In, Out>) -> Result<(), Infallible> {
    if envelope.event() == "say" {
        std::future::pending::<()>().await;
    }
    next.run(envelope).await;
    Ok(())
}

const STEP_TIMEOUT: Duration = Duration::from_millis(30);

/// A middleware timeout with `ErrorPolicy::Ignore`: the event is dropped,
/// the connection stays open.
#[tokio::test]
async fn middleware_timeout_with_ignore_drops_the_event_and_keeps_the_connection() {
    let running = Running::start_with(|builder| {
        builder.middleware_with(
            stall_say,
            MiddlewareOptions::timeout(STEP_TIMEOUT).on_error(ErrorPolicy::Ignore),
        )
    })
    .await;
    let (mut client, id) = running.raw_client().await;
    let sent = tokio::time::Instant::now();
    client.emit("say", json!({ "text": "stalled" })).await;
    client.fence("after the timeout").await;
    assert!(sent.elapsed() >= STEP_TIMEOUT, "the fence waited for it");
    assert_eq!(handled(&running), vec![]);

    // A request through it gets a `rejected` error reply.
    client.request("say", json!({ "text": "again" }), 4).await;
    let reply = client.next().await;
    assert_eq!(
        (&reply["event"], &reply["ack"]),
        (&json!("__ack"), &json!(4))
    );
    assert_eq!(reply["error"]["code"], "rejected");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{reply}"
    );
    client.fence("still open").await;
    assert!(running.server.get(id).is_some());
    assert_eq!(handled(&running), vec![]);
}

/// A middleware timeout with `ErrorPolicy::Close`: the connection is closed
/// with 1008 and the event is not handled.
#[tokio::test]
async fn middleware_timeout_with_close_closes_with_1008() {
    let running = Running::start_with(|builder| {
        builder.middleware_with(
            stall_say,
            MiddlewareOptions::timeout(STEP_TIMEOUT).on_error(ErrorPolicy::Close),
        )
    })
    .await;
    let (mut client, id) = running.raw_client().await;
    client.fence("open before").await;
    client.emit("say", json!({ "text": "stalled" })).await;
    assert_eq!(
        client.closed().await,
        (1008, "rejected by middleware".to_owned())
    );
    client.close().await;
    assert_eq!(
        running.recorder.disconnected(id).await,
        DisconnectReason::ServerClosed(CloseCode::PolicyViolation)
    );
    assert_eq!(handled(&running), vec![]);
}

/// A middleware timeout with `ErrorPolicy::Callback`: the callback gets the
/// connection and the error; the connection stays open.
#[tokio::test]
async fn middleware_timeout_with_callback_calls_it_and_keeps_the_connection() {
    let recorder = Recorder::default();
    let callback_recorder = recorder.clone();
    let running = Running::start_recording(recorder, move |builder| {
        builder.middleware_with(
            stall_say,
            MiddlewareOptions::timeout(STEP_TIMEOUT).on_error(ErrorPolicy::callback(
                move |conn, error| {
                    callback_recorder.push(Record::Hook("callback", format!("{conn} {error}")));
                },
            )),
        )
    })
    .await;
    let (mut client, id) = running.raw_client().await;
    client.emit("say", json!({ "text": "stalled" })).await;
    client.fence("after the timeout").await;
    assert_eq!(
        running.recorder.matching(|r| matches!(r, Record::Hook(..))),
        vec![Record::Hook(
            "callback",
            format!("{id} middleware timed out after {STEP_TIMEOUT:?} on `say`")
        )]
    );
    assert_eq!(handled(&running), vec![]);
    assert!(running.server.get(id).is_some());
}

/// A middleware that refuses (returns an error): a request gets an error
/// reply with code `rejected`, and no handler runs.
#[tokio::test]
async fn a_request_through_a_rejecting_middleware_gets_a_rejected_reply() {
    async fn no_division(envelope: Envelope<Out>, next: Next<In, Out>) -> Result<(), String> {
        if envelope.event() == "divide" {
            return Err("division is closed today".to_owned());
        }
        next.run(envelope).await;
        Ok(())
    }
    let running = Running::start_with(|builder| builder.middleware(no_division)).await;
    let (mut client, _) = running.raw_client().await;
    client
        .request("divide", json!({ "num": 6, "den": 3 }), 9)
        .await;
    let reply = client.next().await;
    assert_eq!(
        (&reply["event"], &reply["ack"]),
        (&json!("__ack"), &json!(9))
    );
    assert_eq!(reply["error"]["code"], "rejected");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("division is closed today"),
        "{reply}"
    );
    assert_eq!(reply.get("payload"), None);
    // Without an ack id the event is dropped quietly.
    client.emit("divide", json!({ "num": 6, "den": 3 })).await;
    client.fence("still open").await;
    assert_eq!(handled(&running), vec![]);
}

/// A handler guard that refuses: an `error` event with code `forbidden`,
/// and the handler does not run.
#[tokio::test]
async fn a_guard_refusal_is_a_forbidden_error_and_the_handler_does_not_run() {
    let running = Running::start().await;
    let (mut client, _) = running.raw_client().await;
    client.emit("guarded", json!("secret")).await;
    assert_eq!(
        client.next().await,
        json!({
            "event": "error",
            "payload": { "code": "forbidden", "message": "admins only", "event": "guarded" },
        })
    );
    client.fence("still open").await;
    assert_eq!(handled(&running), vec![]);

    // The guard lets an admin through.
    client.emit("set_role", json!("admin")).await;
    client.emit("guarded", json!("secret")).await;
    client.fence("after the admin's event").await;
    assert_eq!(
        handled(&running),
        vec![
            Record::Handled("set_role", "Admin".into()),
            Record::Handled("guarded", "secret".into()),
        ]
    );
}

/// A handler guard refusing a request: an error reply with code `forbidden`.
#[tokio::test]
async fn a_guard_refusal_of_a_request_is_a_forbidden_error_reply() {
    let running = Running::start().await;
    let (mut client, _) = running.raw_client().await;
    client.request("guarded", json!("secret"), 3).await;
    assert_eq!(
        client.next().await,
        json!({
            "event": "__ack",
            "ack": 3,
            "error": { "code": "forbidden", "message": "admins only", "event": "guarded" },
        })
    );
    client.emit("set_role", json!("admin")).await;
    client.request("guarded", json!("secret"), 4).await;
    assert_eq!(
        client.next().await,
        json!({ "event": "__ack", "ack": 4, "payload": "secret" })
    );
    assert_eq!(
        handled(&running),
        vec![
            Record::Handled("set_role", "Admin".into()),
            Record::Handled("guarded", "secret".into()),
        ]
    );
}

/// A second handler of `ping`: a task that waits for the connection to end
/// and sends why on the server's channel.
#[liweb::handler(TestIn::Ping)]
async fn watch_the_end(conn: Conn<Out>, State(ends): State<UnboundedSender<DisconnectReason>>) {
    tokio::spawn(async move {
        let _ = ends.send(conn.closed().await);
    });
}

#[tokio::test]
async fn conn_closed_resolves_with_the_reason_the_client_closed_with() {
    let (ends, mut ended) = mpsc::unbounded_channel::<DisconnectReason>();
    let running = Running::start_with(|builder| builder.state(ends).handler(watch_the_end)).await;
    let (mut client, id) = running.client().await;
    client.emit(In::Ping).unwrap();
    assert_eq!(next_event(&mut client).await, Out::Pong);
    fence(&mut client, "watching").await;
    // Open, the connection has not ended: `closed` waits.
    let early = tokio::time::timeout(Duration::from_millis(50), running.conn(id).closed()).await;
    assert!(early.is_err(), "closed resolved early: {early:?}");

    client.close(CloseCode::Other(4100), "leaving").unwrap();
    let expected = DisconnectReason::ClientClosed(Some((CloseCode::Other(4100), "leaving".into())));
    let reason = tokio::time::timeout(WAIT, ended.recv())
        .await
        .expect("`closed` did not resolve")
        .expect("the server dropped its channel");
    assert_eq!(reason, expected);
    // The reason `on_disconnect` got, and an ended connection answers at once.
    assert_eq!(running.recorder.disconnected(id).await, expected);
    let again = tokio::time::timeout(WAIT, running.conn(id).closed()).await;
    assert_eq!(again.ok(), Some(expected));
}

#[tokio::test]
async fn conn_closed_resolves_with_the_code_the_server_closed_with() {
    let running = Running::start().await;
    let (mut client, id) = running.client().await;
    let conn = running.conn(id);
    let waiting = tokio::spawn({
        let conn = conn.clone();
        async move { conn.closed().await }
    });
    assert!(conn.close(CloseCode::Other(4200), "enough"));
    assert!(matches!(next(&mut client).await, Incoming::Closed(_)));
    let reason = tokio::time::timeout(WAIT, waiting)
        .await
        .expect("`closed` did not resolve")
        .expect("the waiting task panicked");
    assert_eq!(
        reason,
        DisconnectReason::ServerClosed(CloseCode::Other(4200))
    );
}

#[tokio::test]
async fn the_message_hook_hears_the_wire_name_of_every_known_event() {
    let heard = Arc::new(Mutex::new(Vec::new()));
    let running = Running::start_with(|builder| {
        let heard = Arc::clone(&heard);
        builder.on_message(move |conn: &Conn<Out>, name: &'static str| {
            heard.lock().unwrap().push((conn.id(), name));
        })
    })
    .await;
    let (mut client, id) = running.client().await;
    client.emit(In::Ping).unwrap();
    assert_eq!(next_event(&mut client).await, Out::Pong);
    client.emit(In::SetRole(liweb_tests::Role::Admin)).unwrap();
    // An unknown event is answered, not heard.
    client
        .emit_raw(r#"{"event":"no_such_event","payload":null}"#)
        .unwrap();
    assert!(matches!(next(&mut client).await, Incoming::Error(_)));
    fence(&mut client, "done").await;
    assert_eq!(
        *heard.lock().unwrap(),
        [(id, "ping"), (id, "set_role"), (id, "echo")]
    );
}
