//! Hostile traffic against the outbound side (section K): pings sent
//! without reading the pongs (K1), policy closes that must reach the client
//! (K6), and the server-wide outbound budget (K5). Two bystanders chat
//! through every attack and must lose nothing.
//!
//! The attackers write WebSocket frames by hand on a plain TCP socket:
//! nothing reads for them unless the test does.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use liweb::{CloseCode, DisconnectReason, auth::Auth};
use liweb_tests::{
    RawTcp, RoomRef, Running, TcpFrame, TestIn, TestOut, WAIT, bystanders::Bystanders, eventually,
    next_event,
};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const SECRET: &str = "s3cret";

/// Opens a TCP connection whose receive buffer is tiny (so the server's
/// writes block soon after the client stops reading) and upgrades it to a
/// WebSocket by hand.
async fn upgrade(addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = tokio::time::timeout(WAIT, socket.connect(addr))
        .await
        .expect("connect timed out")
        .unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    // The response, byte by byte, so nothing after it is consumed.
    let mut response = Vec::new();
    while !response.ends_with(b"\r\n\r\n") {
        let byte = tokio::time::timeout(WAIT, stream.read_u8())
            .await
            .expect("the upgrade response timed out")
            .expect("the upgrade response ended early");
        response.push(byte);
    }
    let response = String::from_utf8_lossy(&response);
    assert!(
        response.starts_with("HTTP/1.1 101"),
        "upgrade refused: {response}"
    );
    stream
}

/// One masked client frame (the mask key is zero, so the payload is as it
/// is on the wire).
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        len @ 0..=125 => frame.push(0x80 | u8::try_from(len).unwrap()),
        len @ 126..=0xFFFF => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
        }
        len => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&u64::try_from(len).unwrap().to_be_bytes());
        }
    }
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(payload);
    frame
}

fn text(text: &str) -> Vec<u8> {
    frame(0x1, text.as_bytes())
}

fn auth_frame() -> Vec<u8> {
    text(&json!({ "event": "__auth", "payload": { "secret": SECRET } }).to_string())
}

/// One frame the server sent: its opcode and payload.
async fn read_frame(stream: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).await.ok()?;
    let len = match head[1] & 0x7F {
        126 => usize::from(stream.read_u16().await.ok()?),
        127 => usize::try_from(stream.read_u64().await.ok()?).ok()?,
        len => usize::from(len),
    };
    let mut payload = vec![0; len];
    stream.read_exact(&mut payload).await.ok()?;
    Some((head[0] & 0x0F, payload))
}

/// What a client that starts reading finds: how many frames of each kind
/// came before the close, and the close code (`None`: the stream ended or
/// broke without a close frame, as a browser's 1006).
#[derive(Debug, Default)]
struct Read {
    pongs: usize,
    data: usize,
    close: Option<u16>,
}

async fn read_until_close(stream: &mut TcpStream) -> Read {
    let mut read = Read::default();
    let reading = async {
        while let Some((opcode, payload)) = read_frame(stream).await {
            match opcode {
                0xA => read.pongs += 1,
                0x8 => {
                    read.close = payload
                        .get(..2)
                        .map(|code| u16::from_be_bytes([code[0], code[1]]));
                    // The client's half of the close handshake.
                    let _ = stream
                        .write_all(&frame(0x8, &payload[..2.min(payload.len())]))
                        .await;
                    return;
                }
                _ => read.data += 1,
            }
        }
    };
    tokio::time::timeout(WAIT * 4, reading)
        .await
        .expect("reading up to the close frame timed out");
    read
}

/// Pings (125 bytes each) until the server stops reading them, which it
/// does once it has closed the connection; returns how many were sent.
/// Fails if the server still reads after `max`.
async fn flood_pings(stream: &mut TcpStream, max: usize) -> usize {
    let batch: Vec<u8> = (0..64).flat_map(|_| frame(0x9, &[b'p'; 125])).collect();
    let mut sent = 0;
    while sent < max {
        match tokio::time::timeout(Duration::from_millis(500), stream.write_all(&batch)).await {
            Ok(Ok(())) => sent += 64,
            // Blocked: the server no longer reads.
            Err(_) => return sent,
            Ok(Err(err)) => panic!("the server reset the flooding client: {err}"),
        }
    }
    panic!("the server still reads after {sent} pings");
}

/// K1 for one attacker: pings without reading, then read what arrives.
async fn ping_flood(running: &Running, authenticate: bool) {
    let mut attacker = upgrade(running.addr).await;
    if authenticate {
        attacker.write_all(&auth_frame()).await.unwrap();
    }
    let sent = flood_pings(&mut attacker, 2_000_000).await;
    let read = read_until_close(&mut attacker).await;
    assert_eq!(
        read.close,
        Some(CloseCode::SlowConsumer.as_u16()),
        "after {sent} pings: {read:?}"
    );
    // What reached the client is what the server held for it at most:
    // the kernel's buffers and a bounded write buffer, not every pong.
    assert!(
        read.pongs * 127 < 16 * 1024 * 1024,
        "{} pong bytes were held for a client that did not read ({sent} pings)",
        read.pongs * 127
    );
    assert!(
        read.pongs < sent,
        "every pong was kept: {read:?}, {sent} pings"
    );
}

/// K1: a client that sends pings and never reads the pongs is closed with
/// the slow-consumer code once it owes more than its outbound budget; the
/// bystanders lose nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k1_a_ping_flood_without_reading_is_closed_as_a_slow_consumer() {
    let running = Running::start_with(|builder| {
        builder
            .max_queue_bytes(64 * 1024)
            .close_timeout(Duration::from_secs(10))
            .no_heartbeat()
    })
    .await;
    let bystanders = Bystanders::start(&running).await;
    let before = running.recorder.conns().len();
    ping_flood(&running, false).await;
    let attacker = running.recorder.conns()[before].id();
    assert_eq!(
        running.recorder.disconnected(attacker).await,
        DisconnectReason::ServerClosed(CloseCode::SlowConsumer)
    );
    assert_eq!(running.server.stats().slow_consumers, 1);
    bystanders.finish().await;
}

/// K1 before authentication: the same flood from a client that never
/// sends `__auth` is closed the same way, before its auth deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k1_a_ping_flood_before_authentication_is_closed_as_a_slow_consumer() {
    let running = Running::start_with(|builder| {
        builder
            .auth(Auth::secret(SECRET).timeout(Duration::from_secs(60)))
            .max_queue_bytes(64 * 1024)
            .close_timeout(Duration::from_secs(10))
            .no_heartbeat()
    })
    .await;
    let bystanders = Bystanders::start_authenticated(&running, json!({ "secret": SECRET })).await;
    ping_flood(&running, false).await;
    eventually(
        "the attacker's end",
        || running.server.stats().slow_consumers,
        |&closed| closed == 1,
    )
    .await;
    // It never authenticated: the application never saw it.
    assert_eq!(running.server.stats().connections, 2);
    bystanders.finish().await;
}

/// K1 after authentication, on an authenticating server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k1_a_ping_flood_after_authentication_is_closed_as_a_slow_consumer() {
    let running = Running::start_with(|builder| {
        builder
            .auth(Auth::secret(SECRET))
            .max_queue_bytes(64 * 1024)
            .close_timeout(Duration::from_secs(10))
            .no_heartbeat()
    })
    .await;
    let bystanders = Bystanders::start_authenticated(&running, json!({ "secret": SECRET })).await;
    ping_flood(&running, true).await;
    eventually(
        "the attacker's end",
        || running.server.stats().slow_consumers,
        |&closed| closed == 1,
    )
    .await;
    bystanders.finish().await;
}

/// A stalled member of `room`: upgraded by hand with a tiny receive buffer,
/// joined, then never reading. Returns its stream and id.
async fn stalled_member(running: &Running, rooms: &[RoomRef]) -> (TcpStream, liweb::ConnId) {
    let before = running.recorder.conns().len();
    let mut stream = upgrade(running.addr).await;
    let id = running.connected(before).await;
    for room in rooms {
        let join = json!({ "event": "join", "payload": room });
        stream.write_all(&text(&join.to_string())).await.unwrap();
    }
    let conn = running.conn(id);
    eventually(
        "the stalled member's joins",
        || conn.room_count(),
        |&count| count == rooms.len(),
    )
    .await;
    (stream, id)
}

/// K6: a slow consumer's close jumps its backlog: once the client reads
/// again it finds the 4003 close frame after what the socket already held,
/// not after the whole backlog and not as a reset (1006).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k6_a_slow_consumer_reads_its_close_code_ahead_of_the_backlog() {
    const LIMIT: usize = 256 * 1024;
    const SIZE: usize = 16 * 1024;
    let running = Running::start_with(|builder| {
        builder
            .max_queue_bytes(LIMIT)
            .close_timeout(Duration::from_secs(10))
            .no_heartbeat()
            // The sender fills the backlog faster than the default allows.
            .max_events_per_second(None)
    })
    .await;
    let bystanders = Bystanders::start(&running).await;
    let room = RoomRef::new("k6", "slow");
    let (mut stuck, stuck_id) = stalled_member(&running, std::slice::from_ref(&room)).await;
    let stuck_conn = running.conn(stuck_id);
    let (mut sender, _) = running.client().await;
    let mut sent = 0;
    while !stuck_conn.is_closed() {
        assert!(sent < 4096, "the stalled member was never closed");
        sender
            .emit(TestIn::RoomEmit {
                room: room.clone(),
                text: "x".repeat(SIZE),
                target: liweb_tests::Target::Everyone,
            })
            .unwrap();
        assert!(matches!(next_event(&mut sender).await, TestOut::Sent(_)));
        sent += 1;
    }
    // The backlog was dropped with the close, not kept behind it.
    eventually(
        "the backlog's drop",
        || stuck_conn.queued_bytes(),
        |&queued| queued == 0,
    )
    .await;
    let read = read_until_close(&mut stuck).await;
    assert_eq!(
        read.close,
        Some(CloseCode::SlowConsumer.as_u16()),
        "{read:?}"
    );
    assert!(
        read.data < sent,
        "the whole backlog came first: {read:?}, {sent} sent"
    );
    assert_eq!(
        running.recorder.disconnected(stuck_id).await,
        DisconnectReason::ServerClosed(CloseCode::SlowConsumer)
    );
    bystanders.finish().await;
}

/// K6: a frame too large pipelined right after `__auth` is answered with
/// 1009, which the client reads, not a reset; 20 times in a row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k6_an_oversized_frame_pipelined_after_auth_gets_1009_not_a_reset() {
    let running = Running::start_with(|builder| builder.auth(Auth::secret(SECRET))).await;
    let bystanders = Bystanders::start_authenticated(&running, json!({ "secret": SECRET })).await;
    let oversized = text(&"x".repeat(256 * 1024));
    for attempt in 0..20 {
        let mut client = upgrade(running.addr).await;
        let mut bytes = auth_frame();
        bytes.extend_from_slice(&oversized);
        client.write_all(&bytes).await.unwrap();
        let read = read_until_close(&mut client).await;
        assert_eq!(
            read.close,
            Some(CloseCode::TooLarge.as_u16()),
            "attempt {attempt}: {read:?}"
        );
    }
    bystanders.finish().await;
}

/// K6 over TCP: the same pipelined oversized frame gets its `CLOSE` 1009.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k6_an_oversized_tcp_frame_pipelined_after_auth_gets_1009_not_a_reset() {
    let running = Running::start_with(|builder| builder.auth(Auth::secret(SECRET))).await;
    let bystanders = Bystanders::start_authenticated(&running, json!({ "secret": SECRET })).await;
    let auth = json!({ "event": "__auth", "payload": { "secret": SECRET } }).to_string();
    for attempt in 0..20 {
        let mut client = RawTcp::open(running.tcp_addr, "liweb.json").await;
        let mut bytes = u32::try_from(auth.len() + 1)
            .unwrap()
            .to_be_bytes()
            .to_vec();
        bytes.push(2);
        bytes.extend_from_slice(auth.as_bytes());
        let body = vec![b'x'; 256 * 1024];
        bytes.extend_from_slice(&u32::try_from(body.len() + 1).unwrap().to_be_bytes());
        bytes.push(2);
        bytes.extend_from_slice(&body);
        client.send_bytes(&bytes).await;
        let mut close = None;
        while let Some(frame) = client.next_frame().await {
            if let TcpFrame::Close(code, _) = frame {
                close = Some(code);
                break;
            }
        }
        assert_eq!(
            close,
            Some(CloseCode::TooLarge.as_u16()),
            "attempt {attempt}"
        );
    }
    bystanders.finish().await;
}

/// K5: the bytes queued for all connections stay within the server-wide
/// budget; when a frame takes them over it, the connection holding the
/// most is closed first, with 4003, and one holding less stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k5_the_server_budget_closes_the_biggest_holder_first() {
    const BUDGET: usize = 512 * 1024;
    const SIZE: usize = 16 * 1024;
    let running = Running::start_with(|builder| {
        builder
            // Each connection alone could hold twice the whole budget.
            .max_queue_bytes(2 * BUDGET)
            .max_total_queue_bytes(BUDGET)
            .close_timeout(Duration::from_secs(10))
            .no_heartbeat()
            // The sender fills the queues faster than the default allows.
            .max_events_per_second(None)
    })
    .await;
    let bystanders = Bystanders::start(&running).await;
    let (one, two) = (RoomRef::new("k5", "one"), RoomRef::new("k5", "two"));
    // `big` is in both rooms and gets every message; `small` only in one,
    // half of them.
    let (mut big, big_id) = stalled_member(&running, &[one.clone(), two.clone()]).await;
    let (_small, small_id) = stalled_member(&running, std::slice::from_ref(&one)).await;
    let (big_conn, small_conn) = (running.conn(big_id), running.conn(small_id));

    let most = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = std::thread::spawn({
        let (most, done, server) = (Arc::clone(&most), Arc::clone(&done), running.server.clone());
        move || {
            while !done.load(Ordering::Acquire) {
                most.fetch_max(server.stats().queued_bytes, Ordering::AcqRel);
                std::thread::yield_now();
            }
        }
    });
    let (mut sender, _) = running.client().await;
    let mut sent = 0;
    while !big_conn.is_closed() {
        assert!(sent < 4096, "the budget never closed anyone");
        let room = if sent % 2 == 0 { &one } else { &two };
        // Every other message to `two`, where only `big` is.
        sender
            .emit(TestIn::RoomEmit {
                room: room.clone(),
                text: "x".repeat(SIZE),
                target: liweb_tests::Target::Everyone,
            })
            .unwrap();
        assert!(matches!(next_event(&mut sender).await, TestOut::Sent(_)));
        sent += 1;
    }
    done.store(true, Ordering::Release);
    watcher.join().unwrap();
    let most = most.load(Ordering::Acquire);
    // The total goes over the budget by at most the frame that crossed it
    // (one per member it went to).
    assert!(most <= BUDGET + 2 * SIZE, "{most} bytes queued in all");
    assert!(most > BUDGET / 2, "the watcher saw the total grow: {most}");
    assert!(!small_conn.is_closed(), "the smaller holder was closed too");
    eventually(
        "the total back under the low-water mark",
        || running.server.stats(),
        |stats| stats.queued_bytes <= BUDGET / 4 * 3,
    )
    .await;
    assert_eq!(running.server.stats().budget_closes, 1);
    let read = read_until_close(&mut big).await;
    assert_eq!(
        read.close,
        Some(CloseCode::SlowConsumer.as_u16()),
        "{read:?}"
    );
    assert_eq!(
        running.recorder.disconnected(big_id).await,
        DisconnectReason::ServerClosed(CloseCode::SlowConsumer)
    );
    assert!(running.server.get(small_id).is_some());
    bystanders.finish().await;
}
