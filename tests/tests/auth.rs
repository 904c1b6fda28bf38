//! Conformance, section A (authentication), over real WebSocket sockets:
//! the credentials, shared-secret, request and JWT strategies, the auth
//! hooks, and what a connection may do before it is authenticated.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use liweb::{
    CloseCode, DisconnectReason, ServerBuilder,
    auth::{Auth, AuthFailure, SecretUser, User},
};
use liweb_tests::{
    RawClient, Record, Recorder, Running, TestIn, TestOut, TestUser, connect, eventually,
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The credentials of the test strategy.
#[derive(Deserialize)]
struct Login {
    name: String,
    password: String,
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

/// Asserts that `client` is told `auth:error` with `reason` and closed with
/// `code`, then finishes the close handshake.
async fn refused(mut client: RawClient, reason: &str, code: u16) {
    assert_eq!(client.next().await, auth_error(reason));
    assert_eq!(client.closed().await, (code, reason.to_owned()));
    client.close().await;
}

fn you(user: Option<TestUser>) -> Value {
    json!({ "event": "you", "payload": user })
}

/// Waits until the server has let go of every connection, authenticated
/// or not.
async fn no_connection_left(running: &Running) {
    eventually(
        "no live connection",
        || running.server.stats(),
        |stats| stats.live == 0 && stats.connections == 0,
    )
    .await;
}

/// Conformance A1.
#[tokio::test]
async fn a1_valid_credentials_get_the_server_issued_user_then_on_connect() {
    let calls = Arc::new(AtomicUsize::new(0));
    let running = start_with_auth(|builder| builder.auth(credentials(&calls))).await;
    let mut client = running.raw_connect().await;
    client
        .emit("__auth", json!({ "name": "root", "password": "pw" }))
        .await;
    assert_eq!(
        client.next().await,
        json!({ "event": "auth:success", "payload": { "user": { "name": "root", "admin": true } } })
    );
    client.emit("who_am_i", Value::Null).await;
    let root = TestUser {
        name: "root".into(),
        admin: true,
    };
    assert_eq!(client.next().await, you(Some(root.clone())));

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

/// Conformance A2.
#[tokio::test]
async fn a2_invalid_credentials_get_auth_error_and_close_4001_and_the_hook() {
    let calls = Arc::new(AtomicUsize::new(0));
    let running = start_with_auth(|builder| builder.auth(credentials(&calls))).await;
    let mut client = running.raw_connect().await;
    client
        .emit("__auth", json!({ "name": "root", "password": "guess" }))
        .await;
    refused(client, "invalid credentials", 4001).await;
    assert_eq!(CloseCode::AuthFailed.as_u16(), 4001);
    running
        .recorder
        .wait_until("on_auth_error", |records| !records.is_empty())
        .await;
    no_connection_left(&running).await;
    assert_eq!(
        hooks(&running),
        vec![Record::Hook("on_auth_error", "invalid credentials".into())]
    );
    assert_eq!(running.server.stats().auth_failures, 1);
}

/// Conformance A2.
#[tokio::test]
async fn a2_wrong_shared_secret_gets_invalid_secret_and_close_4001() {
    let running = start_with_auth(|builder| builder.auth(Auth::secret("s3cret"))).await;
    let mut client = running.raw_connect().await;
    client.emit("__auth", json!({ "secret": "s3cre" })).await;
    refused(client, "invalid secret", 4001).await;
    running
        .recorder
        .wait_until("on_auth_error", |records| !records.is_empty())
        .await;
    assert_eq!(
        hooks(&running),
        vec![Record::Hook("on_auth_error", "invalid secret".into())]
    );

    // The right secret gets a server-issued guest id.
    let mut client = running.raw_connect().await;
    client.emit("__auth", json!({ "secret": "s3cret" })).await;
    let success = client.next().await;
    assert_eq!(success["event"], "auth:success");
    let user: SecretUser = serde_json::from_value(success["payload"]["user"].clone()).unwrap();
    assert!(user.id.starts_with("guest-"), "{user:?}");
    assert_eq!(user.id.len(), "guest-".len() + 8);
    client.fence("authenticated").await;
}

/// Conformance A3.
#[tokio::test]
async fn a3_malformed_auth_payload_gets_missing_auth_payload_and_close_4005() {
    let calls = Arc::new(AtomicUsize::new(0));
    let running = start_with_auth(|builder| builder.auth(credentials(&calls))).await;
    for payload in [json!({ "name": "root" }), json!("root:pw"), Value::Null] {
        let mut client = running.raw_connect().await;
        client.emit("__auth", payload.clone()).await;
        refused(client, "missing auth payload", 4005).await;
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
#[tokio::test]
async fn a4_no_auth_before_the_deadline_gets_auth_timeout_and_close_4002() {
    const DEADLINE: Duration = Duration::from_millis(60);
    let calls = Arc::new(AtomicUsize::new(0));
    let running =
        start_with_auth(|builder| builder.auth(credentials(&calls).timeout(DEADLINE))).await;
    let connecting = tokio::time::Instant::now();
    let mut client = running.raw_connect().await;
    assert_eq!(client.next().await, auth_error("auth timeout"));
    assert!(
        connecting.elapsed() >= DEADLINE,
        "timed out after {:?}, before the deadline",
        connecting.elapsed()
    );
    assert_eq!(client.closed().await, (4002, "auth timeout".to_owned()));
    client.close().await;
    running
        .recorder
        .wait_until("on_auth_error", |records| !records.is_empty())
        .await;
    no_connection_left(&running).await;
    assert_eq!(
        hooks(&running),
        vec![Record::Hook("on_auth_error", "auth timeout".into())]
    );
    let stats = running.server.stats();
    assert_eq!((stats.auth_timeouts, stats.auth_failures), (1, 0));
}

/// Conformance A4.
#[tokio::test]
async fn a4_the_deadline_counts_from_connect_not_from_the_last_message() {
    const DEADLINE: Duration = Duration::from_millis(150);
    let calls = Arc::new(AtomicUsize::new(0));
    let running =
        start_with_auth(|builder| builder.auth(credentials(&calls).timeout(DEADLINE))).await;
    let connecting = tokio::time::Instant::now();
    let mut client = running.raw_connect().await;
    // Traffic before auth does not push the deadline back.
    let mut answers = 0;
    loop {
        client.emit("echo", json!("early")).await;
        let answer = client.next().await;
        if answer == auth_error("auth timeout") {
            break;
        }
        assert_eq!(answer, auth_error("not authenticated"));
        answers += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = connecting.elapsed();
    assert!(
        answers >= 1,
        "some events were answered before the deadline"
    );
    assert!(elapsed >= DEADLINE, "timed out early, after {elapsed:?}");
    assert_eq!(client.closed().await, (4002, "auth timeout".to_owned()));
    client.close().await;
}

/// Conformance A4.
#[tokio::test]
async fn a4_a_strategy_that_never_answers_times_out_and_the_connection_ends() {
    const DEADLINE: Duration = Duration::from_millis(60);
    let stuck = Auth::credentials(|_login: Login, _meta| async move {
        std::future::pending::<Result<TestUser, &str>>().await
    })
    .timeout(DEADLINE);
    let running = start_with_auth(|builder| builder.auth(stuck)).await;
    let mut client = running.raw_connect().await;
    client
        .emit("__auth", json!({ "name": "ann", "password": "pw" }))
        .await;
    // The close handshake finishing shows the stuck check no longer holds
    // the connection (and its slot).
    refused(client, "auth timeout", 4002).await;
    no_connection_left(&running).await;
    assert_eq!(
        hooks(&running),
        vec![Record::Hook("on_auth_error", "auth timeout".into())]
    );
}

/// Conformance A5.
#[tokio::test]
async fn a5_events_before_auth_are_not_dispatched_and_get_not_authenticated() {
    let calls = Arc::new(AtomicUsize::new(0));
    let running = start_with_auth(|builder| {
        builder.auth(credentials(&calls).timeout(Duration::from_secs(30)))
    })
    .await;
    let mut client = running.raw_connect().await;
    client.emit("say", json!({ "text": "too early" })).await;
    assert_eq!(client.next().await, auth_error("not authenticated"));
    client.emit("echo", json!("too early")).await;
    assert_eq!(client.next().await, auth_error("not authenticated"));
    client
        .request("divide", json!({ "num": 4, "den": 2 }), 1)
        .await;
    assert_eq!(client.next().await, auth_error("not authenticated"));
    client.emit("no_such_event", json!(1)).await;
    assert_eq!(client.next().await, auth_error("not authenticated"));

    // Still open, still waiting for credentials: they are accepted now.
    assert_eq!(running.server.stats().live, 1);
    assert_eq!(running.server.connection_count(), 0);
    client
        .emit("__auth", json!({ "name": "ann", "password": "pw" }))
        .await;
    assert_eq!(client.next().await["event"], "auth:success");
    client.fence("authenticated").await;
    assert_eq!(
        running
            .recorder
            .matching(|r| matches!(r, Record::Handled(..))),
        vec![],
        "no handler ran for the early events"
    );
}

/// Conformance A6.
#[tokio::test]
async fn a6_a_second_auth_after_success_is_ignored() {
    let calls = Arc::new(AtomicUsize::new(0));
    let running = start_with_auth(|builder| builder.auth(credentials(&calls))).await;
    let mut client = running.raw_connect().await;
    client
        .emit("__auth", json!({ "name": "ann", "password": "pw" }))
        .await;
    assert_eq!(client.next().await["event"], "auth:success");
    // Neither a valid nor an invalid second attempt changes anything.
    client
        .emit("__auth", json!({ "name": "root", "password": "pw" }))
        .await;
    client
        .emit("__auth", json!({ "name": "root", "password": "nope" }))
        .await;
    client.fence("after the second auth").await;
    client.emit("who_am_i", Value::Null).await;
    assert_eq!(
        client.next().await,
        you(Some(TestUser {
            name: "ann".into(),
            admin: false
        }))
    );
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
#[tokio::test]
async fn a7_auth_without_auth_configured_is_ignored() {
    let running = start_with_auth(|builder| builder).await;
    let (mut client, id) = running.raw_client().await;
    client
        .emit("__auth", json!({ "name": "root", "password": "pw" }))
        .await;
    client.emit("__auth", json!("garbage")).await;
    client.fence("after auth").await;
    client.emit("who_am_i", Value::Null).await;
    assert_eq!(client.next().await, you(None));
    assert_eq!(
        hooks(&running),
        vec![
            Record::Connected(id),
            Record::Hook("on_connect user", "None".into()),
        ]
    );
}

/// Conformance A8.
#[tokio::test]
async fn a8_disconnecting_before_auth_fires_no_hook() {
    let calls = Arc::new(AtomicUsize::new(0));
    let running = start_with_auth(|builder| {
        builder.auth(credentials(&calls).timeout(Duration::from_secs(30)))
    })
    .await;
    let mut client = running.raw_connect().await;
    client.emit("echo", json!("hello?")).await;
    assert_eq!(client.next().await, auth_error("not authenticated"));
    assert_eq!(running.server.stats().live, 1);
    client.close().await;
    no_connection_left(&running).await;
    assert_eq!(hooks(&running), vec![]);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

/// Conformance A8.
#[tokio::test]
async fn a8_disconnecting_while_the_strategy_runs_fires_no_hook() {
    // The strategy is still checking the credentials when the client goes
    // away; its late success must not make the connection visible. The
    // strategy's delay is what a slow user database looks like: the client's
    // disconnect reaches the server within a millisecond, long before it.
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
    let mut client = running.raw_connect().await;
    client
        .emit("__auth", json!({ "name": "ann", "password": "pw" }))
        .await;
    tokio::time::timeout(liweb_tests::WAIT, started.notified())
        .await
        .expect("the strategy started");
    let gone = tokio::time::Instant::now();
    drop(client);
    no_connection_left(&running).await;
    assert!(
        gone.elapsed() >= CHECK_TAKES,
        "the connection ended only after the strategy's verdict"
    );
    assert_eq!(hooks(&running), vec![]);
    assert_eq!(running.server.stats().connections, 0);
}

/// Conformance A9.
#[tokio::test]
async fn a9_a_strategy_that_errors_or_panics_fails_auth_and_the_server_goes_on() {
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
        let mut client = running.raw_connect().await;
        client
            .emit("__auth", json!({ "name": name, "password": "pw" }))
            .await;
        refused(client, "invalid credentials", 4001).await;
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

    let mut client = running.raw_connect().await;
    client
        .emit("__auth", json!({ "name": "ann", "password": "pw" }))
        .await;
    assert_eq!(client.next().await["event"], "auth:success");
    client.fence("the server still serves").await;
    assert_eq!(running.server.stats().auth_failures, 2);
}

/// Conformance A10.
#[tokio::test]
async fn a10_identity_claims_of_the_client_are_never_trusted() {
    let calls = Arc::new(AtomicUsize::new(0));
    let running = start_with_auth(|builder| builder.auth(credentials(&calls))).await;
    let mut client = running.raw_connect().await;
    // A forged success is just an event of an unauthenticated client.
    client
        .emit(
            "auth:success",
            json!({ "user": { "name": "root", "admin": true } }),
        )
        .await;
    assert_eq!(client.next().await, auth_error("not authenticated"));
    // Claims next to the credentials are not the user either.
    client
        .send_text(
            &json!({
                "event": "__auth",
                "payload": { "name": "mallory", "password": "pw", "admin": true, "user": { "name": "root" } },
                "user": { "name": "root", "admin": true },
            })
            .to_string(),
        )
        .await;
    let mallory = TestUser {
        name: "mallory".into(),
        admin: false,
    };
    assert_eq!(
        client.next().await,
        json!({ "event": "auth:success", "payload": { "user": mallory } })
    );
    client
        .send_text(r#"{"event":"who_am_i","payload":null,"user":{"name":"root","admin":true}}"#)
        .await;
    assert_eq!(client.next().await, you(Some(mallory.clone())));
    // Forging a success after authenticating is an unknown event, not a new user.
    client
        .emit(
            "auth:success",
            json!({ "user": { "name": "root", "admin": true } }),
        )
        .await;
    assert_eq!(client.next().await["payload"]["code"], "unknown_event");
    client.emit("who_am_i", Value::Null).await;
    assert_eq!(client.next().await, you(Some(mallory)));
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

/// Conformance A11.
#[tokio::test]
async fn a11_credentials_in_the_upgrade_request_authenticate_without_auth() {
    let calls = Arc::new(AtomicUsize::new(0));
    let running = start_with_auth(|builder| builder.auth(request_or_credentials(&calls))).await;

    let mut request = running.url().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("x-token", "valid-hea".parse().unwrap());
    let mut by_header = connect(request).await.unwrap();
    assert_eq!(
        by_header.next().await,
        json!({ "event": "auth:success", "payload": { "user": { "name": "hea", "admin": false } } })
    );
    by_header.emit("who_am_i", Value::Null).await;
    assert_eq!(by_header.next().await["payload"]["name"], "hea");

    let mut by_query = connect(format!("{}?token=valid-que", running.url()))
        .await
        .unwrap();
    assert_eq!(
        by_query.next().await["payload"]["user"]["name"],
        json!("que")
    );
    by_query.fence("authenticated").await;

    // Without a token in the request, `__auth` still works.
    let mut by_event = running.raw_connect().await;
    by_event
        .emit("__auth", json!({ "name": "eve", "password": "x" }))
        .await;
    assert_eq!(
        by_event.next().await["payload"]["user"]["name"],
        json!("eve")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // A bad token in the request fails at once.
    let bad = connect(format!("{}?token=forged", running.url()))
        .await
        .unwrap();
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

/// Conformance A11.
#[tokio::test]
async fn a11_a_request_only_strategy_without_credentials_fails_as_missing() {
    let running = start_with_auth(|builder| {
        builder.auth(Auth::request(|meta: liweb::ConnMeta| async move {
            Ok::<_, &str>(
                meta.query_param("token")
                    .map(|name| TestUser { name, admin: false }),
            )
        }))
    })
    .await;
    let client = running.raw_connect().await;
    refused(client, "missing auth payload", 4005).await;

    let mut client = connect(format!("{}?token=ann", running.url()))
        .await
        .unwrap();
    assert_eq!(client.next().await["event"], "auth:success");
    // `__auth` is no way in for a request-only strategy; after success it is ignored.
    client
        .emit("__auth", json!({ "name": "root", "password": "pw" }))
        .await;
    client.fence("ignored").await;
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

/// Conformance A1 (JWT strategy, through `__auth`).
#[tokio::test]
async fn jwt_token_in_auth_event_authenticates_with_its_claims() {
    let running = start_jwt().await;
    let mut client = running.raw_connect().await;
    client
        .emit(
            "__auth",
            json!({ "token": token("jo", now() + 600, JWT_KEY) }),
        )
        .await;
    assert_eq!(
        client.next().await,
        json!({ "event": "auth:success", "payload": { "user": { "name": "jo", "admin": false } } })
    );
    client.emit("who_am_i", Value::Null).await;
    assert_eq!(client.next().await["payload"]["name"], "jo");
    assert_eq!(
        running
            .recorder
            .matching(|r| matches!(r, Record::Hook("on_connect user", _))),
        vec![Record::Hook("on_connect user", r#"Some("jo")"#.into())]
    );
}

/// Conformance A11 (JWT strategy).
#[tokio::test]
async fn jwt_token_in_query_or_bearer_header_authenticates_without_auth_event() {
    let running = start_jwt().await;
    let query = format!(
        "{}?token={}",
        running.url(),
        token("qu", now() + 600, JWT_KEY)
    );
    let mut by_query = connect(query).await.unwrap();
    assert_eq!(
        by_query.next().await["payload"]["user"]["name"],
        json!("qu")
    );
    by_query.fence("authenticated").await;

    let mut request = running.url().into_client_request().unwrap();
    request.headers_mut().insert(
        http::header::AUTHORIZATION,
        format!("Bearer {}", token("be", now() + 600, JWT_KEY))
            .parse()
            .unwrap(),
    );
    let mut by_header = connect(request).await.unwrap();
    assert_eq!(
        by_header.next().await["payload"]["user"]["name"],
        json!("be")
    );
    by_header.fence("authenticated").await;
    assert_eq!(running.server.connection_count(), 2);
}

/// Conformance A2 (JWT strategy).
#[tokio::test]
async fn jwt_expired_or_foreign_tokens_fail_with_invalid_credentials() {
    let running = start_jwt().await;
    // Expired well beyond the default leeway of a minute.
    let expired = token("old", now() - 3600, JWT_KEY);
    let foreign = token("forger", now() + 600, b"another key");
    for bad in [expired.clone(), foreign, "not.a.jwt".to_owned()] {
        let mut client = running.raw_connect().await;
        client.emit("__auth", json!({ "token": bad })).await;
        refused(client, "invalid credentials", 4001).await;
    }
    let in_query = connect(format!("{}?token={expired}", running.url()))
        .await
        .unwrap();
    refused(in_query, "invalid credentials", 4001).await;

    no_connection_left(&running).await;
    assert_eq!(running.server.stats().auth_failures, 4);
    assert!(
        running
            .recorder
            .matching(|r| matches!(r, Record::Connected(_)))
            .is_empty()
    );
}

/// A disconnect of a client that authenticated fires `on_disconnect` once,
/// like any other.
#[tokio::test]
async fn an_authenticated_client_that_leaves_fires_on_disconnect_once() {
    let calls = Arc::new(AtomicUsize::new(0));
    let running = start_with_auth(|builder| builder.auth(credentials(&calls))).await;
    let mut client: RawClient = running.raw_connect().await;
    client
        .emit("__auth", json!({ "name": "ann", "password": "pw" }))
        .await;
    assert_eq!(client.next().await["event"], "auth:success");
    let id = running.recorder.conns()[0].id();
    client.close().await;
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
