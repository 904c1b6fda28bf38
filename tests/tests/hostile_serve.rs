//! K3: clients that hold sockets without finishing a request, against
//! `liweb::serve`, with bystanders chatting throughout. Running out of file
//! descriptors is in `hostile_serve_descriptors.rs` (the limit is the
//! whole process's).

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures_util::future::join_all;
use liweb::{ServeHandle, ServeStats};
use liweb_tests::{Recorder, Running, TestIn, TestOut, WAIT, bystanders::Bystanders};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// The header-read timeout of these tests' servers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
/// How many slowloris sockets attack at once.
const DRIPS: usize = 50;
/// An upgrade request whose headers never end: the blank line is missing.
const UNFINISHED: &[u8] = b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

/// Waits until `stats` holds, or fails after [`WAIT`] with the last value.
async fn until(serving: &ServeHandle, what: &str, holds: impl Fn(&ServeStats) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = serving.stats();
        if holds(&stats) {
            return;
        }
        assert!(Instant::now() < deadline, "never {what}: {stats:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends [`UNFINISHED`] one byte every 20 ms, over and over, and returns
/// how long after it connected the server closed the socket (end of
/// stream, reset, or a failed write).
async fn drip_until_closed(mut stream: TcpStream, connected: Instant) -> Duration {
    let (mut read, mut write) = stream.split();
    let dripping = async {
        for byte in UNFINISHED.iter().cycle() {
            if write.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let closed = async {
        let mut buf = [0; 256];
        while let Ok(1..) = read.read(&mut buf).await {}
    };
    tokio::select! {
        () = dripping => {}
        () = closed => {}
    }
    connected.elapsed()
}

/// K3: sockets that send an upgrade request one byte at a time are closed
/// after the header-read timeout; a client connects normally meanwhile and
/// the bystanders lose nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k3_slowloris_sockets_are_closed_after_the_header_read_timeout() {
    let running = Running::start_serving(
        Recorder::default(),
        |builder| builder,
        |serve| serve.header_read_timeout(HEADER_TIMEOUT),
    )
    .await;
    let bystanders = Bystanders::start(&running).await;

    let mut drips = Vec::new();
    for _ in 0..DRIPS {
        let connected = Instant::now();
        let stream = TcpStream::connect(running.addr).await.unwrap();
        drips.push(tokio::spawn(drip_until_closed(stream, connected)));
    }
    until(&running.serving, "held every drip", |stats| {
        stats.open >= DRIPS + 2
    })
    .await;

    // The attack does not keep anyone out.
    let (mut client, _) = running.client().await;
    let stats = running.serving.stats();
    assert_eq!(
        stats.header_timeouts, 0,
        "the client was slower than the timeout, so it proves nothing: {stats:?}"
    );
    client.emit(TestIn::Echo("still here".to_owned())).unwrap();
    match tokio::time::timeout(WAIT, client.recv()).await {
        Ok(Some(liweb::client::Incoming::Event(TestOut::Echoed(text)))) => {
            assert_eq!(text, "still here")
        }
        other => panic!("the client got no echo during the attack: {other:?}"),
    }

    let lived = tokio::time::timeout(HEADER_TIMEOUT + WAIT, join_all(drips))
        .await
        .expect("a slowloris socket outlived the header-read timeout by 5 s");
    for lived in lived {
        let lived = lived.unwrap();
        assert!(
            lived >= HEADER_TIMEOUT - Duration::from_millis(50)
                && lived < HEADER_TIMEOUT + Duration::from_secs(2),
            "a slowloris socket was closed after {lived:?}, not after about {HEADER_TIMEOUT:?}"
        );
    }
    let stats = running.serving.stats();
    assert_eq!(stats.header_timeouts, DRIPS as u64, "{stats:?}");
    // The bystanders and the client are what is left.
    until(&running.serving, "closed the drips", |stats| {
        stats.open == 3
    })
    .await;

    let report = bystanders.finish().await;
    let total: u64 = report.sent.iter().sum();
    assert!(total >= 20, "{report:?}");
    assert_eq!(report.received, vec![total, total], "{report:?}");
}

/// K3: past `max_connections` (sockets, WebSocket connections included) a
/// new socket is answered `503` and closed; a client gets in as soon as a
/// socket closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k3_a_socket_over_the_connection_cap_gets_503_and_the_cap_counts_websockets() {
    let running = Running::start_serving(
        Recorder::default(),
        |builder| builder,
        |serve| serve.max_connections(4),
    )
    .await;
    let bystanders = Bystanders::start(&running).await;
    let mut idle = Vec::new();
    for _ in 0..2 {
        idle.push(TcpStream::connect(running.addr).await.unwrap());
    }
    until(&running.serving, "held the idle sockets", |stats| {
        stats.open == 4
    })
    .await;

    let mut extra = TcpStream::connect(running.addr).await.unwrap();
    extra.write_all(UNFINISHED).await.unwrap();
    extra.write_all(b"\r\n").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, extra.read_to_end(&mut answer))
        .await
        .expect("the socket over the cap was not closed")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 503 ") && answer.contains("connection: close"),
        "{answer}"
    );
    assert_eq!(running.serving.stats().refused_full, 1);

    drop(idle.pop());
    until(&running.serving, "closed the idle socket", |stats| {
        stats.open == 3
    })
    .await;
    let _client = running.client().await;
    assert_eq!(running.serving.stats().refused_full, 1);

    let report = bystanders.finish().await;
    let total: u64 = report.sent.iter().sum();
    assert_eq!(report.received, vec![total, total], "{report:?}");
}

/// Every socket `liweb::serve` accepts has `TCP_NODELAY` before a byte is
/// read: a WebSocket's small frames are not held back by Nagle's algorithm.
#[tokio::test]
async fn every_accepted_socket_has_tcp_nodelay() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let tapped = seen.clone();
    let running = Running::start_serving(
        Recorder::default(),
        |builder| builder,
        move |serve| {
            serve.tap_io(move |stream| tapped.lock().unwrap().push(stream.nodelay().unwrap()))
        },
    )
    .await;
    let _first = running.client().await;
    let _second = running.client().await;
    assert_eq!(*seen.lock().unwrap(), vec![true, true]);
}

/// The graceful shutdown stops accepting and ends the HTTP connections,
/// and leaves the WebSocket connections to `Server::shutdown`.
#[tokio::test]
async fn graceful_shutdown_stops_accepting_and_leaves_websockets_to_the_server() {
    let server = liweb_tests::builder(&Recorder::default()).build();
    let app = axum::Router::new().route("/ws", server.ws_route());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(
        liweb::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .into_future(),
    );
    let url = format!("ws://{addr}/ws");
    let mut client = tokio::time::timeout(WAIT, liweb_tests::TestClient::connect(&url))
        .await
        .unwrap()
        .unwrap();
    let mut idle = TcpStream::connect(addr).await.unwrap();
    // Accepted before the signal.
    tokio::time::sleep(Duration::from_millis(50)).await;

    stop.send(()).unwrap();
    tokio::time::timeout(WAIT, serving)
        .await
        .expect("serve did not end after its signal")
        .unwrap()
        .unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(WAIT, idle.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the idle HTTP connection stayed open: {read:?}"
    );
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");

    client.emit(TestIn::Echo("after".to_owned())).unwrap();
    match tokio::time::timeout(WAIT, client.recv()).await {
        Ok(Some(liweb::client::Incoming::Event(TestOut::Echoed(text)))) => {
            assert_eq!(text, "after")
        }
        other => panic!("the WebSocket did not outlive serve: {other:?}"),
    }
    tokio::time::timeout(WAIT, server.shutdown(Duration::from_secs(1)))
        .await
        .unwrap();
    assert_eq!(server.stats().live, 0);
}
