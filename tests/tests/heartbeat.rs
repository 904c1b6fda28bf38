//! Conformance, section H (heartbeat and liveness), over real WebSocket
//! sockets: pings, the ping timeout, the idle timeout, and that nothing of
//! a closed connection outlives it.

use std::time::Duration;

use liweb::{CloseCode, DisconnectReason};
use liweb_tests::{Record, Running, eventually};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// Conformance H1.
#[tokio::test]
async fn h1_a_client_answering_pings_stays_connected_well_past_the_timeout() {
    const INTERVAL: Duration = Duration::from_millis(20);
    const TIMEOUT: Duration = Duration::from_millis(40);
    let running = Running::start_with(|builder| builder.heartbeat(INTERVAL, TIMEOUT)).await;
    let (mut client, id) = running.raw_client().await;

    // Reading is what answers pings (tungstenite replies on the next read).
    let until = Instant::now() + 10 * (INTERVAL + TIMEOUT);
    let mut pings = 0;
    while Instant::now() < until {
        match tokio::time::timeout_at(until, client.next_message()).await {
            Ok(Some(Message::Ping(_))) => pings += 1,
            Ok(other) => panic!("expected only pings, got {other:?}"),
            Err(_until) => break,
        }
    }
    assert!(
        pings >= 5,
        "only {pings} pings in {:?}",
        10 * (INTERVAL + TIMEOUT)
    );
    client.fence("still connected").await;
    assert!(running.server.get(id).is_some());
    assert_eq!(running.server.stats().ping_timeouts, 0);
    assert!(
        running
            .recorder
            .matching(|r| matches!(r, Record::Disconnected(..)))
            .is_empty()
    );
}

/// Conformance H2.
#[tokio::test]
async fn h2_a_client_that_stops_answering_pings_is_closed_after_interval_and_timeout() {
    const INTERVAL: Duration = Duration::from_millis(20);
    const TIMEOUT: Duration = Duration::from_millis(40);
    let running = Running::start_with(|builder| builder.heartbeat(INTERVAL, TIMEOUT)).await;
    let connecting = Instant::now();
    // The client stops reading: its pings sit unanswered in the socket.
    let (mut client, id) = running.raw_client().await;

    assert_eq!(
        running.recorder.disconnected(id).await,
        DisconnectReason::ServerClosed(CloseCode::PingTimeout)
    );
    let elapsed = connecting.elapsed();
    assert!(
        elapsed >= INTERVAL + TIMEOUT,
        "closed after {elapsed:?}, before interval + timeout"
    );
    assert_eq!(running.server.stats().ping_timeouts, 1);
    assert_eq!(running.server.connection_count(), 0);

    // The connection is gone: what the client finds is pings, then at most
    // the ping-timeout close, then the end.
    let mut seen = Vec::new();
    while let Some(message) = client.next_message().await {
        match message {
            Message::Ping(_) => seen.push("ping".to_owned()),
            Message::Close(frame) => {
                let code = frame.map(|frame| u16::from(frame.code));
                assert_eq!(code, Some(4006), "{seen:?}");
                seen.push("close".to_owned());
            }
            other => panic!("unexpected {other:?} after {seen:?}"),
        }
    }
    assert_eq!(seen.first().map(String::as_str), Some("ping"), "{seen:?}");
}

/// Conformance H3.
#[tokio::test]
async fn h3_a_silent_connection_is_closed_for_idleness_and_traffic_resets_the_timer() {
    const IDLE: Duration = Duration::from_millis(80);
    // A close timeout longer than any wait: the close must end by handshake.
    let running = Running::start_with(|builder| {
        builder
            .no_heartbeat()
            .idle_timeout(IDLE)
            .close_timeout(Duration::from_secs(60))
    })
    .await;
    let (mut client, id) = running.raw_client().await;

    // Events every quarter of the idle timeout keep it open for three times as long.
    let busy_until = Instant::now() + 3 * IDLE;
    let mut sent = 0;
    let mut last_sent = Instant::now();
    while Instant::now() < busy_until {
        last_sent = Instant::now();
        client.fence(&format!("busy {sent}")).await;
        sent += 1;
        tokio::time::sleep(IDLE / 4).await;
    }
    assert!(sent >= 8, "only {sent} events were sent");
    assert!(running.server.get(id).is_some(), "traffic kept it open");

    assert_eq!(client.closed().await, (4004, "idle timeout".to_owned()));
    assert!(
        last_sent.elapsed() >= IDLE,
        "closed {:?} after the last event",
        last_sent.elapsed()
    );
    client.close().await;
    assert_eq!(
        running.recorder.disconnected(id).await,
        DisconnectReason::ServerClosed(CloseCode::IdleTimeout)
    );
    assert_eq!(running.server.stats().idle_timeouts, 1);
}

/// Conformance H3.
#[tokio::test]
async fn h3_answering_pings_does_not_count_as_activity() {
    const IDLE: Duration = Duration::from_millis(100);
    let running = Running::start_with(|builder| {
        builder
            .heartbeat(Duration::from_millis(10), Duration::from_secs(5))
            .idle_timeout(IDLE)
            .close_timeout(Duration::from_secs(60))
    })
    .await;
    let connecting = Instant::now();
    let (mut client, id) = running.raw_client().await;
    let mut pings = 0;
    let close = loop {
        match client.next_message().await {
            Some(Message::Ping(_)) => pings += 1,
            Some(Message::Close(frame)) => break frame.expect("a close code"),
            other => panic!("expected pings then a close, got {other:?}"),
        }
    };
    assert_eq!(u16::from(close.code), 4004);
    assert!(connecting.elapsed() >= IDLE);
    assert!(pings >= 2, "pings were answered meanwhile: {pings}");
    client.close().await;
    assert_eq!(
        running.recorder.disconnected(id).await,
        DisconnectReason::ServerClosed(CloseCode::IdleTimeout)
    );
}

/// Conformance H4.
#[tokio::test]
async fn h4_no_task_of_a_closed_connection_outlives_it() {
    let running = Running::start_with(|builder| {
        builder.heartbeat(Duration::from_millis(10), Duration::from_millis(30))
    })
    .await;
    let metrics = tokio::runtime::Handle::current().metrics();
    // The server's own tasks (the listener, the presence sweep) are running.
    let baseline = metrics.num_alive_tasks();

    let mut clients = Vec::new();
    for n in 0..4 {
        let (mut client, _) = running.raw_client().await;
        client.fence(&format!("client {n}")).await;
        clients.push(client);
    }
    // One more stops answering pings: it is closed by the ping timeout.
    let (_stuck, stuck_id) = running.raw_client().await;
    assert!(metrics.num_alive_tasks() > baseline);
    assert_eq!(
        running.recorder.disconnected(stuck_id).await,
        DisconnectReason::ServerClosed(CloseCode::PingTimeout)
    );
    // The others may have been closed by the ping timeout meanwhile too
    // (they did not read); either way their close handshake ends here.
    for client in clients {
        client.close().await;
    }

    eventually(
        "the connections' tasks to end",
        || (metrics.num_alive_tasks(), running.server.stats().live),
        |&(tasks, live)| tasks == baseline && live == 0,
    )
    .await;
    assert_eq!(
        running
            .recorder
            .matching(|r| matches!(r, Record::Disconnected(..)))
            .len(),
        5,
        "each connection ended once"
    );
}
