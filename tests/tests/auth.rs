//! Conformance, section A (authentication): the credentials,
//! shared-secret, request and JWT strategies, the auth hooks, and what a
//! connection may do before it is authenticated. Each test is written once
//! and runs on every transport × codec combination (`a1_...::ws_json`,
//! `a1_...::tcp_bincode`, ...); credentials in the upgrade request (A11)
//! are WebSocket-only, since the TCP handshake carries no request.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use liweb::{
    CloseCode, DisconnectReason, ErrorCode, ErrorPayload, ServerBuilder,
    auth::{Auth, AuthFailure, SecretUser, User},
};
use liweb_tests::{
    Combo, Link, Peer, Record, Recorder, Running, TestIn, TestOut, TestUser, conformance,
    eventually,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The credentials of the test strategy.
#[derive(Serialize, Deserialize)]
struct Login {
    name: String,
    password: String,
}

/// The `__auth` payload of `name` with `password`.
fn login(name: &str, password: &str) -> Login {
    Login {
        name: name.to_owned(),
        password: password.to_owned(),
    }
}

/// The `__auth` payload of the shared-secret strategy.
#[derive(Serialize)]
struct Secret<'a> {
    secret: &'a str,
}

/// The `__auth` payload of the JWT strategy.
#[derive(Serialize)]
struct Token {
    token: String,
}

/// The `auth:success` payload.
#[derive(Debug, Deserialize)]
struct AuthSuccess<U> {
    user: U,
}

/// The `auth:error` payload.
#[derive(Debug, Deserialize)]
struct AuthError {
    reason: String,
}

/// A strategy that accepts any name with the password `pw`, and makes
/// `root` the only admin; `calls` counts how often it ran.
fn credentials(calls: &Arc<AtomicUsize>) -> Auth<TestUser> {
    let calls = Arc::clone(calls);
    Auth::credentials(move |login: Login, _meta| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            if login.password == "pw" {
                Ok(TestUser {
                    admin: login.name == "root",
                    name: login.name,
                })
            } else {
                Err("wrong password")
            }
        }
    })
}
/// Adds hooks that record the auth hooks, and an `on_connect` that records
/// the user it sees.
fn record_auth_hooks(
    recorder: &Recorder,
    builder: ServerBuilder<TestIn, TestOut>,
) -> ServerBuilder<TestIn, TestOut> {
    let (on_success, on_error, on_connect) = (recorder.clone(), recorder.clone(), recorder.clone());
    builder
        .on_auth_success(move |User(user): User<TestUser>| {
            let recorder = on_success.clone();
            async move { recorder.push(Record::Hook("on_auth_success", user.name)) }
        })
        .on_auth_error(move |failure: AuthFailure| {
            let recorder = on_error.clone();
            async move {
                recorder.push(Record::Hook(
                    "on_auth_error",
                    failure.reason.as_str().to_owned(),
                ))
            }
        })
        .on_connect(move |conn: Conn| {
            let recorder = on_connect.clone();
            async move {
                let name = conn.user::<TestUser>().map(|user| user.name);
                recorder.push(Record::Hook("on_connect user", format!("{name:?}")));
            }
        })
}

type Conn = liweb::Conn<TestOut>;

/// Starts the test application with `auth` and the recording auth hooks.
async fn start_with_auth(
    configure: impl FnOnce(ServerBuilder<TestIn, TestOut>) -> ServerBuilder<TestIn, TestOut>,
) -> Running {
    let recorder = Recorder::default();
    let hooks = recorder.clone();
    Running::start_recording(recorder, move |builder| {
        record_auth_hooks(&hooks, configure(builder))
    })
    .await
}

fn hooks(running: &Running) -> Vec<Record> {
    running.recorder.matching(|r| {
        matches!(
            r,
            Record::Hook(..) | Record::Connected(_) | Record::Disconnected(..)
        )
    })
}

fn auth_error(reason: &str) -> Value {
    json!({ "event": "auth:error", "payload": { "reason": reason } })
}

/// Reads the next message of `peer` and asserts that it is `auth:error`
/// with `reason` (and exactly that, on self-describing codecs).
async fn expect_auth_error(peer: &mut Peer, reason: &str) {
    let msg = peer.next().await;
    assert_eq!(msg.event(), "auth:error", "{msg:?}");
    assert_eq!(msg.ack(), None);
    assert_eq!(msg.payload::<AuthError>().reason, reason);
    if peer.combo().self_describing() {
        assert_eq!(msg.json(), auth_error(reason));
    }
}

/// Reads the next message of `peer`, asserts that it is `auth:success`, and
/// returns its user.
async fn expect_success<U: DeserializeOwned>(peer: &mut Peer) -> U {
    let msg = peer.next().await;
    assert_eq!(msg.event(), "auth:success", "{msg:?}");
    assert_eq!(msg.ack(), None);
    msg.payload::<AuthSuccess<U>>().user
}

/// Asserts that `auth:success` with exactly `user` is the next message.
async fn expect_success_of(peer: &mut Peer, user: &TestUser) {
    if peer.combo().self_describing() {
        let msg = peer.next().await;
        assert_eq!(
            msg.json(),
            json!({ "event": "auth:success", "payload": { "user": user } })
        );
        assert_eq!(msg.payload::<AuthSuccess<TestUser>>().user, *user);
    } else {
        assert_eq!(expect_success::<TestUser>(peer).await, *user);
    }
}

/// Asserts that `peer` is told `auth:error` with `reason` and closed with
/// `code`, then finishes the close.
async fn refused(mut peer: Peer, reason: &str, code: u16) {
    expect_auth_error(&mut peer, reason).await;
    assert_eq!(peer.closed().await, (code, reason.to_owned()));
    finish(peer).await;
}

/// Ends a connection the server closed: a WebSocket answers the close
/// handshake; on TCP [`Peer::closed`] already read the end of the stream.
async fn finish(peer: Peer) {
    if peer.combo().link == Link::WebSocket {
        peer.close().await;
    }
}

/// Asks `who_am_i` and asserts that the answer is `user`.
async fn expect_you(peer: &mut Peer, user: Option<&TestUser>) {
    peer.emit("who_am_i", &()).await;
    let msg = peer.next().await;
    assert_eq!(msg.event(), "you", "{msg:?}");
    assert_eq!(msg.payload::<Option<TestUser>>().as_ref(), user);
    if peer.combo().self_describing() {
        assert_eq!(msg.json(), json!({ "event": "you", "payload": user }));
    }
}

fn user(name: &str, admin: bool) -> TestUser {
    TestUser {
        name: name.into(),
        admin,
    }
}

/// Waits until the server has let go of every connection, authenticated
/// or not.
/// Waits for the `on_auth_error` hook and checks that it is the only hook
/// that fired, with `reason`.
async fn only_the_auth_error_hook(running: &Running, reason: &str) {
    running
        .recorder
        .wait_until("on_auth_error", |records| !records.is_empty())
        .await;
    assert_eq!(
        hooks(running),
        vec![Record::Hook("on_auth_error", reason.into())]
    );
}

async fn no_connection_left(running: &Running) {
    eventually(
        "no live connection",
        || running.server.stats(),
        |stats| stats.live == 0 && stats.connections == 0,
    )
    .await;
}

conformance! {
    /// Conformance A1.
    async fn a1_valid_credentials_get_the_server_issued_user_then_on_connect(combo) {
        let calls = Arc::new(AtomicUsize::new(0));
        let running = start_with_auth(|builder| builder.auth(credentials(&calls))).await;
        let mut peer = running.open_peer(combo).await;
        peer.emit("__auth", &login("root", "pw")).await;
        let root = user("root", true);
        expect_success_of(&mut peer, &root).await;
        expect_you(&mut peer, Some(&root)).await;

        let id = running.recorder.conns()[0].id();
        assert_eq!(
            hooks(&running),
            vec![
                Record::Hook("on_auth_success", "root".into()),
                Record::Connected(id),
                Record::Hook("on_connect user", r#"Some("root")"#.into()),
            ]
        );
        assert_eq!(running.server.connection_count(), 1);
        assert_eq!(running.conn(id).user::<TestUser>(), Some(root));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    /// Conformance A1: `on_connect` waits for the verdict.
    async fn a1_on_connect_does_not_fire_before_auth(combo) {
        let calls = Arc::new(AtomicUsize::new(0));
        let running = start_with_auth(|builder| builder.auth(credentials(&calls))).await;
        let mut peer = running.open_peer(combo).await;
        // An answered event proves the server has the connection.
        peer.emit("echo", "early").await;
        expect_auth_error(&mut peer, "not authenticated").await;
        assert!(running.recorder.conns().is_empty(), "not before auth");
        assert_eq!(hooks(&running), vec![]);
        peer.emit("__auth", &login("ann", "pw")).await;
        expect_success_of(&mut peer, &user("ann", false)).await;
        peer.fence("authenticated").await;
        assert_eq!(running.recorder.conns().len(), 1);
    }

    /// Conformance A2.
    async fn a2_invalid_credentials_get_auth_error_and_close_4001_and_the_hook(combo) {
        let calls = Arc::new(AtomicUsize::new(0));
        let running = start_with_auth(|builder| builder.auth(credentials(&calls))).await;
        let mut peer = running.open_peer(combo).await;
        peer.emit("__auth", &login("root", "guess")).await;
        refused(peer, "invalid credentials", 4001).await;
        assert_eq!(CloseCode::AuthFailed.as_u16(), 4001);
        only_the_auth_error_hook(&running, "invalid credentials").await;
        no_connection_left(&running).await;
        assert!(running.recorder.conns().is_empty());
        assert_eq!(running.server.stats().auth_failures, 1);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    /// Conformance A2.
    async fn a2_wrong_shared_secret_gets_invalid_secret_and_close_4001(combo) {
        let running = start_with_auth(|builder| builder.auth(Auth::secret("s3cret"))).await;
        let mut peer = running.open_peer(combo).await;
        peer.emit("__auth", &Secret { secret: "s3cre" }).await;
        refused(peer, "invalid secret", 4001).await;
        only_the_auth_error_hook(&running, "invalid secret").await;

        // The right secret gets a server-issued guest id.
        let mut peer = running.open_peer(combo).await;
        peer.emit("__auth", &Secret { secret: "s3cret" }).await;
        let user: SecretUser = expect_success(&mut peer).await;
        assert!(user.id.starts_with("guest-"), "{user:?}");
        assert_eq!(user.id.len(), "guest-".len() + 8);
        peer.fence("authenticated").await;
    }

    /// Conformance A3.
    async fn a3_malformed_auth_payload_gets_missing_auth_payload_and_close_4005(combo) {
        let calls = Arc::new(AtomicUsize::new(0));
        let running = start_with_auth(|builder| builder.auth(credentials(&calls))).await;
        for payload in [json!({ "name": "root" }), json!("root:pw"), Value::Null] {
            let mut peer = running.open_peer(combo).await;
            peer.emit("__auth", &payload).await;
            refused(peer, "missing auth payload", 4005).await;
        }
        no_connection_left(&running).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            0,
            "the strategy never ran on a malformed payload"
        );
        assert_eq!(
            hooks(&running),
            vec![Record::Hook("on_auth_error", "missing auth payload".into()); 3]
        );
    }

    /// Conformance A4.
    async fn a4_no_auth_before_the_deadline_gets_auth_timeout_and_close_4002(combo) {
        const DEADLINE: Duration = Duration::from_millis(60);
        let calls = Arc::new(AtomicUsize::new(0));
        let running =
            start_with_auth(|builder| builder.auth(credentials(&calls).timeout(DEADLINE))).await;
        let connecting = tokio::time::Instant::now();
        let mut peer = running.open_peer(combo).await;
        expect_auth_error(&mut peer, "auth timeout").await;
        assert!(
            connecting.elapsed() >= DEADLINE,
            "timed out after {:?}, before the deadline",
            connecting.elapsed()
        );
        assert_eq!(peer.closed().await, (4002, "auth timeout".to_owned()));
        finish(peer).await;
        only_the_auth_error_hook(&running, "auth timeout").await;
        no_connection_left(&running).await;
        let stats = running.server.stats();
        assert_eq!((stats.auth_timeouts, stats.auth_failures), (1, 0));
    }

    /// Conformance A4.
    async fn a4_the_deadline_counts_from_connect_not_from_the_last_message(combo) {
        const DEADLINE: Duration = Duration::from_millis(150);
        let calls = Arc::new(AtomicUsize::new(0));
        let running =
            start_with_auth(|builder| builder.auth(credentials(&calls).timeout(DEADLINE))).await;
        let connecting = tokio::time::Instant::now();
        let mut peer = running.open_peer(combo).await;
        // Traffic before auth does not push the deadline back.
        let mut answers = 0;
        loop {
            peer.emit("echo", "early").await;
            let answer = peer.next().await;
            assert_eq!(answer.event(), "auth:error", "{answer:?}");
            let reason = answer.payload::<AuthError>().reason;
            if reason == "auth timeout" {
                break;
            }
            assert_eq!(reason, "not authenticated");
            answers += 1;
            // Paces the events over the deadline.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let elapsed = connecting.elapsed();
        assert!(
            answers >= 1,
            "some events were answered before the deadline"
        );
        assert!(elapsed >= DEADLINE, "timed out early, after {elapsed:?}");
        assert_eq!(peer.closed().await, (4002, "auth timeout".to_owned()));
        finish(peer).await;
    }

    /// Conformance A4.
    async fn a4_a_strategy_that_never_answers_times_out_and_the_connection_ends(combo) {
        const DEADLINE: Duration = Duration::from_millis(60);
        let stuck = Auth::credentials(|_login: Login, _meta| async move {
            std::future::pending::<Result<TestUser, &str>>().await
        })
        .timeout(DEADLINE);
        let running = start_with_auth(|builder| builder.auth(stuck)).await;
        let mut peer = running.open_peer(combo).await;
        peer.emit("__auth", &login("ann", "pw")).await;
        // The close finishing shows the stuck check no longer holds the
        // connection (and its slot).
        refused(peer, "auth timeout", 4002).await;
        no_connection_left(&running).await;
        assert_eq!(
            hooks(&running),
            vec![Record::Hook("on_auth_error", "auth timeout".into())]
        );
    }

    /// Conformance A5.
    async fn a5_events_before_auth_are_not_dispatched_and_get_not_authenticated(combo) {
        let calls = Arc::new(AtomicUsize::new(0));
        let running = start_with_auth(|builder| {
            builder.auth(credentials(&calls).timeout(Duration::from_secs(30)))
        })
        .await;
        let mut peer = running.open_peer(combo).await;
        peer.emit("say", &json!({ "text": "too early" })).await;
        expect_auth_error(&mut peer, "not authenticated").await;
        peer.emit("echo", "too early").await;
        expect_auth_error(&mut peer, "not authenticated").await;
        peer.request("divide", &json!({ "num": 4, "den": 2 }), 1).await;
        expect_auth_error(&mut peer, "not authenticated").await;
        peer.emit("no_such_event", &1).await;
        expect_auth_error(&mut peer, "not authenticated").await;

        // Still open, still waiting for credentials: they are accepted now.
        assert_eq!(running.server.stats().live, 1);
        assert_eq!(running.server.connection_count(), 0);
        peer.emit("__auth", &login("ann", "pw")).await;
        expect_success_of(&mut peer, &user("ann", false)).await;
        peer.fence("authenticated").await;
        assert_eq!(
            running
                .recorder
                .matching(|r| matches!(r, Record::Handled(..))),
            vec![],
            "no handler ran for the early events"
        );
    }

    /// Conformance A6.
    async fn a6_a_second_auth_after_success_is_ignored(combo) {
        let calls = Arc::new(AtomicUsize::new(0));
        let running = start_with_auth(|builder| builder.auth(credentials(&calls))).await;
        let mut peer = running.open_peer(combo).await;
        peer.emit("__auth", &login("ann", "pw")).await;
        expect_success_of(&mut peer, &user("ann", false)).await;
        // Neither a valid nor an invalid second attempt changes anything.
        peer.emit("__auth", &login("root", "pw")).await;
        peer.emit("__auth", &login("root", "nope")).await;
        peer.fence("after the second auth").await;
        expect_you(&mut peer, Some(&user("ann", false))).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let auth_hooks = running
            .recorder
            .matching(|r| matches!(r, Record::Hook("on_auth_success" | "on_auth_error", _)));
        assert_eq!(
            auth_hooks,
            vec![Record::Hook("on_auth_success", "ann".into())]
        );
    }

    /// Conformance A7.
    async fn a7_auth_without_auth_configured_is_ignored(combo) {
        let running = start_with_auth(|builder| builder).await;
        let (mut peer, id) = running.peer_on(combo).await;
        peer.emit("__auth", &login("root", "pw")).await;
        peer.emit("__auth", "garbage").await;
        peer.fence("after auth").await;
        expect_you(&mut peer, None).await;
        assert_eq!(
            hooks(&running),
            vec![
                Record::Connected(id),
                Record::Hook("on_connect user", "None".into()),
            ]
        );
    }

    /// Conformance A8.
    async fn a8_disconnecting_before_auth_fires_no_hook(combo) {
        let calls = Arc::new(AtomicUsize::new(0));
        let running = start_with_auth(|builder| {
            builder.auth(credentials(&calls).timeout(Duration::from_secs(30)))
        })
        .await;
        let mut peer = running.open_peer(combo).await;
        peer.emit("echo", "hello?").await;
        expect_auth_error(&mut peer, "not authenticated").await;
        assert_eq!(running.server.stats().live, 1);
        peer.close().await;
        no_connection_left(&running).await;
        assert_eq!(hooks(&running), vec![]);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    /// Conformance A8.
    async fn a8_disconnecting_while_the_strategy_runs_fires_no_hook(combo) {
        // The strategy is still checking the credentials when the client goes
        // away; its late success must not make the connection visible. The
        // strategy's delay is what a slow user database looks like: the
        // client's disconnect reaches the server within a millisecond, long
        // before it.
        const CHECK_TAKES: Duration = Duration::from_millis(300);
        let started = Arc::new(tokio::sync::Notify::new());
        let started_in = Arc::clone(&started);
        let slow = Auth::credentials(move |login: Login, _meta| {
            let started = Arc::clone(&started_in);
            async move {
                started.notify_one();
                tokio::time::sleep(CHECK_TAKES).await;
                Ok::<_, &str>(TestUser {
                    name: login.name,
                    admin: false,
                })
            }
        })
        .timeout(Duration::from_secs(30));
        let running = start_with_auth(|builder| builder.auth(slow)).await;
        let mut peer = running.open_peer(combo).await;
        peer.emit("__auth", &login("ann", "pw")).await;
        tokio::time::timeout(liweb_tests::WAIT, started.notified())
            .await
            .expect("the strategy started");
        let gone = tokio::time::Instant::now();
        drop(peer);
        no_connection_left(&running).await;
        assert!(
            gone.elapsed() >= CHECK_TAKES,
            "the connection ended only after the strategy's verdict"
        );
        assert_eq!(hooks(&running), vec![]);
        assert_eq!(running.server.stats().connections, 0);
    }

    /// Conformance A9.
    async fn a9_a_strategy_that_errors_or_panics_fails_auth_and_the_server_goes_on(combo) {
        let flaky = Auth::credentials(|login: Login, _meta| async move {
            match login.name.as_str() {
                "error" => Err("database down".to_owned()),
                "panic" => panic!("the strategy panicked on purpose"),
                _ => Ok(TestUser {
                    name: login.name,
                    admin: false,
                }),
            }
        });
        let recorder = Recorder::default();
        let details = recorder.clone();
        let running = Running::start_recording(recorder, move |builder| {
            builder
                .auth(flaky)
                .on_auth_error(move |failure: AuthFailure| {
                    let recorder = details.clone();
                    async move {
                        recorder.push(Record::Hook(
                            "on_auth_error",
                            format!("{}: {}", failure.reason, failure.detail.unwrap_or_default()),
                        ))
                    }
                })
        })
        .await;
        for name in ["error", "panic"] {
            let mut peer = running.open_peer(combo).await;
            peer.emit("__auth", &login(name, "pw")).await;
            refused(peer, "invalid credentials", 4001).await;
        }
        let records = running
            .recorder
            .wait_until("two auth errors", |records| records.len() == 2)
            .await;
        assert_eq!(
            records[0],
            Record::Hook("on_auth_error", "invalid credentials: database down".into())
        );
        assert!(
            matches!(&records[1], Record::Hook("on_auth_error", detail) if detail.contains("panicked on purpose")),
            "{records:?}"
        );

        let mut peer = running.open_peer(combo).await;
        peer.emit("__auth", &login("ann", "pw")).await;
        expect_success_of(&mut peer, &user("ann", false)).await;
        peer.fence("the server still serves").await;
        assert_eq!(running.server.stats().auth_failures, 2);
    }

    /// Conformance A10. Claims beside the credentials (extra envelope or
    /// payload fields) are checked on the self-describing codecs; a bincode
    /// envelope and payload have no room for fields the types do not name.
    async fn a10_identity_claims_of_the_client_are_never_trusted(combo) {
        let calls = Arc::new(AtomicUsize::new(0));
        let running = start_with_auth(|builder| builder.auth(credentials(&calls))).await;
        let mut peer = running.open_peer(combo).await;
        let root = AuthSuccessClaim {
            user: user("root", true),
        };
        // A forged success is just an event of an unauthenticated client.
        peer.emit("auth:success", &root).await;
        expect_auth_error(&mut peer, "not authenticated").await;
        let mallory = user("mallory", false);
        if combo.self_describing() {
            // Claims next to the credentials are not the user either.
            peer.send_message(envelope(
                combo,
                &json!({
                    "event": "__auth",
                    "payload": { "name": "mallory", "password": "pw", "admin": true, "user": { "name": "root" } },
                    "user": { "name": "root", "admin": true },
                }),
            ))
            .await;
            expect_success_of(&mut peer, &mallory).await;
            peer.send_message(envelope(
                combo,
                &json!({"event": "who_am_i", "payload": null, "user": { "name": "root", "admin": true }}),
            ))
            .await;
            let msg = peer.next().await;
            assert_eq!(msg.json(), json!({ "event": "you", "payload": mallory }));
        } else {
            peer.emit("__auth", &login("mallory", "pw")).await;
            expect_success_of(&mut peer, &mallory).await;
        }
        // Forging a success after authenticating is an unknown event, not a new user.
        peer.emit("auth:success", &root).await;
        let msg = peer.next().await;
        assert_eq!(msg.event(), "error", "{msg:?}");
        assert_eq!(msg.payload::<ErrorPayload>().code, ErrorCode::UnknownEvent);
        if combo.self_describing() {
            assert_eq!(msg.json()["payload"]["code"], "unknown_event");
        }
        expect_you(&mut peer, Some(&mallory)).await;
    }

    /// Conformance A11.
    on [ws_json, ws_msgpack, ws_bincode]
    async fn a11_credentials_in_the_upgrade_request_authenticate_without_auth(combo) {
        let calls = Arc::new(AtomicUsize::new(0));
        let running = start_with_auth(|builder| builder.auth(request_or_credentials(&calls))).await;

        let mut request = running.url().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("x-token", "valid-hea".parse().unwrap());
        let mut by_header = running.ws_peer(combo, request).await;
        expect_success_of(&mut by_header, &user("hea", false)).await;
        expect_you(&mut by_header, Some(&user("hea", false))).await;

        let mut by_query = running
            .ws_peer(combo, format!("{}?token=valid-que", running.url()))
            .await;
        assert_eq!(expect_success::<TestUser>(&mut by_query).await.name, "que");
        by_query.fence("authenticated").await;

        // Without a token in the request, `__auth` still works.
        let mut by_event = running.open_peer(combo).await;
        by_event.emit("__auth", &login("eve", "x")).await;
        assert_eq!(expect_success::<TestUser>(&mut by_event).await.name, "eve");
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // A bad token in the request fails at once.
        let bad = running
            .ws_peer(combo, format!("{}?token=forged", running.url()))
            .await;
        refused(bad, "invalid credentials", 4001).await;

        let users: Vec<_> = running
            .recorder
            .matching(|r| matches!(r, Record::Hook("on_connect user", _)));
        assert_eq!(
            users,
            vec![
                Record::Hook("on_connect user", r#"Some("hea")"#.into()),
                Record::Hook("on_connect user", r#"Some("que")"#.into()),
                Record::Hook("on_connect user", r#"Some("eve")"#.into()),
            ]
        );
    }

    /// Conformance A11: a strategy that reads the request falls back to
    /// `__auth` when the request carries nothing (always, on TCP).
    async fn a11_without_request_credentials_auth_still_authenticates(combo) {
        let calls = Arc::new(AtomicUsize::new(0));
        let running = start_with_auth(|builder| builder.auth(request_or_credentials(&calls))).await;
        let mut peer = running.open_peer(combo).await;
        peer.emit("__auth", &login("eve", "x")).await;
        expect_success_of(&mut peer, &user("eve", false)).await;
        expect_you(&mut peer, Some(&user("eve", false))).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(
            running
                .recorder
                .matching(|r| matches!(r, Record::Hook("on_connect user", _))),
            vec![Record::Hook("on_connect user", r#"Some("eve")"#.into())]
        );
    }

    /// Conformance A11: a request-only strategy refuses a connection whose
    /// request carries no credentials (every TCP connection).
    async fn a11_a_request_only_strategy_without_credentials_fails_as_missing(combo) {
        let running = start_with_auth(|builder| builder.auth(query_token_only())).await;
        let peer = running.open_peer(combo).await;
        refused(peer, "missing auth payload", 4005).await;
        no_connection_left(&running).await;
        assert_eq!(
            hooks(&running),
            vec![Record::Hook("on_auth_error", "missing auth payload".into())]
        );
    }

    /// Conformance A11.
    on [ws_json, ws_msgpack, ws_bincode]
    async fn a11_a_request_only_strategy_ignores_auth_after_success(combo) {
        let running = start_with_auth(|builder| builder.auth(query_token_only())).await;
        let mut peer = running
            .ws_peer(combo, format!("{}?token=ann", running.url()))
            .await;
        expect_success_of(&mut peer, &user("ann", false)).await;
        // `__auth` is no way in for a request-only strategy; after success it is ignored.
        peer.emit("__auth", &login("root", "pw")).await;
        peer.fence("ignored").await;
        expect_you(&mut peer, Some(&user("ann", false))).await;
    }

    /// Conformance A1 (JWT strategy, through `__auth`).
    async fn jwt_token_in_auth_event_authenticates_with_its_claims(combo) {
        let running = start_jwt().await;
        let mut peer = running.open_peer(combo).await;
        peer.emit(
            "__auth",
            &Token {
                token: token("jo", now() + 600, JWT_KEY),
            },
        )
        .await;
        expect_success_of(&mut peer, &user("jo", false)).await;
        expect_you(&mut peer, Some(&user("jo", false))).await;
        assert_eq!(
            running
                .recorder
                .matching(|r| matches!(r, Record::Hook("on_connect user", _))),
            vec![Record::Hook("on_connect user", r#"Some("jo")"#.into())]
        );
    }

    /// Conformance A11 (JWT strategy).
    on [ws_json, ws_msgpack, ws_bincode]
    async fn jwt_token_in_query_or_bearer_header_authenticates_without_auth_event(combo) {
        let running = start_jwt().await;
        let query = format!(
            "{}?token={}",
            running.url(),
            token("qu", now() + 600, JWT_KEY)
        );
        let mut by_query = running.ws_peer(combo, query).await;
        assert_eq!(expect_success::<TestUser>(&mut by_query).await.name, "qu");
        by_query.fence("authenticated").await;

        let mut request = running.url().into_client_request().unwrap();
        request.headers_mut().insert(
            http::header::AUTHORIZATION,
            format!("Bearer {}", token("be", now() + 600, JWT_KEY))
                .parse()
                .unwrap(),
        );
        let mut by_header = running.ws_peer(combo, request).await;
        assert_eq!(expect_success::<TestUser>(&mut by_header).await.name, "be");
        by_header.fence("authenticated").await;
        assert_eq!(running.server.connection_count(), 2);
    }

    /// Conformance A2 (JWT strategy); the token in the query is
    /// WebSocket-only.
    async fn jwt_expired_or_foreign_tokens_fail_with_invalid_credentials(combo) {
        let running = start_jwt().await;
        // Expired well beyond the default leeway of a minute.
        let expired = token("old", now() - 3600, JWT_KEY);
        let foreign = token("forger", now() + 600, b"another key");
        for bad in [expired.clone(), foreign, "not.a.jwt".to_owned()] {
            let mut peer = running.open_peer(combo).await;
            peer.emit("__auth", &Token { token: bad }).await;
            refused(peer, "invalid credentials", 4001).await;
        }
        let mut failures = 3;
        if combo.link == Link::WebSocket {
            let in_query = running
                .ws_peer(combo, format!("{}?token={expired}", running.url()))
                .await;
            refused(in_query, "invalid credentials", 4001).await;
            failures += 1;
        }

        no_connection_left(&running).await;
        assert_eq!(running.server.stats().auth_failures, failures);
        assert!(
            running
                .recorder
                .matching(|r| matches!(r, Record::Connected(_)))
                .is_empty()
        );
    }

    /// A disconnect of a client that authenticated fires `on_disconnect`
    /// once, like any other.
    async fn an_authenticated_client_that_leaves_fires_on_disconnect_once(combo) {
        let calls = Arc::new(AtomicUsize::new(0));
        let running = start_with_auth(|builder| builder.auth(credentials(&calls))).await;
        let mut peer = running.open_peer(combo).await;
        peer.emit("__auth", &login("ann", "pw")).await;
        expect_success_of(&mut peer, &user("ann", false)).await;
        let id = running.recorder.conns()[0].id();
        peer.close().await;
        assert!(matches!(
            running.recorder.disconnected(id).await,
            DisconnectReason::ClientClosed(_)
        ));
        no_connection_left(&running).await;
        assert_eq!(
            running
                .recorder
                .matching(|r| matches!(r, Record::Disconnected(..)))
                .len(),
            1
        );
    }
}

/// A forged `auth:success` payload.
#[derive(Serialize)]
struct AuthSuccessClaim {
    user: TestUser,
}

/// A whole message of a self-describing codec from its JSON form, with
/// fields a typed encoder would not write.
fn envelope(combo: Combo, message: &Value) -> Vec<u8> {
    match combo.codec {
        liweb::CodecKind::Json => message.to_string().into_bytes(),
        liweb::CodecKind::MessagePack => rmp_serde::to_vec(message).unwrap(),
        other => panic!("{other:?} has no free-form envelope"),
    }
}

/// A strategy reading the `x-token` header or the `token` query parameter,
/// falling back to `__auth` credentials.
fn request_or_credentials(calls: &Arc<AtomicUsize>) -> Auth<TestUser> {
    let calls = Arc::clone(calls);
    Auth::request(|meta: liweb::ConnMeta| {
        let token = meta
            .headers()
            .get("x-token")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
            .or_else(|| meta.query_param("token"));
        async move {
            match token.as_deref() {
                None => Ok(None),
                Some(token) => match token.strip_prefix("valid-") {
                    Some(name) => Ok(Some(TestUser {
                        name: name.to_owned(),
                        admin: false,
                    })),
                    None => Err("unknown token"),
                },
            }
        }
    })
    .or_credentials(move |login: Login, _meta| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            Ok::<_, &str>(TestUser {
                name: login.name,
                admin: false,
            })
        }
    })
}

/// A strategy that only reads the `token` query parameter: its value is
/// the user's name.
fn query_token_only() -> Auth<TestUser> {
    Auth::request(|meta: liweb::ConnMeta| async move {
        Ok::<_, &str>(
            meta.query_param("token")
                .map(|name| TestUser { name, admin: false }),
        )
    })
}

const JWT_KEY: &[u8] = b"test key of the JWT strategy";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An HS256 token for `name`, expiring at `exp`, signed with `key`.
fn token(name: &str, exp: u64, key: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({ "name": name, "admin": false, "exp": exp }),
        &jsonwebtoken::EncodingKey::from_secret(key),
    )
    .unwrap()
}

async fn start_jwt() -> Running {
    start_with_auth(|builder| builder.auth(Auth::<TestUser>::jwt_hs256(JWT_KEY))).await
}
