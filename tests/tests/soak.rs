//! Soak: thousands of clients joining, leaving, chatting, asking and
//! reconnecting for a bounded time, over WebSocket and TCP, in JSON,
//! MessagePack and bincode, some of them vanishing without a close and some
//! going silent until the heartbeat closes them. Checks during the run that
//! steady members receive every room message exactly once and in order, and
//! at the end that no connection, membership, presence record or task is
//! left and that the heap is back where it was after a warm-up.
//!
//! `#[ignore]`d because it runs for a while; `.ci/run` runs it short:
//!
//! ```sh
//! LIWEB_SOAK_SECS=20 LIWEB_SOAK_CLIENTS=2000 \
//!   cargo test --release -p liweb-tests --test soak -- --ignored --nocapture
//! ```
//!
//! `LIWEB_SOAK_SECS` is the length of the measured phase (default 20),
//! `LIWEB_SOAK_CLIENTS` how many clients run at once (default 2000), and
//! `LIWEB_SOAK_WARMUP_SECS` the length of the warm-up phase (default a
//! quarter of the measured one, at most 10).
//!
//! The server runs on a runtime of its own, so its task count is not mixed
//! with the clients'. The heap is measured with a counting global allocator
//! (exact live bytes of the whole process, clients included), the resident
//! set from `/proc/self/statm`.

use std::{
    alloc::System,
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::FutureExt;
use liweb::{
    CloseCode, CodecKind, DisconnectReason, ErrorReport,
    client::{Client, Incoming},
    prelude::*,
    presence::{MemoryPresence, PresenceStore},
};
use liweb_tests::{RawTcp, TcpFrame};
use serde_json::json;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use tokio::task::JoinSet;

#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// How long one step may take under load before the soak fails. Longer
/// than the other tests' bound: two cores carry the server and thousands
/// of clients at once.
const STEP: Duration = Duration::from_secs(30);
/// The channel of every room of the soak.
const CHANNEL: &str = "soak";
/// Rooms that churning clients join (and leave, or vanish from).
const CHURN_ROOMS: u64 = 50;
/// How often a steady client chats in each of its rooms.
const STEADY_EVERY: Duration = Duration::from_millis(200);
/// Offline presence records expire after this.
const PRESENCE_TTL: Duration = Duration::from_millis(200);
/// The heartbeat: silent clients are closed after about both.
const PING_INTERVAL: Duration = Duration::from_secs(1);
const PING_TIMEOUT: Duration = Duration::from_secs(3);
/// How much the live heap may grow from the end of the warm-up to the end
/// of the measured phase. Both are taken with no connection open; what
/// may differ is allocator-internal and capacity noise (a map that grew
/// to a slightly higher peak), not per-connection state: one leaked
/// connection costs several KiB, so thousands of cycles leaking anything
/// per connection would exceed this many times over.
const HEAP_TOLERANCE: i64 = 1024 * 1024;

/// Events the soak clients send.
#[derive(Debug, Clone, PartialEq, Events)]
enum SoakIn {
    /// Joins a room of [`CHANNEL`]; as a request, answered with whether
    /// the sender was added.
    Join(String),
    /// Leaves a room; as a request, answered with whether the sender was
    /// a member.
    Leave(String),
    /// Sends `chat` to every member of the room, the sender included.
    Chat {
        /// The room.
        room: String,
        /// Who sent it.
        from: u64,
        /// The sender's sequence number in this room.
        seq: u64,
    },
    /// Sets the sender's presence activity in a room; as a request,
    /// answered with whether the sender had a presence record there.
    Activity {
        /// The room.
        room: String,
        /// The activity.
        activity: Option<String>,
    },
    /// Answered with `a + b`.
    Add {
        /// One term.
        a: u64,
        /// The other.
        b: u64,
    },
}

/// Events the soak server sends.
#[derive(Debug, Clone, PartialEq, Events)]
enum SoakOut {
    /// A room message.
    Chat {
        /// The room.
        room: String,
        /// Who sent it.
        from: u64,
        /// The sender's sequence number in this room.
        seq: u64,
    },
}

type SoakServer = Server<SoakIn, SoakOut>;
type SoakClient = Client<SoakOut, SoakIn>;

/// What the server counted.
#[derive(Debug, Default)]
struct Tally {
    connects: AtomicU64,
    disconnects: AtomicU64,
    /// Emits per steady room.
    steady: Mutex<HashMap<String, u64>>,
    /// Errors reported to the error hook, by text.
    errors: Mutex<HashMap<String, u64>>,
}

#[liweb::handler(SoakIn::Join)]
async fn join(
    conn: Conn<SoakOut>,
    server: SoakServer,
    room: String,
) -> Result<bool, liweb::JoinError> {
    server.channel(CHANNEL).room(&room).join(&conn).await
}

#[liweb::handler(SoakIn::Leave)]
async fn leave(conn: Conn<SoakOut>, server: SoakServer, room: String) -> Result<bool, Infallible> {
    Ok(server.channel(CHANNEL).room(&room).leave(&conn).await)
}

#[liweb::handler(SoakIn::Chat, out = SoakOut)]
async fn chat(
    server: SoakServer,
    State(tally): State<Arc<Tally>>,
    chat: soak_in::Chat,
) -> Result<usize, liweb::EncodeError> {
    let room = server.channel(CHANNEL).room(&chat.room);
    let sent = room.emit(SoakOut::Chat {
        room: chat.room.clone(),
        from: chat.from,
        seq: chat.seq,
    })?;
    if chat.room.starts_with("steady-") {
        *tally.steady.lock().unwrap().entry(chat.room).or_default() += 1;
    }
    Ok(sent)
}

#[liweb::handler(SoakIn::Activity)]
async fn activity(
    conn: Conn<SoakOut>,
    server: SoakServer,
    set: soak_in::Activity,
) -> Result<bool, Infallible> {
    Ok(server
        .channel(CHANNEL)
        .room(&set.room)
        .set_activity(&conn, set.activity))
}

#[liweb::handler(SoakIn::Add)]
async fn add(add: soak_in::Add) -> Result<u64, Infallible> {
    Ok(add.a.wrapping_add(add.b))
}

/// The server under soak, on its own runtime.
struct Soaked {
    runtime: tokio::runtime::Runtime,
    server: SoakServer,
    url: String,
    tcp_url: String,
    tcp_addr: SocketAddr,
    tally: Arc<Tally>,
    presence: Arc<MemoryPresence>,
}

impl Soaked {
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("soak-server")
            .enable_all()
            .build()
            .unwrap();
        let tally = Arc::new(Tally::default());
        let presence = Arc::new(MemoryPresence::new(PRESENCE_TTL));
        let (server, addr, tcp_addr) = runtime.block_on(async {
            let store: Arc<dyn PresenceStore> = presence.clone();
            let (on_connect, on_disconnect, on_error) =
                (tally.clone(), tally.clone(), tally.clone());
            let server = SoakServer::builder()
                .state(tally.clone())
                .handlers(liweb::handlers![exhaustive SoakIn => join, leave, chat, activity, add])
                .on_connect(move |_conn: Conn<SoakOut>| {
                    let tally = on_connect.clone();
                    async move {
                        tally.connects.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .on_disconnect(move |_conn: Conn<SoakOut>, _reason: DisconnectReason| {
                    let tally = on_disconnect.clone();
                    async move {
                        tally.disconnects.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .on_error(move |report: ErrorReport<SoakOut>| {
                    *on_error
                        .errors
                        .lock()
                        .unwrap()
                        .entry(format!("{:?}: {}", report.event, report.error))
                        .or_default() += 1;
                })
                .heartbeat(PING_INTERVAL, PING_TIMEOUT)
                .presence_ttl(PRESENCE_TTL)
                .presence_store(store)
                .build();
            for n in 0..CHURN_ROOMS {
                // Presence events on half the churn rooms: joins, leaves
                // and activities are announced to their members.
                if n % 2 == 0 {
                    server
                        .channel(CHANNEL)
                        .room(&churn_room(n))
                        .set_presence_events(true);
                }
            }
            let (addr, tcp_addr) = liweb_tests::serve(&server).await;
            (server, addr, tcp_addr)
        });
        Self {
            runtime,
            server,
            url: format!("ws://{addr}/ws"),
            tcp_url: format!("tcp://{tcp_addr}"),
            tcp_addr,
            tally,
            presence,
        }
    }

    fn alive_tasks(&self) -> usize {
        self.runtime.metrics().num_alive_tasks()
    }
}

fn churn_room(n: u64) -> String {
    format!("churn-{n}")
}

fn steady_room(n: u64) -> String {
    format!("steady-{n}")
}

/// Live heap bytes of the process.
fn live_bytes() -> i64 {
    // A reallocation's growth or shrinkage is already in these two.
    let stats = INSTRUMENTED_SYSTEM.stats();
    i64::try_from(stats.bytes_allocated).unwrap() - i64::try_from(stats.bytes_deallocated).unwrap()
}

/// The resident set of the process, from `/proc/self/statm`.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn mib(bytes: i64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// A small deterministic generator: runs differ only by timing.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// What the clients did, over the whole run.
#[derive(Debug, Default)]
struct Ops {
    sessions: AtomicU64,
    ws: AtomicU64,
    tcp: AtomicU64,
    json: AtomicU64,
    msgpack: AtomicU64,
    bincode: AtomicU64,
    abrupt: AtomicU64,
    silent: AtomicU64,
    joins: AtomicU64,
    leaves: AtomicU64,
    activities: AtomicU64,
    chats: AtomicU64,
    requests: AtomicU64,
    /// Room messages received, by every client.
    deliveries: AtomicU64,
    /// Of those, received by steady clients and checked one by one.
    checked: AtomicU64,
    presence_events: AtomicU64,
}

fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Polls `state` every 20 ms until `done` holds, failing after [`STEP`].
async fn settle<T: std::fmt::Debug>(what: &str, state: impl Fn() -> T, done: impl Fn(&T) -> bool) {
    let polling = async {
        while !done(&state()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(STEP, polling).await.is_err() {
        panic!("timed out waiting for {what}: {:?}", state());
    }
}

async fn request<R: serde::de::DeserializeOwned + Send + 'static>(
    client: &SoakClient,
    event: SoakIn,
    ops: &Ops,
) -> R {
    count(&ops.requests);
    client
        .request::<R>(event)
        .timeout(STEP)
        .await
        .expect("a request failed")
}

async fn connect(url: &str, codec: CodecKind) -> SoakClient {
    tokio::time::timeout(STEP, SoakClient::builder(url).codec(codec).connect())
        .await
        .expect("connect timed out")
        .expect("connect failed")
}

/// A client that stays in two steady rooms for the whole phase, chats in
/// both, and checks every room message it gets.
struct Steady {
    id: u64,
    client: SoakClient,
    rooms: [String; 2],
    /// Messages sent to each room.
    sent: HashMap<String, u64>,
    /// Per room: messages received.
    received: HashMap<String, u64>,
    /// Per room and steady sender: the next sequence number expected.
    next_seq: HashMap<(String, u64), u64>,
}

impl Steady {
    async fn join(soaked: &Soaked, id: u64, steady_rooms: u64, ops: &Ops) -> Self {
        let codec =
            [CodecKind::Json, CodecKind::MessagePack, CodecKind::Bincode][(id % 3) as usize];
        let url = if id % 4 == 3 {
            &soaked.tcp_url
        } else {
            &soaked.url
        };
        let client = connect(url, codec).await;
        let first = id % steady_rooms;
        let second = (first + 1 + id / steady_rooms) % steady_rooms;
        let second = if second == first {
            (first + 1) % steady_rooms
        } else {
            second
        };
        let rooms = [steady_room(first), steady_room(second)];
        for room in &rooms {
            let added: bool = request(&client, SoakIn::Join(room.clone()), ops).await;
            assert!(added, "steady client {id} joins {room}");
            count(&ops.joins);
        }
        Self {
            id,
            client,
            rooms,
            sent: HashMap::new(),
            received: HashMap::new(),
            next_seq: HashMap::new(),
        }
    }

    fn take(&mut self, item: Incoming<SoakOut>, ops: &Ops) {
        match item {
            Incoming::Event(SoakOut::Chat { room, from, seq }) => {
                count(&ops.deliveries);
                count(&ops.checked);
                assert!(
                    self.rooms.contains(&room),
                    "steady client {} got a message of {room}",
                    self.id
                );
                *self.received.entry(room.clone()).or_default() += 1;
                if from < STEADY_TAG_END {
                    let next = self.next_seq.entry((room.clone(), from)).or_default();
                    assert_eq!(
                        seq, *next,
                        "steady client {} in {room}: message {seq} of {from} out of order or lost",
                        self.id
                    );
                    *next += 1;
                }
            }
            other => panic!("steady client {} got {other:?}", self.id),
        }
    }

    /// Chats every [`STEADY_EVERY`] until `deadline`, taking what arrives.
    async fn run(mut self, deadline: tokio::time::Instant, ops: Arc<Ops>) -> Self {
        let mut ticks = tokio::time::interval(STEADY_EVERY);
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    if tokio::time::Instant::now() >= deadline {
                        return self;
                    }
                    for room in self.rooms.clone() {
                        let seq = self.sent.entry(room.clone()).or_default();
                        self.client
                            .emit(SoakIn::Chat { room, from: self.id, seq: *seq })
                            .expect("a steady client stays connected");
                        *seq += 1;
                        count(&ops.chats);
                    }
                }
                item = self.client.recv() => {
                    let item = item.expect("a steady client stays connected");
                    self.take(item, &ops);
                }
            }
        }
    }

    /// Receives until each room's count is what the server emitted there,
    /// then proves with a request that nothing else is on its way.
    async fn check(&mut self, emitted: &HashMap<String, u64>, ops: &Ops) {
        let expected = |room: &String| emitted.get(room).copied().unwrap_or(0);
        let all_in = |steady: &Self| {
            steady
                .rooms
                .iter()
                .all(|room| steady.received.get(room).copied().unwrap_or(0) >= expected(room))
        };
        while !all_in(self) {
            let item = tokio::time::timeout(STEP, self.client.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "steady client {} lost messages: got {:?}, emitted {emitted:?}",
                        self.id, self.received
                    )
                })
                .expect("a steady client stays connected");
            self.take(item, ops);
        }
        // The reply comes after everything queued before it.
        let sum: u64 = request(&self.client, SoakIn::Add { a: self.id, b: 1 }, ops).await;
        assert_eq!(sum, self.id + 1);
        while let Some(Some(item)) = self.client.recv().now_or_never() {
            self.take(item, ops);
        }
        for room in &self.rooms {
            assert_eq!(
                self.received.get(room).copied().unwrap_or(0),
                expected(room),
                "steady client {} in {room}: received vs emitted",
                self.id
            );
        }
    }

    async fn leave(self, ops: &Ops) {
        for room in &self.rooms {
            let was: bool = request(&self.client, SoakIn::Leave(room.clone()), ops).await;
            assert!(was, "steady client {} was in {room}", self.id);
            count(&ops.leaves);
        }
        self.client.close(CloseCode::Normal, "done").unwrap();
        until_closed(self.client).await;
    }
}

/// Steady clients' ids are below this; churning senders' above.
const STEADY_TAG_END: u64 = 1 << 32;

async fn until_closed(mut client: SoakClient) {
    let closing = async {
        while let Some(item) = client.recv().await {
            if matches!(item, Incoming::Closed(_)) {
                return;
            }
        }
    };
    tokio::time::timeout(STEP, closing)
        .await
        .expect("the close completes");
}

/// One typed session of a churning client: connect, join one or two
/// rooms, maybe set an activity, chat, ask, leave one room, and end with a
/// close or by dropping the client.
async fn typed_session(soaked: &SoakedUrls, rng: &mut Rng, tag: u64, ops: &Ops) {
    let codec = match rng.below(3) {
        0 => {
            count(&ops.json);
            CodecKind::Json
        }
        1 => {
            count(&ops.msgpack);
            CodecKind::MessagePack
        }
        _ => {
            count(&ops.bincode);
            CodecKind::Bincode
        }
    };
    let url = if rng.below(4) == 0 {
        count(&ops.tcp);
        &soaked.tcp_url
    } else {
        count(&ops.ws);
        &soaked.url
    };
    let mut client = connect(url, codec).await;
    let first = rng.below(CHURN_ROOMS);
    let mut rooms = vec![churn_room(first)];
    if rng.below(2) == 0 {
        rooms.push(churn_room(
            (first + 1 + rng.below(CHURN_ROOMS - 1)) % CHURN_ROOMS,
        ));
    }
    for room in &rooms {
        let added: bool = request(&client, SoakIn::Join(room.clone()), ops).await;
        assert!(added, "a churning client joins {room}");
        count(&ops.joins);
    }
    if rng.below(2) == 0 {
        let known: bool = request(
            &client,
            SoakIn::Activity {
                room: rooms[0].clone(),
                activity: Some("typing".to_owned()),
            },
            ops,
        )
        .await;
        assert!(known, "a member has a presence record");
        count(&ops.activities);
    }
    let messages = 1 + rng.below(4);
    for seq in 0..messages {
        for room in &rooms {
            client
                .emit(SoakIn::Chat {
                    room: room.clone(),
                    from: tag,
                    seq,
                })
                .unwrap();
            count(&ops.chats);
        }
        if rng.below(4) == 0 {
            // A message to steady members, from outside their rooms.
            client
                .emit(SoakIn::Chat {
                    room: steady_room(rng.below(soaked.steady_rooms)),
                    from: tag,
                    seq,
                })
                .unwrap();
            count(&ops.chats);
        }
        tokio::time::sleep(Duration::from_millis(rng.below(100))).await;
    }
    let (a, b) = (rng.below(1000), rng.below(1000));
    let sum: u64 = request(&client, SoakIn::Add { a, b }, ops).await;
    assert_eq!(sum, a + b);

    // Every message sent to a room the client is in comes back to it,
    // once and in order, among the other members' traffic.
    let mut next: HashMap<String, u64> = HashMap::new();
    let own_done = |next: &HashMap<String, u64>| {
        rooms
            .iter()
            .all(|room| next.get(room).copied().unwrap_or(0) == messages)
    };
    while !own_done(&next) {
        let item = tokio::time::timeout(STEP, client.recv())
            .await
            .expect("a churning client lost its own messages")
            .expect("the client is open");
        match item {
            Incoming::Event(SoakOut::Chat { room, from, seq }) => {
                count(&ops.deliveries);
                if from == tag {
                    let expected = next.entry(room).or_default();
                    assert_eq!(seq, *expected, "own message out of order or lost");
                    *expected += 1;
                }
            }
            Incoming::Malformed {
                event: Some(event), ..
            } if event.starts_with("presence:") => count(&ops.presence_events),
            other => panic!("a churning client got {other:?}"),
        }
    }
    let was: bool = request(&client, SoakIn::Leave(rooms[0].clone()), ops).await;
    assert!(was, "the client was in {}", rooms[0]);
    count(&ops.leaves);
    if rng.below(2) == 0 {
        client.close(CloseCode::Normal, "bye").unwrap();
        until_closed(client).await;
    } else {
        // The client's task says goodbye on its own.
        drop(client);
    }
}

/// A session that ends without any close: the socket just goes, with
/// membership, presence and messages in flight.
async fn abrupt_session(soaked: &SoakedUrls, rng: &mut Rng, tag: u64, ops: &Ops) {
    count(&ops.abrupt);
    count(&ops.json);
    let room = churn_room(rng.below(CHURN_ROOMS));
    let events = [
        ("join", json!(room)),
        ("activity", json!({ "room": room, "activity": "away" })),
        ("chat", json!({ "room": room, "from": tag, "seq": 0 })),
        ("chat", json!({ "room": room, "from": tag, "seq": 1 })),
    ];
    let keep = 1 + rng.below(events.len() as u64) as usize;
    if rng.below(2) == 0 {
        count(&ops.ws);
        let mut raw = liweb_tests::connect(soaked.url.as_str())
            .await
            .expect("the upgrade is accepted");
        for (event, payload) in &events[..keep] {
            raw.emit(event, payload.clone()).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.below(50))).await;
        drop(raw);
    } else {
        count(&ops.tcp);
        let mut raw = tokio::time::timeout(STEP, RawTcp::open(soaked.tcp_addr, "liweb.json"))
            .await
            .expect("the TCP handshake completes");
        for (event, payload) in &events[..keep] {
            raw.emit(event, payload.clone()).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.below(50))).await;
        drop(raw);
    }
}

/// A TCP client that completes the handshake and then never answers a
/// ping: the heartbeat closes it.
async fn silent_session(soaked: &SoakedUrls, ops: &Ops) {
    count(&ops.silent);
    count(&ops.tcp);
    count(&ops.json);
    let mut raw = tokio::time::timeout(STEP, RawTcp::open(soaked.tcp_addr, "liweb.json"))
        .await
        .expect("the TCP handshake completes");
    let closing = async {
        loop {
            match raw.next_frame().await {
                Some(TcpFrame::Ping) => continue,
                Some(TcpFrame::Close(code, _)) => return Some(code),
                // The server does not wait to write the close to a peer
                // that stopped answering.
                None => return None,
                other => panic!("a silent client got {other:?}"),
            }
        }
    };
    let code = tokio::time::timeout(STEP, closing)
        .await
        .expect("the heartbeat closes a silent client");
    assert!(
        code.is_none_or(|code| code == CloseCode::PingTimeout.as_u16()),
        "{code:?}"
    );
}

/// What the clients' tasks need of the server: where it is.
#[derive(Clone)]
struct SoakedUrls {
    url: String,
    tcp_url: String,
    tcp_addr: SocketAddr,
    steady_rooms: u64,
}

async fn churn(soaked: SoakedUrls, worker: u64, deadline: tokio::time::Instant, ops: Arc<Ops>) {
    let mut rng = Rng::new(worker + 1);
    let mut session = 0u64;
    while tokio::time::Instant::now() < deadline {
        session += 1;
        count(&ops.sessions);
        let tag = STEADY_TAG_END + (worker << 24) + session;
        match rng.below(100) {
            0 => silent_session(&soaked, &ops).await,
            1..=15 => abrupt_session(&soaked, &mut rng, tag, &ops).await,
            _ => typed_session(&soaked, &mut rng, tag, &ops).await,
        }
        // Reconnect after a pause.
        tokio::time::sleep(Duration::from_millis(rng.below(200))).await;
    }
}

/// The soak's settings, from the environment.
#[derive(Debug, Clone, Copy)]
struct Plan {
    secs: u64,
    warmup_secs: u64,
    clients: u64,
    steady: u64,
}

impl Plan {
    fn from_env() -> Self {
        let read = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        let secs = read("LIWEB_SOAK_SECS").unwrap_or(20).max(1);
        let clients = read("LIWEB_SOAK_CLIENTS").unwrap_or(2000).max(10);
        let warmup_secs = read("LIWEB_SOAK_WARMUP_SECS").unwrap_or((secs / 4).clamp(2, 10));
        Self {
            secs,
            warmup_secs,
            clients,
            steady: (clients / 40).max(4),
        }
    }
}

/// Runs every client for `duration`, then checks delivery to the steady
/// clients and that the server is back to nothing.
async fn phase(name: &str, soaked: &Soaked, plan: Plan, duration: Duration, ops: &Arc<Ops>) {
    let started = Instant::now();
    let steady_rooms = (plan.steady / 5).max(2);
    let urls = SoakedUrls {
        url: soaked.url.clone(),
        tcp_url: soaked.tcp_url.clone(),
        tcp_addr: soaked.tcp_addr,
        steady_rooms,
    };
    soaked.tally.steady.lock().unwrap().clear();

    // The steady members are in their rooms before anyone chats there.
    let mut steady = Vec::new();
    for id in 0..plan.steady {
        steady.push(Steady::join(soaked, id, steady_rooms, ops).await);
    }

    let deadline = tokio::time::Instant::now() + duration;
    let mut steady_runs = JoinSet::new();
    for client in steady {
        steady_runs.spawn(client.run(deadline, ops.clone()));
    }
    let mut churners = JoinSet::new();
    for worker in 0..plan.clients - plan.steady {
        churners.spawn(churn(urls.clone(), worker, deadline, ops.clone()));
    }
    while let Some(done) = churners.join_next().await {
        done.expect("a churning client failed");
    }
    let mut steady = Vec::new();
    while let Some(done) = steady_runs.join_next().await {
        steady.push(done.expect("a steady client failed"));
    }

    // Only the steady clients are left; every other connection's last
    // event has been handled.
    let server = &soaked.server;
    settle(
        "the churning connections to end",
        || (server.stats().live, server.connection_count()),
        |&(live, count)| live as u64 == plan.steady && count as u64 == plan.steady,
    )
    .await;
    let emitted = soaked.tally.steady.lock().unwrap().clone();
    let mut checks = JoinSet::new();
    for mut client in steady {
        let emitted = emitted.clone();
        let ops = ops.clone();
        checks.spawn(async move {
            client.check(&emitted, &ops).await;
            client
        });
    }
    let mut steady = Vec::new();
    while let Some(done) = checks.join_next().await {
        steady.push(done.expect("a steady client lost messages"));
    }
    // Every steady sender's messages reached every member of its rooms.
    let sent: HashMap<(String, u64), u64> = steady
        .iter()
        .flat_map(|client| {
            client
                .sent
                .iter()
                .map(|(room, n)| ((room.clone(), client.id), *n))
        })
        .collect();
    for client in &steady {
        for room in &client.rooms {
            for ((sent_room, sender), n) in &sent {
                if sent_room == room {
                    let got = client
                        .next_seq
                        .get(&(room.clone(), *sender))
                        .copied()
                        .unwrap_or(0);
                    assert_eq!(got, *n, "{} from {sender} to {}", room, client.id);
                }
            }
        }
    }
    let mut leaving = JoinSet::new();
    for client in steady {
        let ops = ops.clone();
        leaving.spawn(async move { client.leave(&ops).await });
    }
    while let Some(done) = leaving.join_next().await {
        done.expect("a steady client left");
    }
    eprintln!(
        "soak: {name}: {:.1} s of traffic, {:.1} s with the checks",
        duration.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

/// Asserts that nothing of any connection is left on the server.
async fn assert_nothing_left(soaked: &Soaked, server_tasks: usize) {
    let server = &soaked.server;
    settle(
        "every connection to end",
        || (server.stats().live, server.connection_count()),
        |&state| state == (0, 0),
    )
    .await;
    assert!(server.connections().is_empty());
    let tally = &soaked.tally;
    assert_eq!(
        tally.connects.load(Ordering::Relaxed),
        tally.disconnects.load(Ordering::Relaxed),
        "every connect has its disconnect"
    );
    let channel = server.channel(CHANNEL);
    for name in channel.rooms() {
        let room = channel.room(&name);
        assert_eq!(room.size(), 0, "{name} has members");
        assert!(room.members().is_empty(), "{name} has members");
        assert_eq!(room.online_count(), 0, "{name} has someone online");
    }
    // Offline records expire; the sweep removes them.
    settle(
        "the presence records to expire",
        || soaked.presence.record_count(),
        |&n| n == 0,
    )
    .await;
    for name in channel.rooms() {
        assert!(channel.room(&name).presence().is_empty(), "{name}");
    }
    // Every task a connection started (reader, writer, heartbeat, the HTTP
    // connection, spawned cleanups) has ended. liweb's timers all belong to
    // such tasks (the heartbeat, idle and auth deadlines are `select!`ed in
    // the connection's own task), so none outlives them.
    settle(
        "the server's tasks to end",
        || soaked.alive_tasks(),
        |&alive| alive <= server_tasks,
    )
    .await;
    assert_eq!(soaked.alive_tasks(), server_tasks);
}

/// Conformance L2.
/// Conformance H4.
#[test]
#[ignore = "a soak of tens of seconds: run by .ci/run, or by hand with LIWEB_SOAK_SECS"]
fn soak_thousands_of_clients_lose_no_message_and_leave_nothing_behind() {
    let plan = Plan::from_env();
    eprintln!("soak: {plan:?}");
    let at_start = (live_bytes(), rss_bytes());
    let soaked = Soaked::start();
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("soak-clients")
        .enable_all()
        .build()
        .unwrap();
    let server_tasks = soaked.alive_tasks();
    let client_tasks = clients.metrics().num_alive_tasks();
    let ops = Arc::new(Ops::default());
    let peak = Arc::new(AtomicU64::new(0));
    let peak_conns = Arc::new(AtomicU64::new(0));

    let (after_warmup, at_end) = clients.block_on(async {
        // Samples the heap and the open connections while the run lasts.
        let sampler = {
            let (peak, peak_conns) = (peak.clone(), peak_conns.clone());
            let server = soaked.server.clone();
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(Duration::from_millis(500));
                loop {
                    ticks.tick().await;
                    peak.fetch_max(u64::try_from(live_bytes()).unwrap_or(0), Ordering::Relaxed);
                    peak_conns.fetch_max(server.stats().live as u64, Ordering::Relaxed);
                }
            })
        };
        phase(
            "warm-up",
            &soaked,
            plan,
            Duration::from_secs(plan.warmup_secs),
            &ops,
        )
        .await;
        assert_nothing_left(&soaked, server_tasks).await;
        let after_warmup = (live_bytes(), rss_bytes());
        let before = ops_snapshot(&ops);
        let measured = Instant::now();
        phase(
            "measured",
            &soaked,
            plan,
            Duration::from_secs(plan.secs),
            &ops,
        )
        .await;
        assert_nothing_left(&soaked, server_tasks).await;
        let elapsed = measured.elapsed();
        sampler.abort();
        let _ = sampler.await;
        // The clients' tasks (the Rust client runs one per connection) end too.
        settle(
            "the clients' tasks to end",
            || tokio::runtime::Handle::current().metrics().num_alive_tasks(),
            |&alive| alive <= client_tasks,
        )
        .await;
        let at_end = (live_bytes(), rss_bytes());
        let after = ops_snapshot(&ops);
        eprintln!(
            "soak: measured phase: {:.1} s, {} sessions ({:.0}/s), {} chats sent, {} room messages delivered ({:.0}/s), {} checked one by one at steady members",
            elapsed.as_secs_f64(),
            after["sessions"] - before["sessions"],
            (after["sessions"] - before["sessions"]) as f64 / elapsed.as_secs_f64(),
            after["chats"] - before["chats"],
            after["deliveries"] - before["deliveries"],
            (after["deliveries"] - before["deliveries"]) as f64 / elapsed.as_secs_f64(),
            after["checked"] - before["checked"],
        );
        (after_warmup, at_end)
    });

    let stats = soaked.server.stats();
    let tally = &soaked.tally;
    eprintln!("soak: totals: {:?}", ops_snapshot(&ops));
    eprintln!(
        "soak: server: {} connections at most at once, {} connects, {} disconnects, {} ping timeouts, {} slow consumers, errors reported: {:?}",
        peak_conns.load(Ordering::Relaxed),
        tally.connects.load(Ordering::Relaxed),
        tally.disconnects.load(Ordering::Relaxed),
        stats.ping_timeouts,
        stats.slow_consumers,
        tally.errors.lock().unwrap()
    );
    eprintln!(
        "soak: server tasks {} at the start, {} at the end; client tasks {} at the start, {} at the end",
        server_tasks,
        soaked.alive_tasks(),
        client_tasks,
        clients.metrics().num_alive_tasks()
    );
    eprintln!(
        "soak: live heap: {} at the start, {} after the warm-up, {} peak, {} at the end ({} since the warm-up); resident: {} / {} / {}",
        mib(at_start.0),
        mib(after_warmup.0),
        mib(i64::try_from(peak.load(Ordering::Relaxed)).unwrap_or(0)),
        mib(at_end.0),
        mib(at_end.0 - after_warmup.0),
        mib(i64::try_from(at_start.1).unwrap_or(0)),
        mib(i64::try_from(after_warmup.1).unwrap_or(0)),
        mib(i64::try_from(at_end.1).unwrap_or(0)),
    );

    let snapshot = ops_snapshot(&ops);
    assert!(snapshot["silent"] == 0 || stats.ping_timeouts >= snapshot["silent"]);
    assert_eq!(stats.slow_consumers, 0, "no client fell behind");
    assert!(
        !tally
            .errors
            .lock()
            .unwrap()
            .keys()
            .any(|error| error.contains("panic")),
        "no handler panicked"
    );
    assert!(
        at_end.0 - after_warmup.0 <= HEAP_TOLERANCE,
        "the live heap grew by {} over the measured phase (tolerance {})",
        mib(at_end.0 - after_warmup.0),
        mib(HEAP_TOLERANCE)
    );
    clients.shutdown_timeout(Duration::from_secs(1));
}

fn ops_snapshot(ops: &Ops) -> HashMap<&'static str, u64> {
    let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    HashMap::from([
        ("sessions", read(&ops.sessions)),
        ("ws", read(&ops.ws)),
        ("tcp", read(&ops.tcp)),
        ("json", read(&ops.json)),
        ("msgpack", read(&ops.msgpack)),
        ("bincode", read(&ops.bincode)),
        ("abrupt", read(&ops.abrupt)),
        ("silent", read(&ops.silent)),
        ("joins", read(&ops.joins)),
        ("leaves", read(&ops.leaves)),
        ("activities", read(&ops.activities)),
        ("chats", read(&ops.chats)),
        ("requests", read(&ops.requests)),
        ("deliveries", read(&ops.deliveries)),
        ("checked", read(&ops.checked)),
        ("presence_events", read(&ops.presence_events)),
    ])
}
