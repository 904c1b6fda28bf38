//! Limits, over real sockets: the origin allow-list (C3, C4, per
//! transport × codec),
//! the connection limit, the rate limit, and the outbound queue limit of a
//! client that never reads (L1).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use liweb::{CloseCode, DisconnectReason};
use liweb_tests::{Record, Running, WAIT, conformance, connect, eventually};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

fn connects(running: &Running) -> usize {
    running
        .recorder
        .matching(|r| matches!(r, Record::Connected(_)))
        .len()
}

conformance! {
    /// Conformance C3: origins are an HTTP matter, so WebSocket only.
    on [ws_json, ws_msgpack, ws_bincode]
    async fn c3_an_origin_not_on_the_allow_list_is_refused_with_403_and_no_hook(combo) {
        let running = Running::start_with(|builder| {
            builder.allowed_origins(["http://a.example", "https://b.example"])
        })
        .await;
        for origin in [
            "http://evil.example",
            "http://a.example:8080",
            "https://a.example",
            "null",
        ] {
            let mut request = running.ws_request(combo.codec);
            request
                .headers_mut()
                .insert(http::header::ORIGIN, origin.parse().unwrap());
            let refused = running.open_ws_peer(combo.codec, request).await.err();
            assert_eq!(refused, Some(http::StatusCode::FORBIDDEN), "for {origin}");
        }
        assert_eq!(running.server.stats().rejected_origin, 4);

        // An allowed origin gets in; it is the only connection the hooks saw.
        let mut request = running.ws_request(combo.codec);
        request
            .headers_mut()
            .insert(http::header::ORIGIN, "https://b.example".parse().unwrap());
        let mut allowed = running
            .open_ws_peer(combo.codec, request)
            .await
            .expect("an allowed origin");
        allowed.fence("allowed").await;
        assert_eq!(connects(&running), 1);
        assert_eq!(running.server.stats().live, 1);
    }

    /// Conformance C4: a client without an Origin header (every TCP client,
    /// and non-browser WebSocket clients) is accepted with an allow-list set.
    async fn c4_no_origin_header_is_accepted_with_an_allow_list(combo) {
        let running =
            Running::start_with(|builder| builder.allowed_origins(["http://a.example"])).await;
        let request = running.ws_request(combo.codec);
        assert!(request.headers().get(http::header::ORIGIN).is_none());
        let (mut peer, id) = running.peer_on(combo).await;
        peer.fence("no origin").await;
        assert!(running.server.get(id).is_some());
        assert_eq!(running.server.stats().rejected_origin, 0);
    }
}

/// The connection limit: the upgrade over it gets 503, and a place freed
/// is a place taken again.
#[tokio::test]
async fn max_connections_refuses_the_extra_upgrade_with_503() {
    let running = Running::start_with(|builder| builder.max_connections(2)).await;
    let (mut first, _) = running.raw_client().await;
    let (_second, _) = running.raw_client().await;
    assert_eq!(
        connect(running.url()).await.err(),
        Some(http::StatusCode::SERVICE_UNAVAILABLE)
    );
    let stats = running.server.stats();
    assert_eq!((stats.rejected_full, stats.live), (1, 2));
    assert_eq!(connects(&running), 2, "no hook fired for the refused one");
    first.fence("the others are unaffected").await;

    first.close().await;
    eventually(
        "the first place to be freed",
        || running.server.stats().live,
        |live| *live == 1,
    )
    .await;
    let (mut third, _) = running.raw_client().await;
    third.fence("a freed place is taken").await;
    assert_eq!(running.server.stats().rejected_full, 1);
}

/// The rate limit: events over `max_events_per_second` get `rate_limited`
/// and reach no handler.
#[tokio::test]
async fn events_over_the_rate_limit_get_rate_limited_and_are_not_handled() {
    const PER_SECOND: u32 = 4;
    const BURST: usize = 10;
    let running = Running::start_with(|builder| builder.max_events_per_second(PER_SECOND)).await;
    // A socket of its own: the burst goes out in one write, so it arrives
    // well within a token's refill time.
    let (mut socket, _) = tokio_tungstenite::connect_async(running.url())
        .await
        .unwrap();
    for n in 0..BURST {
        let frame = json!({ "event": "say", "payload": { "text": n.to_string() } });
        socket.feed(Message::text(frame.to_string())).await.unwrap();
    }
    socket.flush().await.unwrap();

    let limited = BURST - PER_SECOND as usize;
    for _ in 0..limited {
        let frame = tokio::time::timeout(WAIT, socket.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let error: serde_json::Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
        assert_eq!(error["event"], "error");
        assert_eq!(error["payload"]["code"], "rate_limited");
    }
    // Fence: retry an echo until a token is back, counting what is dropped meanwhile.
    let mut dropped_fences = 0;
    loop {
        socket
            .send(Message::text(r#"{"event":"echo","payload":"fence"}"#))
            .await
            .unwrap();
        let frame = tokio::time::timeout(WAIT, socket.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let frame: serde_json::Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
        if frame["event"] == "echoed" {
            break;
        }
        assert_eq!(frame["payload"]["code"], "rate_limited");
        dropped_fences += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let said: Vec<_> = running
        .recorder
        .matching(|r| matches!(r, Record::Handled("say_first", _)));
    assert_eq!(
        said,
        (0..PER_SECOND)
            .map(|n| Record::Handled("say_first", format!("{n}|")))
            .collect::<Vec<_>>(),
        "the first {PER_SECOND} were handled, the rest dropped"
    );
    assert_eq!(
        running.server.stats().rate_limited,
        (limited + dropped_fences) as u64
    );
}

/// Conformance L1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l1_a_client_that_never_reads_stays_within_the_queue_limit_and_is_closed() {
    const LIMIT: usize = 256 * 1024;
    const SIZE: usize = 32 * 1024;
    // Far more than the loopback socket buffers hold, so the writer blocks.
    const COUNT: usize = 1000;
    let running = Running::start_with(|builder| {
        builder
            .max_queue_bytes(LIMIT)
            .close_timeout(Duration::from_millis(100))
            .no_heartbeat()
    })
    .await;
    // The stuck client's receive buffer is tiny, so the server's writer
    // blocks within a few frames and the backlog stays in its queue: with
    // the kernel's usual buffers the writer could drain a full queue into
    // them before the watcher looked, and the test would prove nothing.
    let before = running.recorder.conns().len();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = tokio::time::timeout(WAIT, socket.connect(running.addr))
        .await
        .expect("connect timed out")
        .unwrap();
    let (_stuck, _) =
        tokio::time::timeout(WAIT, tokio_tungstenite::client_async(running.url(), stream))
            .await
            .expect("upgrade timed out")
            .unwrap();
    let stuck_id = running.connected(before).await;
    let stuck = running.conn(stuck_id);
    let (mut reader, reader_id) = running.raw_client().await;

    // Watches the stuck connection's queue while the flood runs.
    let most = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    // A thread of its own, spinning: the backlog can be short-lived (the
    // writer moves frames on into the WebSocket's own buffer), and a task
    // on a loaded runtime could miss it. Once more after `done`.
    let watcher = std::thread::spawn({
        let (most, done, stuck) = (Arc::clone(&most), Arc::clone(&done), stuck.clone());
        move || {
            loop {
                let last = done.load(Ordering::Acquire);
                most.fetch_max(stuck.queued_bytes(), Ordering::AcqRel);
                if last {
                    break;
                }
                std::thread::yield_now();
            }
        }
    });

    reader
        .emit("flood", json!({ "size": SIZE, "count": COUNT }))
        .await;
    // The reader gets every message, in full, while the stuck one is dealt with.
    for n in 0..COUNT {
        let frame = reader.next().await;
        assert_eq!(frame["event"], "flood", "message {n}");
        assert_eq!(frame["payload"].as_str().map(str::len), Some(SIZE));
    }
    reader.fence("after the flood").await;

    assert_eq!(
        running.recorder.disconnected(stuck_id).await,
        DisconnectReason::ServerClosed(CloseCode::SlowConsumer)
    );
    done.store(true, Ordering::Release);
    watcher.join().unwrap();
    let most = most.load(Ordering::Acquire);
    assert!(most <= LIMIT, "{most} bytes queued, over the {LIMIT} limit");
    assert!(most > 0, "the watcher saw the backlog grow");
    assert!(stuck.queued_bytes() <= LIMIT);
    let stats = running.server.stats();
    assert_eq!(stats.slow_consumers, 1);
    assert!(running.server.get(reader_id).is_some());
    assert!(running.server.get(stuck_id).is_none());
}
