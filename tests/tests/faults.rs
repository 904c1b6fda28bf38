//! Client faults under load, over real sockets: clients that die in the
//! middle of a frame and clients that stop reading, while healthy clients
//! of both transports chat in the same room and must lose nothing.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use liweb::{CloseCode, CodecKind, ConnId, DisconnectReason, client::Incoming};
use liweb_tests::{
    Record, RoomRef, Running, Target, TestClient, TestIn, TestOut, WAIT, eventually,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    task::JoinHandle,
    time::Instant,
};

fn room() -> RoomRef {
    RoomRef::new("faults", "chat")
}

/// How long a whole chat may take on a loaded machine.
const CHAT_WAIT: Duration = Duration::from_secs(60);

/// How many messages the healthy members may lag behind the senders: the
/// senders wait for the slowest healthy member, as a chat whose members
/// keep up would, so that only a client that stops reading falls behind.
const WINDOW: usize = 32;

/// The chat's progress, shared by its senders and its healthy members.
#[derive(Debug)]
struct Flow {
    /// Messages sent, by every sender.
    sent: AtomicUsize,
    /// Messages received, by each healthy member.
    received: Vec<AtomicUsize>,
    /// Whether the senders may stop (once they sent their minimum).
    stop: AtomicBool,
}

impl Flow {
    fn new(members: usize, stop: bool) -> Arc<Self> {
        Arc::new(Self {
            sent: AtomicUsize::new(0),
            received: (0..members).map(|_| AtomicUsize::new(0)).collect(),
            stop: AtomicBool::new(stop),
        })
    }

    fn sent(&self) -> usize {
        self.sent.load(Ordering::Acquire)
    }

    fn slowest(&self) -> usize {
        self.received
            .iter()
            .map(|count| count.load(Ordering::Acquire))
            .min()
            .unwrap_or(usize::MAX)
    }

    /// Waits until every healthy member is within [`WINDOW`] messages of
    /// the senders.
    async fn wait_for_members(&self) {
        let waiting = async {
            while self.sent().saturating_sub(self.slowest()) >= WINDOW {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        tokio::time::timeout(WAIT, waiting)
            .await
            .expect("a healthy member stopped reading");
    }

    /// Waits until the senders have sent `by` more messages.
    async fn moves(&self, by: usize) {
        let target = self.sent() + by;
        eventually("the chat to go on", || self.sent(), |&sent| sent >= target).await;
    }
}

/// One chatting client: sends numbered messages (`name:n:padding`) to the
/// room until the flow says stop and at least `min` are sent, then
/// `name:end`, as requests every [`WINDOW`] messages and plain events
/// between them; gives the number sent, and the client, still connected.
fn chat(
    client: TestClient,
    name: &'static str,
    min: usize,
    size: usize,
    flow: Arc<Flow>,
) -> JoinHandle<(TestClient, usize)> {
    tokio::spawn(async move {
        let padding = "p".repeat(size);
        let emit = |text: String| TestIn::RoomEmit {
            room: room(),
            text,
            target: Target::Everyone,
        };
        let mut sent = 0;
        while sent < min || !flow.stop.load(Ordering::Acquire) {
            flow.wait_for_members().await;
            let event = emit(format!("{name}:{sent}:{padding}"));
            if sent % WINDOW == WINDOW - 1 {
                client
                    .request::<()>(event)
                    .timeout(WAIT)
                    .await
                    .expect("the room emit was answered");
            } else {
                client.emit(event).expect("the sender is connected");
            }
            sent += 1;
            flow.sent.fetch_add(1, Ordering::AcqRel);
        }
        client
            .request::<()>(emit(format!("{name}:end")))
            .timeout(WAIT)
            .await
            .expect("the last room emit was answered");
        (client, sent)
    })
}

/// Per sender, the numbers a member got.
type Got = BTreeMap<String, Vec<usize>>;

/// A healthy member's task.
type Member = JoinHandle<(TestClient, Got)>;

/// A sender's task, with its name.
type Sender = (&'static str, JoinHandle<(TestClient, usize)>);

/// Healthy member `index`: collects, per sender, the numbers of the room
/// messages it gets, until every sender's `end`; gives the client back,
/// still connected.
fn collect(mut client: TestClient, senders: usize, flow: Arc<Flow>, index: usize) -> Member {
    tokio::spawn(async move {
        let mut got = Got::new();
        let mut ends = 0;
        while ends < senders {
            let incoming = tokio::time::timeout(CHAT_WAIT, client.recv())
                .await
                .expect("timed out waiting for the chat")
                .expect("the client ended");
            let text = match incoming {
                Incoming::Event(TestOut::RoomMessage(text)) => text,
                other => panic!("a healthy member got {other:?}"),
            };
            let mut parts = text.split(':');
            let name = parts.next().unwrap().to_owned();
            match parts.next().unwrap() {
                "end" => ends += 1,
                n => {
                    got.entry(name).or_default().push(n.parse().unwrap());
                    flow.received[index].fetch_add(1, Ordering::AcqRel);
                }
            }
        }
        (client, got)
    })
}

/// Asserts that every member got every sender's messages, in order;
/// gives the clients back.
async fn no_loss(members: Vec<Member>, senders: Vec<Sender>) -> Vec<TestClient> {
    let mut sent = BTreeMap::new();
    let mut clients = Vec::new();
    for (name, sender) in senders {
        let (client, count) = tokio::time::timeout(CHAT_WAIT, sender)
            .await
            .expect("a sender timed out")
            .unwrap();
        sent.insert(name.to_owned(), (0..count).collect::<Vec<_>>());
        clients.push(client);
    }
    for (i, member) in members.into_iter().enumerate() {
        let (client, got) = tokio::time::timeout(CHAT_WAIT, member)
            .await
            .expect("a member timed out")
            .unwrap();
        assert!(got == sent, "member {i} lost or reordered messages");
        clients.push(client);
    }
    clients
}

/// Starts the chat: `min` messages of `size` bytes from each sender (more
/// until the flow says stop).
fn start_chat(
    members: Vec<TestClient>,
    ws_sender: TestClient,
    tcp_sender: TestClient,
    min: usize,
    size: usize,
    flow: &Arc<Flow>,
) -> (Vec<Member>, Vec<Sender>) {
    let members = members
        .into_iter()
        .enumerate()
        .map(|(i, member)| collect(member, 2, Arc::clone(flow), i))
        .collect();
    let senders = vec![
        ("ws", chat(ws_sender, "ws", min, size, Arc::clone(flow))),
        ("tcp", chat(tcp_sender, "tcp", min, size, Arc::clone(flow))),
    ];
    (members, senders)
}

/// Opens a TCP socket to `addr`, with a receive buffer of `recv_buffer`
/// bytes if given (before connecting, so the window is small from the
/// start).
async fn socket(addr: SocketAddr, recv_buffer: Option<u32>) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(bytes) = recv_buffer {
        socket.set_recv_buffer_size(bytes).unwrap();
    }
    tokio::time::timeout(WAIT, socket.connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect failed")
}

/// A raw socket that did the WebSocket upgrade by hand (JSON).
async fn ws_socket(running: &Running, recv_buffer: Option<u32>) -> TcpStream {
    let mut stream = socket(running.addr, recv_buffer).await;
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        running.addr
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    // Byte by byte up to the blank line: nothing after it is read.
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, async {
        while !response.ends_with(b"\r\n\r\n") {
            response.push(stream.read_u8().await.expect("the upgrade response"));
        }
    })
    .await
    .expect("no upgrade response");
    assert!(
        response.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    stream
}

/// A raw socket that did the TCP transport's JSON handshake by hand.
async fn tcp_socket(running: &Running, recv_buffer: Option<u32>) -> TcpStream {
    let mut stream = socket(running.tcp_addr, recv_buffer).await;
    let hello = b"\x00\x00\x00\x0b\x01liweb.json";
    stream.write_all(hello).await.unwrap();
    let mut answer = [0; 15];
    tokio::time::timeout(WAIT, stream.read_exact(&mut answer))
        .await
        .expect("no HELLO")
        .unwrap();
    assert_eq!(&answer, hello);
    stream
}

/// The transport of a raw client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Ws,
    Tcp,
}

/// Opens a raw client, waits for its `on_connect` and joins it to the
/// room; its socket and id.
async fn raw_member(running: &Running, via: Via, recv_buffer: Option<u32>) -> (TcpStream, ConnId) {
    let before = running.recorder.conns().len();
    let stream = match via {
        Via::Ws => ws_socket(running, recv_buffer).await,
        Via::Tcp => tcp_socket(running, recv_buffer).await,
    };
    let conn = running.conn(running.connected(before).await);
    assert_eq!(room().on(&running.server).join(&conn).await, Ok(true));
    (stream, conn.id())
}

/// Joins a typed client to the room and waits for the answer.
async fn join(client: &mut TestClient) {
    client.emit(TestIn::Join(room())).unwrap();
    let answer = tokio::time::timeout(WAIT, client.recv())
        .await
        .expect("no join answer");
    assert!(
        matches!(
            answer,
            Some(Incoming::Event(TestOut::JoinOutcome(
                liweb_tests::JoinOutcome::Added
            )))
        ),
        "{answer:?}"
    );
}

/// The healthy clients: three members of the room (WebSocket JSON,
/// WebSocket MessagePack, TCP bincode) and two senders outside it
/// (WebSocket and TCP).
async fn healthy(running: &Running) -> (Vec<TestClient>, TestClient, TestClient) {
    let mut members = Vec::new();
    for (client, _) in [
        running.client_with(CodecKind::Json).await,
        running.client_with(CodecKind::MessagePack).await,
        running.tcp_client_with(CodecKind::Bincode).await,
    ] {
        let mut client = client;
        join(&mut client).await;
        members.push(client);
    }
    let (ws_sender, _) = running.client().await;
    let (tcp_sender, _) = running.tcp_client().await;
    (members, ws_sender, tcp_sender)
}

/// How a client dies in the middle of a frame.
#[derive(Debug, Clone, Copy)]
enum Death {
    /// It ends its writing direction (FIN) and is dropped once the server
    /// is done with it.
    End,
    /// It is dropped with a zero linger: the kernel resets the connection.
    Reset,
}

/// Clients killed in the middle of a WebSocket or TCP frame, half a
/// header or half a body, by the end of the stream or a reset, while two
/// senders chat to a room they are in: the healthy members get every
/// message in order, each killed client fires `on_disconnect` once with
/// the documented reason, leaves the room, and the connection count comes
/// back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_killed_mid_frame_lose_no_one_a_message_and_leave_no_trace() {
    // The senders chat as fast as they can: no rate limit.
    let running =
        Running::start_with(|builder| builder.no_heartbeat().max_events_per_second(None)).await;
    let (members, ws_sender, tcp_sender) = healthy(&running).await;
    let healthy_count = running.server.connection_count();
    let flow = Flow::new(members.len(), false);
    let (members, senders) = start_chat(members, ws_sender, tcp_sender, 0, 16, &flow);
    flow.moves(50).await;

    // Half a header, and a header with half its body.
    let ws_header = vec![0x81];
    let ws_body = [&[0x81, 0x80 | 100, 1, 2, 3, 4][..], &[b'x'; 10]].concat();
    let tcp_header = vec![0, 0];
    let tcp_body = [&[0, 0, 0, 100, 2][..], &[b'x'; 10]].concat();
    let cases = [
        (Via::Ws, ws_header.clone(), Death::End),
        (Via::Ws, ws_body.clone(), Death::End),
        (Via::Ws, ws_header, Death::Reset),
        (Via::Ws, ws_body, Death::Reset),
        (Via::Tcp, tcp_header.clone(), Death::End),
        (Via::Tcp, tcp_body.clone(), Death::End),
        (Via::Tcp, tcp_header, Death::Reset),
        (Via::Tcp, tcp_body, Death::Reset),
    ];
    let mut victims = Vec::new();
    for (via, half, death) in cases {
        let what = format!("{via:?}, {half:?}, {death:?}");
        let (mut stream, id) = raw_member(&running, via, None).await;
        // Room messages reach it before it dies.
        flow.moves(10).await;
        stream.write_all(&half).await.unwrap();
        let reason = match death {
            Death::End => {
                stream.shutdown().await.unwrap();
                let reason = running.recorder.disconnected(id).await;
                drop(stream);
                reason
            }
            Death::Reset => {
                stream.set_zero_linger().unwrap();
                drop(stream);
                running.recorder.disconnected(id).await
            }
        };
        match (via, death) {
            // The documented answer: the stream ended inside a frame.
            (Via::Tcp, Death::End) => assert_eq!(
                reason,
                DisconnectReason::ServerClosed(CloseCode::ProtocolError),
                "{what}"
            ),
            // A reset, or a WebSocket stream that ends without a close
            // handshake (tungstenite reports that before the cut frame):
            // nobody is left to answer.
            _ => assert!(
                matches!(reason, DisconnectReason::TransportError(_)),
                "{what}: {reason:?}"
            ),
        }
        assert_eq!(running.conn(id).room_count(), 0, "{what}");
        assert!(running.server.get(id).is_none(), "{what}");
        victims.push(id);
    }
    flow.moves(50).await;
    flow.stop.store(true, Ordering::Release);
    let _healthy = no_loss(members, senders).await;

    for id in victims {
        let fired = running
            .recorder
            .matching(|r| matches!(r, Record::Disconnected(d, _) if *d == id));
        assert_eq!(fired.len(), 1, "on_disconnect of {id} fired once");
    }
    assert_eq!(room().on(&running.server).size(), 3);
    eventually(
        "only the healthy clients to be left",
        || {
            let stats = running.server.stats();
            (stats.connections, stats.live)
        },
        |&counts| counts == (healthy_count, healthy_count),
    )
    .await;
}

/// What became of a stalled client, as [`watch`] saw it.
#[derive(Debug)]
struct Stalled {
    /// The most bytes ever queued for it.
    most_queued: usize,
    /// How many messages the chat had sent when the server closed it.
    sent_by_close: usize,
    /// From the server's close to its `on_disconnect`.
    close_to_disconnect: Duration,
    reason: DisconnectReason,
}

/// Watches a stalled connection until its `on_disconnect`: how much was
/// queued for it, and when it was closed and gone.
fn watch(running: &Running, conn: liweb::Conn<TestOut>, flow: &Arc<Flow>) -> JoinHandle<Stalled> {
    let (recorder, flow) = (running.recorder.clone(), Arc::clone(flow));
    tokio::spawn(async move {
        let mut most_queued = 0;
        let mut closed = None;
        let watching = async {
            loop {
                most_queued = most_queued.max(conn.queued_bytes());
                if closed.is_none() && conn.is_closed() {
                    closed = Some((Instant::now(), flow.sent()));
                }
                let gone = recorder.records().into_iter().find_map(|r| match r {
                    Record::Disconnected(id, reason) if id == conn.id() => Some(reason),
                    _ => None,
                });
                if let Some(reason) = gone {
                    return reason;
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        };
        let reason = tokio::time::timeout(CHAT_WAIT, watching)
            .await
            .expect("the stalled client was never closed");
        let (closed_at, sent_by_close) = closed.expect("closed before its on_disconnect");
        Stalled {
            most_queued,
            sent_by_close,
            close_to_disconnect: closed_at.elapsed(),
            reason,
        }
    })
}

/// Conformance L1.
///
/// Clients that stop reading, one per transport, with tiny receive
/// buffers, in a room where two senders chat a lot: each is closed as a
/// slow consumer (4003) while the chat goes on, and is gone within the
/// close timeout of that close though it never reads the close frame; the
/// bytes queued for it never go over the configured limit; and the
/// healthy members get every message in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l1_stalled_clients_are_closed_with_their_queue_bounded_while_the_chat_loses_nothing() {
    const LIMIT: usize = 256 * 1024;
    const SIZE: usize = 4096;
    // Per sender. 8 MiB per member in all: more than the kernel's socket
    // buffers (up to 4 MiB on Linux by default), the transport's write
    // buffer and the limit hold for a client that does not read.
    const COUNT: usize = 1024;
    const CLOSE_TIMEOUT: Duration = Duration::from_millis(100);
    let running = Running::start_with(|builder| {
        builder
            .max_queue_bytes(LIMIT)
            .close_timeout(CLOSE_TIMEOUT)
            .no_heartbeat()
            // The senders chat as fast as they can.
            .max_events_per_second(None)
    })
    .await;
    let (members, ws_sender, tcp_sender) = healthy(&running).await;
    let healthy_count = running.server.connection_count();
    let flow = Flow::new(members.len(), true);
    let mut stalled = Vec::new();
    for via in [Via::Ws, Via::Tcp] {
        let (stream, id) = raw_member(&running, via, Some(1024)).await;
        let conn = running.conn(id);
        stalled.push((via, stream, conn.clone(), watch(&running, conn, &flow)));
    }

    let (members, senders) = start_chat(members, ws_sender, tcp_sender, COUNT, SIZE, &flow);
    let mut streams = Vec::new();
    for (via, stream, conn, watcher) in stalled {
        let seen = watcher.await.unwrap();
        assert_eq!(
            seen.reason,
            DisconnectReason::ServerClosed(CloseCode::SlowConsumer),
            "{via:?}"
        );
        // Closed by the queue limit while the chat went on, not by its end.
        assert!(
            seen.sent_by_close < 2 * COUNT,
            "{via:?} was closed only when the chat was over: {seen:?}"
        );
        assert!(
            seen.close_to_disconnect <= CLOSE_TIMEOUT + Duration::from_secs(1),
            "{via:?} stayed after its close: {seen:?}"
        );
        assert!(seen.most_queued <= LIMIT, "{via:?}: {seen:?}");
        assert!(
            seen.most_queued > LIMIT / 2,
            "{via:?}: the backlog was seen to grow: {seen:?}"
        );
        assert!(conn.queued_bytes() <= LIMIT, "{via:?}");
        assert_eq!(conn.room_count(), 0, "{via:?}");
        assert!(running.server.get(conn.id()).is_none(), "{via:?}");
        streams.push(stream);
    }
    let _healthy = no_loss(members, senders).await;

    let stats = running.server.stats();
    assert_eq!(stats.slow_consumers, 2);
    assert_eq!(room().on(&running.server).size(), 3);
    assert_eq!(
        (stats.connections, stats.live),
        (healthy_count, healthy_count)
    );
    drop(streams);
}

/// TCP clients that stall in the handshake, sending nothing or half a
/// `HELLO`, hold a place among the live connections only until the
/// handshake timeout; then they are dropped without an answer, never
/// reach the application, and a client that does the handshake is served
/// all along.
#[tokio::test]
async fn tcp_clients_stalled_in_the_handshake_are_dropped_after_the_timeout() {
    const TIMEOUT: Duration = Duration::from_millis(200);
    let running = Running::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let transport =
        liweb::tcp::TcpTransport::new(running.server.clone()).handshake_timeout(TIMEOUT);
    tokio::spawn(transport.serve(listener));

    let started = Instant::now();
    let silent = socket(addr, None).await;
    let mut half = socket(addr, None).await;
    half.write_all(b"\x00\x00\x00\x0b\x01liweb").await.unwrap();
    eventually(
        "both to hold a place",
        || running.server.stats().live,
        |&live| live == 2,
    )
    .await;
    let client = TestClient::builder(format!("tcp://{addr}")).connect();
    let mut client = tokio::time::timeout(WAIT, client)
        .await
        .expect("connect timed out")
        .expect("the handshake of a healthy client");
    liweb_tests::fence(&mut client, "served meanwhile").await;

    for mut stalled in [silent, half] {
        let mut answer = Vec::new();
        tokio::time::timeout(WAIT, stalled.read_to_end(&mut answer))
            .await
            .expect("the stalled client was never dropped")
            .expect("dropped without a reset");
        assert!(answer.is_empty(), "no answer: {answer:?}");
    }
    assert!(started.elapsed() >= TIMEOUT);
    eventually(
        "only the healthy client to be left",
        || running.server.stats().live,
        |&live| live == 1,
    )
    .await;
    let connects = running
        .recorder
        .matching(|r| matches!(r, Record::Connected(_)));
    assert_eq!(
        connects.len(),
        1,
        "only the healthy client reached on_connect"
    );
}
