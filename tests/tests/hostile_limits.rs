//! Hostile traffic against the defaults a public server runs with: a client
//! that floods events is rate limited, a client that guesses secrets is
//! throttled by address. Bystanders chat throughout and lose nothing
//! (`liweb_tests::bystanders`).

use std::{net::IpAddr, time::Instant};

use liweb::auth::Auth;
use liweb_tests::{Running, bystanders::Bystanders, connect};
use serde_json::{Value, json};

/// K7: with no limit configured, a client flooding events is held to the
/// default rate (100 a second, a burst of 100): the rest are answered
/// `rate_limited` and dropped unread, and the bystanders lose nothing.
#[tokio::test]
async fn k7_a_flooder_is_rate_limited_by_default_and_bystanders_lose_nothing() {
    let running = Running::start().await;
    let bystanders = Bystanders::start(&running).await;
    let (mut flooder, _) = running.raw_client().await;

    const SENT: usize = 2_000;
    let started = Instant::now();
    for n in 0..SENT {
        flooder.emit("echo", json!(format!("flood {n}"))).await;
    }
    let (mut echoed, mut limited) = (0, 0);
    for _ in 0..SENT {
        let answer = flooder.next().await;
        match answer["event"].as_str() {
            Some("echoed") => echoed += 1,
            Some("error") if answer["payload"]["code"] == json!("rate_limited") => limited += 1,
            _ => panic!("unexpected answer to the flood: {answer}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // The burst, and what the bucket refilled while the flood went on.
    let allowed = 100 + (100.0 * elapsed).ceil() as usize;
    assert!(
        echoed <= allowed,
        "{echoed} handled in {elapsed:.2} s, the limit allows {allowed}"
    );
    assert!(echoed >= 100, "the burst of 100 is handled: {echoed}");
    assert_eq!(echoed + limited, SENT);
    assert_eq!(running.server.stats().rate_limited, limited as u64);

    let report = bystanders.finish().await;
    println!("bystanders during the flood: {report:?}");
}

/// `__auth` with `secret` from a raw connection; returns the first answer.
async fn try_secret(client: &mut liweb_tests::RawClient, secret: &str) -> Value {
    client.emit("__auth", json!({ "secret": secret })).await;
    client.next().await
}

/// K8: a remote address that fails to authenticate 30 times in a minute
/// (the default) is refused without its credentials being checked, with
/// `too many failed attempts` and close 4001, even with the right secret;
/// another address is not affected.
#[tokio::test]
async fn k8_failed_authentications_are_throttled_per_remote_address() {
    let running = Running::start_with(|builder| builder.auth(Auth::secret("s3cret"))).await;
    let url = running.url();
    for attempt in 0..30 {
        let mut guesser = connect(url.as_str()).await.expect("upgrade");
        let answer = try_secret(&mut guesser, &format!("guess {attempt}")).await;
        assert_eq!(
            answer["payload"]["reason"],
            json!("invalid secret"),
            "{answer}"
        );
        assert_eq!(guesser.closed().await.0, 4001);
    }
    // The 31st try fails unchecked: even the right secret.
    let mut guesser = connect(url.as_str()).await.expect("upgrade");
    let answer = try_secret(&mut guesser, "s3cret").await;
    assert_eq!(
        answer,
        json!({ "event": "auth:error", "payload": { "reason": "too many failed attempts" } })
    );
    assert_eq!(
        guesser.closed().await,
        (4001, "too many failed attempts".to_owned())
    );
    let stats = running.server.stats();
    assert_eq!((stats.auth_failures, stats.auth_throttled), (30, 1));
    assert_eq!(stats.connections, 0);

    // Another address authenticates as usual.
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    let mut client = liweb_tests::RawClient::connect_from(running.addr, other)
        .await
        .expect("upgrade from 127.0.0.2");
    let answer = try_secret(&mut client, "s3cret").await;
    assert_eq!(answer["event"], json!("auth:success"), "{answer}");
    client.fence("in").await;
}

/// K8: the limit is the application's to lift.
#[tokio::test]
async fn k8_without_the_limit_failures_are_not_throttled() {
    let running = Running::start_with(|builder| {
        builder
            .auth(Auth::secret("s3cret"))
            .max_auth_failures_per_minute(None)
    })
    .await;
    let url = running.url();
    for attempt in 0..40 {
        let mut guesser = connect(url.as_str()).await.expect("upgrade");
        let answer = try_secret(&mut guesser, &format!("guess {attempt}")).await;
        assert_eq!(
            answer["payload"]["reason"],
            json!("invalid secret"),
            "{answer}"
        );
    }
    let mut client = connect(url.as_str()).await.expect("upgrade");
    let answer = try_secret(&mut client, "s3cret").await;
    assert_eq!(answer["event"], json!("auth:success"), "{answer}");
    assert_eq!(running.server.stats().auth_throttled, 0);
}
