//! Conformance, section H (heartbeat and liveness): pings, the ping
//! timeout, the idle timeout, and that nothing of a closed connection
//! outlives it. Each test is written once and runs on every transport ×
//! codec combination (`h1_...::ws_json`, `h1_...::tcp_bincode`, ...): the
//! pings are WebSocket pings or the TCP transport's `PING` frames.

use std::time::Duration;

use liweb::{CloseCode, DisconnectReason};
use liweb_tests::{Heard, Record, Running, conformance, eventually, fence};
use tokio::time::Instant;

conformance! {
    /// Conformance H1.
    async fn h1_a_client_answering_pings_stays_connected_well_past_the_timeout(combo) {
        const INTERVAL: Duration = Duration::from_millis(20);
        const TIMEOUT: Duration = Duration::from_millis(40);
        let running = Running::start_with(|builder| builder.heartbeat(INTERVAL, TIMEOUT)).await;
        let (mut peer, id) = running.peer_on(combo).await;

        // Pings come every interval, so each read is short and the loop ends
        // soon after the period.
        let period = 10 * (INTERVAL + TIMEOUT);
        let started = Instant::now();
        let mut pings = 0;
        while started.elapsed() < period {
            match peer.heard().await {
                Heard::Ping => {
                    pings += 1;
                    peer.pong().await;
                }
                other => panic!("expected only pings, got {other:?}"),
            }
        }
        assert!(pings >= 5, "only {pings} pings in {period:?}");
        peer.fence("still connected").await;
        assert!(running.server.get(id).is_some());
        assert_eq!(running.server.stats().ping_timeouts, 0);
        assert!(
            running
                .recorder
                .matching(|r| matches!(r, Record::Disconnected(..)))
                .is_empty()
        );

        peer.close().await;
        assert!(matches!(
            running.recorder.disconnected(id).await,
            DisconnectReason::ClientClosed(_)
        ));

        // The typed client answers pings by itself, without being read.
        let (mut client, client_id) = running.client_on(combo).await;
        tokio::time::sleep(5 * (INTERVAL + TIMEOUT)).await;
        fence(&mut client, "typed still connected").await;
        assert!(running.server.get(client_id).is_some());
        assert_eq!(running.server.stats().ping_timeouts, 0);
    }

    /// Conformance H2.
    async fn h2_a_client_that_stops_answering_pings_is_closed_after_interval_and_timeout(combo) {
        const INTERVAL: Duration = Duration::from_millis(20);
        const TIMEOUT: Duration = Duration::from_millis(40);
        let running = Running::start_with(|builder| builder.heartbeat(INTERVAL, TIMEOUT)).await;
        let connecting = Instant::now();
        // The peer stops reading: its pings sit unanswered in the socket.
        let (mut peer, id) = running.peer_on(combo).await;

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

        // The connection is gone: what the peer finds is pings, then at most
        // the ping-timeout close (the server does not wait to write it to a
        // peer that stopped answering), then the end.
        let mut seen = Vec::new();
        loop {
            match peer.heard().await {
                Heard::Ping => seen.push("ping"),
                Heard::Close(code, reason) => {
                    assert_eq!((code, reason.as_str()), (4006, "ping timeout"), "{seen:?}");
                    seen.push("close");
                }
                Heard::End => break,
                other => panic!("unexpected {other:?} after {seen:?}"),
            }
        }
        assert_eq!(seen.first(), Some(&"ping"), "{seen:?}");
    }

    /// Conformance H3.
    async fn h3_a_silent_connection_is_closed_for_idleness_and_traffic_resets_the_timer(combo) {
        const IDLE: Duration = Duration::from_millis(80);
        // A close timeout longer than any wait: the close must end by handshake.
        let running = Running::start_with(|builder| {
            builder
                .no_heartbeat()
                .idle_timeout(IDLE)
                .close_timeout(Duration::from_secs(60))
        })
        .await;
        let (mut peer, id) = running.peer_on(combo).await;

        // Events every quarter of the idle timeout keep it open for three times as long.
        let busy_until = Instant::now() + 3 * IDLE;
        let mut sent = 0;
        let mut last_sent = Instant::now();
        while Instant::now() < busy_until {
            last_sent = Instant::now();
            peer.fence(&format!("busy {sent}")).await;
            sent += 1;
            tokio::time::sleep(IDLE / 4).await;
        }
        assert!(sent >= 8, "only {sent} events were sent");
        assert!(running.server.get(id).is_some(), "traffic kept it open");

        assert_eq!(peer.closed().await, (4004, "idle timeout".to_owned()));
        assert!(
            last_sent.elapsed() >= IDLE,
            "closed {:?} after the last event",
            last_sent.elapsed()
        );
        peer.close().await;
        assert_eq!(
            running.recorder.disconnected(id).await,
            DisconnectReason::ServerClosed(CloseCode::IdleTimeout)
        );
        assert_eq!(running.server.stats().idle_timeouts, 1);
    }

    /// Conformance H3.
    async fn h3_answering_pings_does_not_count_as_activity(combo) {
        const IDLE: Duration = Duration::from_millis(100);
        let running = Running::start_with(|builder| {
            builder
                .heartbeat(Duration::from_millis(10), Duration::from_secs(5))
                .idle_timeout(IDLE)
                .close_timeout(Duration::from_secs(60))
        })
        .await;
        let connecting = Instant::now();
        let (mut peer, id) = running.peer_on(combo).await;
        let mut pings = 0;
        let (code, reason) = loop {
            match peer.heard().await {
                Heard::Ping => {
                    pings += 1;
                    peer.pong().await;
                }
                Heard::Close(code, reason) => break (code, reason),
                other => panic!("expected pings then a close, got {other:?}"),
            }
        };
        assert_eq!((code, reason.as_str()), (4004, "idle timeout"));
        assert!(connecting.elapsed() >= IDLE);
        assert!(pings >= 2, "pings were answered meanwhile: {pings}");
        peer.close().await;
        assert_eq!(
            running.recorder.disconnected(id).await,
            DisconnectReason::ServerClosed(CloseCode::IdleTimeout)
        );
    }

    /// Conformance H4. On TCP a connection's task reads (and drops) what
    /// its peer still sends for up to a second after the connection ended,
    /// so that closing the socket does not reset it before the peer read
    /// the `CLOSE`; the stuck peer here never closes, so its task ends at
    /// that bound.
    async fn h4_no_task_of_a_closed_connection_outlives_it(combo) {
        let running = Running::start_with(|builder| {
            builder.heartbeat(Duration::from_millis(10), Duration::from_millis(30))
        })
        .await;
        let metrics = tokio::runtime::Handle::current().metrics();
        // The server's own tasks (the listeners, the presence sweep) are running.
        let baseline = metrics.num_alive_tasks();

        let mut peers = Vec::new();
        for n in 0..4 {
            let (mut peer, _) = running.peer_on(combo).await;
            peer.fence(&format!("peer {n}")).await;
            peers.push(peer);
        }
        // One more stops answering pings: it is closed by the ping timeout.
        let (_stuck, stuck_id) = running.peer_on(combo).await;
        assert!(metrics.num_alive_tasks() > baseline);
        assert_eq!(
            running.recorder.disconnected(stuck_id).await,
            DisconnectReason::ServerClosed(CloseCode::PingTimeout)
        );
        // The others may have been closed by the ping timeout meanwhile too
        // (they did not read); either way their close ends here.
        for peer in peers {
            peer.close().await;
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
}
