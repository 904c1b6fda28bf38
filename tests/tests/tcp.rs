//! Conformance, section T (transports), on real sockets: one server value
//! serves WebSocket and TCP clients at once, broken TCP input closes only
//! its connection, and the connection listing. The sections C, H, A, M, R,
//! S and P run over TCP as combinations of the conformance suite.

use std::time::Duration;

use liweb::{
    CloseCode, CodecKind, DisconnectReason, Transport,
    client::{ClientError, Incoming},
};
use liweb_tests::{
    RawTcp, Record, RoomRef, Running, TestClient, TestIn, TestOut, WAIT, eventually, fence, next,
    next_event,
};
use serde_json::{Value, json};

fn handled(running: &Running) -> Vec<Record> {
    running
        .recorder
        .matching(|r| matches!(r, Record::Handled(..)))
}

async fn join(client: &mut TestClient, room: &RoomRef) {
    client.emit(TestIn::Join(room.clone())).unwrap();
    assert_eq!(
        next_event(client).await,
        TestOut::JoinOutcome(liweb_tests::JoinOutcome::Added)
    );
}

/// Conformance T1.
#[tokio::test]
async fn t1_one_server_serves_websocket_and_tcp_clients_in_one_room_each_in_its_codec() {
    let running = Running::start().await;
    let (mut ws, ws_id) = running.client_with(CodecKind::MessagePack).await;
    let (mut tcp, tcp_id) = running.tcp_client_with(CodecKind::Bincode).await;
    let (mut raw, raw_id) = running.raw_tcp_client().await;

    assert_eq!(running.conn(ws_id).meta().transport(), Transport::WebSocket);
    assert_eq!(running.conn(tcp_id).meta().transport(), Transport::Tcp);
    assert_eq!(running.conn(raw_id).meta().transport(), Transport::Tcp);
    assert_eq!(running.conn(tcp_id).meta().codec(), CodecKind::Bincode);
    assert_eq!(running.conn(raw_id).meta().codec(), CodecKind::Json);
    assert!(running.conn(tcp_id).meta().remote_addr().is_some());
    assert_eq!(running.server.connection_count(), 3);

    let room = RoomRef::new("mixed", "lobby");
    join(&mut ws, &room).await;
    join(&mut tcp, &room).await;
    raw.emit("join", json!({ "channel": "mixed", "room": "lobby" }))
        .await;
    assert_eq!(
        raw.next().await,
        json!({ "event": "join_outcome", "payload": "added" })
    );
    assert_eq!(room.on(&running.server).size(), 3);

    // An emit from the TCP client reaches every member, each in its codec.
    tcp.emit(TestIn::RoomEmit {
        room: room.clone(),
        text: "to all".into(),
        target: liweb_tests::Target::Everyone,
    })
    .unwrap();
    assert_eq!(
        next_event(&mut tcp).await,
        TestOut::RoomMessage("to all".into())
    );
    assert_eq!(next_event(&mut tcp).await, TestOut::Sent(3));
    assert_eq!(
        next_event(&mut ws).await,
        TestOut::RoomMessage("to all".into())
    );
    assert_eq!(
        raw.next().await,
        json!({ "event": "room_message", "payload": "to all" })
    );

    // And a server-side room emit too.
    let sent = room
        .on(&running.server)
        .emit(TestOut::RoomMessage("from the server".into()))
        .unwrap();
    assert_eq!(sent, 3);
    assert_eq!(
        next_event(&mut ws).await,
        TestOut::RoomMessage("from the server".into())
    );
    assert_eq!(
        next_event(&mut tcp).await,
        TestOut::RoomMessage("from the server".into())
    );
    assert_eq!(
        raw.next().await,
        json!({ "event": "room_message", "payload": "from the server" })
    );
}

/// Starts a server with a small frame limit and two bystanders, a TCP and
/// a WebSocket client, that must not notice anything.
async fn start_with_bystanders() -> (Running, RawTcp, TestClient) {
    let running = Running::start_with(|builder| builder.max_frame_size(1024)).await;
    let (tcp, _) = running.raw_tcp_client().await;
    let (ws, _) = running.client().await;
    (running, tcp, ws)
}

/// Opens a raw JSON TCP connection, waits for its `on_connect`, and gives
/// its id.
async fn victim(running: &Running) -> (RawTcp, liweb::ConnId) {
    running.raw_tcp_client().await
}

async fn bystanders_unaffected(running: &Running, tcp: &mut RawTcp, ws: &mut TestClient) {
    tcp.fence("tcp bystander").await;
    fence(ws, "ws bystander").await;
    assert_eq!(running.server.connection_count(), 2);
}

/// Conformance T2.
///
/// A frame cut off by the end of the stream.
#[tokio::test]
async fn t2_a_truncated_frame_closes_only_that_connection() {
    let (running, mut tcp, mut ws) = start_with_bystanders().await;
    let (mut bad, id) = victim(&running).await;
    // A length of 100, then only 11 bytes of the frame, then the end.
    let mut frame = 100u32.to_be_bytes().to_vec();
    frame.push(2);
    frame.extend_from_slice(br#"{"event":"#);
    bad.send_bytes(&frame).await;
    bad.shutdown_write().await;

    assert_eq!(
        bad.closed().await,
        (1002, "the stream ended inside a frame".to_owned())
    );
    assert_eq!(
        running.recorder.disconnected(id).await,
        DisconnectReason::ServerClosed(CloseCode::ProtocolError)
    );
    assert!(handled(&running).is_empty());
    bystanders_unaffected(&running, &mut tcp, &mut ws).await;
}

/// Conformance T2.
///
/// A length prefix over the maximum closes the connection before the frame
/// is read.
#[tokio::test]
async fn t2_a_length_over_the_maximum_closes_before_the_frame_is_read() {
    let (running, mut tcp, mut ws) = start_with_bystanders().await;
    let (mut bad, id) = victim(&running).await;
    // Only the length is sent: the server must not wait for the body.
    bad.send_bytes(&1_000_000u32.to_be_bytes()).await;
    assert_eq!(
        bad.closed().await,
        (1009, "frame larger than 1024 bytes".to_owned())
    );
    assert_eq!(
        running.recorder.disconnected(id).await,
        DisconnectReason::ServerClosed(CloseCode::TooLarge)
    );
    // The maximum itself is fine: 1024 bytes of message, one of kind.
    let text = "y".repeat(1024 - r#"{"event":"echo","payload":""}"#.len());
    tcp.emit("echo", Value::from(text.clone())).await;
    assert_eq!(
        tcp.next().await,
        json!({ "event": "echoed", "payload": text })
    );
    bystanders_unaffected(&running, &mut tcp, &mut ws).await;
}

/// Conformance T2.
///
/// Bytes that are not frames of the protocol.
#[tokio::test]
async fn t2_garbage_bytes_close_only_that_connection() {
    let (running, mut tcp, mut ws) = start_with_bystanders().await;

    // An unknown frame kind after the handshake.
    let (mut bad, id) = victim(&running).await;
    bad.send_bytes(&[0, 0, 0, 3, 0xff, 0xfe, 0xfd]).await;
    assert_eq!(
        bad.closed().await,
        (1002, "unknown frame kind 0xff".to_owned())
    );
    assert_eq!(
        running.recorder.disconnected(id).await,
        DisconnectReason::ServerClosed(CloseCode::ProtocolError)
    );

    // A JSON message that is not UTF-8.
    let (mut bad, id) = victim(&running).await;
    bad.send_frame(2, &[0xc3, 0x28]).await;
    assert_eq!(
        bad.closed().await,
        (1007, "message is not valid UTF-8".to_owned())
    );
    assert_eq!(
        running.recorder.disconnected(id).await,
        DisconnectReason::ServerClosed(CloseCode::BadFrame)
    );

    // An empty frame.
    let (mut bad, _) = victim(&running).await;
    bad.send_bytes(&[0, 0, 0, 0]).await;
    assert_eq!(bad.closed().await, (1002, "empty frame".to_owned()));

    // An HTTP request instead of a handshake: its first bytes read as a
    // huge length.
    let mut bad = RawTcp::connect(running.tcp_addr).await;
    bad.send_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(bad.closed().await, (1009, "frame too large".to_owned()));

    // A message before the handshake.
    let mut bad = RawTcp::connect(running.tcp_addr).await;
    bad.send_frame(2, br#"{"event":"echo","payload":"x"}"#)
        .await;
    assert_eq!(
        bad.closed().await,
        (1002, "the first frame must be HELLO".to_owned())
    );

    // A codec this server does not speak.
    let mut bad = RawTcp::connect(running.tcp_addr).await;
    bad.send_frame(1, b"liweb.xml").await;
    assert_eq!(
        bad.closed().await,
        (1003, "unsupported codec: liweb.xml".to_owned())
    );

    assert!(handled(&running).is_empty());
    eventually(
        "only the bystanders live",
        || running.server.stats().live,
        |live| *live == 2,
    )
    .await;
    bystanders_unaffected(&running, &mut tcp, &mut ws).await;
}

/// Conformance T3.
#[tokio::test]
async fn t3_connections_are_listed_by_index_range_and_count_in_connect_order() {
    let running = Running::start().await;
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for i in 0..5 {
        let (client, id) = if i % 2 == 0 {
            running.client().await
        } else {
            running.tcp_client().await
        };
        clients.push(client);
        ids.push(id);
    }
    let server = &running.server;
    let listed =
        |conns: Vec<liweb::Conn<TestOut>>| conns.iter().map(|c| c.id()).collect::<Vec<_>>();

    assert_eq!(server.connection_count(), 5);
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(server.connection_at(i).map(|c| c.id()), Some(*id));
    }
    assert!(server.connection_at(5).is_none());
    assert_eq!(listed(server.connections()), ids);
    assert_eq!(listed(server.connections_range(1..3)), ids[1..3]);
    assert_eq!(listed(server.connections_range(3..)), ids[3..]);
    assert_eq!(listed(server.connections_range(..=1)), ids[..=1]);
    assert_eq!(listed(server.connections_range(..)), ids);
    assert_eq!(listed(server.connections_range(4..100)), ids[4..]);
    assert!(server.connections_range(7..9).is_empty());
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = server.connections_range(3..1);
    assert!(reversed.is_empty());

    // The second one (TCP) leaves: the later ones move up, in order.
    let leaving = clients.remove(1);
    leaving.close(CloseCode::Normal, "bye").unwrap();
    running.recorder.disconnected(ids[1]).await;
    ids.remove(1);
    assert_eq!(server.connection_count(), 4);
    assert_eq!(server.connection_at(1).map(|c| c.id()), Some(ids[1]));
    assert_eq!(listed(server.connections_range(1..3)), ids[1..3]);

    // A newcomer goes last.
    let (_newcomer, id) = running.tcp_client().await;
    assert_eq!(server.connection_at(4).map(|c| c.id()), Some(id));
    assert_eq!(server.connection_count(), 5);
}

/// A TCP connection is refused with a close frame during shutdown and at
/// the connection limit, like WebSocket upgrades are with `503`.
#[tokio::test]
async fn tcp_refuses_new_connections_at_the_limit_and_during_shutdown() {
    let running = Running::start_with(|builder| builder.max_connections(1)).await;
    let (mut first, _) = running.tcp_client().await;
    let refused = TestClient::builder(running.tcp_url()).connect().await;
    match refused {
        Err(ClientError::Refused(code, reason)) => {
            assert_eq!(code.as_u16(), 1013);
            assert_eq!(reason, "too many connections");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(running.server.stats().rejected_full, 1);
    fence(&mut first, "the first is fine").await;

    tokio::time::timeout(WAIT, running.server.shutdown(Duration::from_secs(1)))
        .await
        .expect("shutdown timed out");
    match next(&mut first).await {
        Incoming::Closed(Some((code, _))) => assert_eq!(code, CloseCode::GoingAway),
        other => panic!("expected going away, got {other:?}"),
    }
    let mut late = RawTcp::connect(running.tcp_addr).await;
    late.send_frame(1, b"liweb.json").await;
    assert_eq!(
        late.closed().await,
        (1001, "the server is shutting down".to_owned())
    );
    assert_eq!(running.server.stats().rejected_shutdown, 1);
}

/// Writes one frame of the TCP transport (length, kind, body) to any stream.
async fn write_frame(stream: &mut (impl tokio::io::AsyncWrite + Unpin), kind: u8, body: &[u8]) {
    use tokio::io::AsyncWriteExt;
    let mut frame = u32::try_from(body.len() + 1)
        .unwrap()
        .to_be_bytes()
        .to_vec();
    frame.push(kind);
    frame.extend_from_slice(body);
    tokio::time::timeout(WAIT, stream.write_all(&frame))
        .await
        .expect("write timed out")
        .expect("write failed");
}

/// Reads one frame of the TCP transport from any stream: its kind and body.
async fn read_frame(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> (u8, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    tokio::time::timeout(WAIT, async {
        let mut len = [0; 4];
        stream.read_exact(&mut len).await.unwrap();
        let mut body = vec![0; u32::from_be_bytes(len) as usize];
        stream.read_exact(&mut body).await.unwrap();
        let kind = body.remove(0);
        (kind, body)
    })
    .await
    .expect("timed out waiting for the server")
}

/// The transport runs over any byte stream (TLS, a Unix socket, a pipe):
/// here a Unix socket, whose client shares a room with a WebSocket client.
#[tokio::test]
async fn the_tcp_frames_run_over_a_unix_socket_and_its_clients_share_rooms() {
    let running = Running::start().await;
    let dir = std::env::temp_dir().join(format!("liweb-unix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("liweb.sock");
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let transport = liweb::tcp::TcpTransport::new(running.server.clone());
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        transport.serve_stream(stream, None).await;
    });

    let mut unix = tokio::net::UnixStream::connect(&path).await.unwrap();
    write_frame(&mut unix, 1, b"liweb.json").await;
    assert_eq!(read_frame(&mut unix).await, (1, b"liweb.json".to_vec()));
    let id = running.connected(0).await;
    let meta = running.conn(id).meta().clone();
    assert_eq!(meta.transport(), Transport::Tcp);
    assert_eq!(meta.remote_addr(), None, "a Unix socket has no IP address");

    let room = RoomRef::new("unix", "room");
    let joining = json!({"event": "join", "payload": {"channel": "unix", "room": "room"}});
    write_frame(&mut unix, 2, joining.to_string().as_bytes()).await;
    let (kind, body) = read_frame(&mut unix).await;
    assert_eq!(kind, 2);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"event": "join_outcome", "payload": "added"})
    );
    let (mut ws, _) = running.client().await;
    join(&mut ws, &room).await;
    ws.emit(TestIn::RoomEmit {
        room: room.clone(),
        text: "to the socket".into(),
        target: liweb_tests::Target::Everyone,
    })
    .unwrap();
    let (kind, body) = read_frame(&mut unix).await;
    assert_eq!(kind, 2);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"event": "room_message", "payload": "to the socket"})
    );

    // Closing works as over TCP: the server answers CLOSE and ends.
    write_frame(&mut unix, 5, &1000u16.to_be_bytes()).await;
    assert_eq!(
        running.recorder.disconnected(id).await,
        DisconnectReason::ClientClosed(Some((CloseCode::Normal, String::new())))
    );
    assert_eq!(room.on(&running.server).size(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}
