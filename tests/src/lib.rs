//! Shared fixtures of liweb's integration tests: a test application with
//! events for every behaviour, a recorder of hook calls, and helpers that
//! start a real server on a loopback port.
//!
//! Every wait is bounded by [`WAIT`]: a broken behaviour fails fast instead
//! of hanging.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use liweb::{
    CloseCode, DisconnectReason, ErrorReport, ServerBuilder,
    client::{Client, Incoming},
    prelude::*,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// How long a test waits for something that should happen.
pub const WAIT: Duration = Duration::from_secs(5);

/// A role stored in a connection's data, for predicate broadcasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// May receive admin broadcasts.
    Admin,
    /// Everyone else.
    Member,
}

/// Events the test clients send.
#[derive(Debug, Clone, PartialEq, Events)]
pub enum TestIn {
    /// Answered with `echoed` carrying the same text.
    Echo(String),
    /// Recorded by two handlers, in registration order.
    Say {
        /// What is said.
        text: String,
        /// A nested value, to test field paths in decode errors.
        #[serde(default)]
        tags: Vec<String>,
    },
    /// Recorded and answered with `ordered`, after a delay that varies.
    Order(u32),
    /// The first handler returns an error, the second records that it ran.
    Fail,
    /// The handler panics.
    Panic,
    /// Broadcast to every connection.
    BroadcastAll(String),
    /// Broadcast to every connection but the sender.
    BroadcastOthers(String),
    /// Broadcast to the connections whose role is `admin`.
    BroadcastAdmins(String),
    /// Stores the sender's role.
    SetRole(Role),
    /// The server closes the sender with this code and reason.
    CloseMe {
        /// The close code.
        code: u16,
        /// The close reason.
        reason: String,
    },
    /// Sends `size` bytes of text to every connection, `count` times.
    Flood {
        /// Bytes per message.
        size: usize,
        /// How many messages.
        count: usize,
    },
    /// A unit event.
    Ping,
}

/// Events the test server sends.
#[derive(Debug, Clone, PartialEq, Events)]
pub enum TestOut {
    /// The answer to `echo`.
    Echoed(String),
    /// The answer to `order`.
    Ordered(u32),
    /// A broadcast.
    Broadcast(String),
    /// The answer to `ping`.
    Pong,
    /// Flood traffic.
    Flood(String),
}

/// One thing the server did, as seen by hooks and handlers.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// `on_connect` ran for this connection.
    Connected(ConnId),
    /// `on_disconnect` ran for this connection.
    Disconnected(ConnId, DisconnectReason),
    /// A handler ran: which one, and what it got.
    Handled(&'static str, String),
    /// The error hook ran.
    Error {
        /// The connection.
        conn: ConnId,
        /// The event, if any.
        event: Option<&'static str>,
        /// The error's text.
        error: String,
    },
}

/// What the server did, in order, with a way to wait for it.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    records: Arc<Mutex<Vec<Record>>>,
    changed: Arc<Notify>,
    conns: Arc<Mutex<Vec<Conn<TestOut>>>>,
}

impl Recorder {
    /// Appends a record.
    pub fn push(&self, record: Record) {
        self.records.lock().unwrap().push(record);
        self.changed.notify_waiters();
    }

    /// Everything recorded so far.
    pub fn records(&self) -> Vec<Record> {
        self.records.lock().unwrap().clone()
    }

    /// The records matching `filter`.
    pub fn matching(&self, filter: impl Fn(&Record) -> bool) -> Vec<Record> {
        self.records()
            .into_iter()
            .filter(|record| filter(record))
            .collect()
    }

    /// Connections seen by `on_connect`, in order.
    pub fn conns(&self) -> Vec<Conn<TestOut>> {
        self.conns.lock().unwrap().clone()
    }

    /// Waits until `done` holds for the records, or fails after [`WAIT`].
    pub async fn wait_until(&self, what: &str, done: impl Fn(&[Record]) -> bool) -> Vec<Record> {
        let waiting = async {
            loop {
                let notified = self.changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let records = self.records();
                if done(&records) {
                    return records;
                }
                notified.await;
            }
        };
        match tokio::time::timeout(WAIT, waiting).await {
            Ok(records) => records,
            Err(_) => panic!(
                "timed out waiting for {what}; records: {:#?}",
                self.records()
            ),
        }
    }
}

impl Recorder {
    /// Waits for the `on_disconnect` of `id` and returns its reason.
    pub async fn disconnected(&self, id: ConnId) -> DisconnectReason {
        let records = self
            .wait_until("on_disconnect", |records| {
                records
                    .iter()
                    .any(|r| matches!(r, Record::Disconnected(d, _) if *d == id))
            })
            .await;
        records
            .into_iter()
            .find_map(|r| match r {
                Record::Disconnected(d, reason) if d == id => Some(reason),
                _ => None,
            })
            .expect("found by `wait_until`")
    }
}

/// The test server type.
pub type TestServer = Server<TestIn, TestOut>;

/// The test client type.
pub type TestClient = Client<TestOut, TestIn>;

#[liweb::handler(TestIn::Echo)]
async fn echo(conn: Conn<TestOut>, text: String) -> Result<(), liweb::EmitError> {
    conn.emit(TestOut::Echoed(text))
}

#[liweb::handler(TestIn::Say)]
async fn say_first(State(recorder): State<Recorder>, say: test_in::Say) {
    recorder.push(Record::Handled(
        "say_first",
        format!("{}|{}", say.text, say.tags.join(",")),
    ));
}

#[liweb::handler(TestIn::Say)]
async fn say_second(State(recorder): State<Recorder>, say: test_in::Say) {
    recorder.push(Record::Handled("say_second", say.text));
}

#[liweb::handler(TestIn::Order)]
async fn order(conn: Conn<TestOut>, State(recorder): State<Recorder>, n: u32) {
    // Later events get shorter delays: without per-connection ordering they
    // would overtake earlier ones.
    tokio::time::sleep(Duration::from_micros(
        u64::from(50u32.saturating_sub(n % 50)) * 20,
    ))
    .await;
    recorder.push(Record::Handled("order", n.to_string()));
    let _ = conn.emit(TestOut::Ordered(n));
}

/// The error type of the failing handler.
#[derive(Debug)]
pub struct Boom;

impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("boom")
    }
}

impl std::error::Error for Boom {}

#[liweb::handler(TestIn::Fail)]
async fn fail_first() -> Result<(), Boom> {
    Err(Boom)
}

#[liweb::handler(TestIn::Fail)]
async fn fail_second(State(recorder): State<Recorder>) {
    recorder.push(Record::Handled("fail_second", String::new()));
}

#[liweb::handler(TestIn::Panic)]
async fn panic_handler(State(recorder): State<Recorder>) {
    recorder.push(Record::Handled("panic", String::new()));
    panic!("handler panicked on purpose");
}

#[liweb::handler(TestIn::BroadcastAll)]
async fn broadcast_all(
    server: Server<TestIn, TestOut>,
    text: String,
) -> Result<(), liweb::EncodeError> {
    server.broadcast(TestOut::Broadcast(text)).map(drop)
}

#[liweb::handler(TestIn::BroadcastOthers)]
async fn broadcast_others(
    conn: Conn<TestOut>,
    server: TestServer,
    text: String,
) -> Result<(), liweb::EncodeError> {
    server
        .broadcast_except(conn.id(), TestOut::Broadcast(text))
        .map(drop)
}

#[liweb::handler(TestIn::BroadcastAdmins)]
async fn broadcast_admins(
    server: Server<TestIn, TestOut>,
    text: String,
) -> Result<(), liweb::EncodeError> {
    server
        .broadcast_filter(
            |conn| conn.data::<Role>() == Some(Role::Admin),
            TestOut::Broadcast(text),
        )
        .map(drop)
}

#[liweb::handler(TestIn::SetRole)]
async fn set_role(conn: Conn<TestOut>, State(recorder): State<Recorder>, role: Role) {
    conn.set_data(role);
    recorder.push(Record::Handled("set_role", format!("{role:?}")));
}

#[liweb::handler(TestIn::CloseMe)]
async fn close_me(conn: Conn<TestOut>, close: test_in::CloseMe) {
    conn.close(CloseCode::from(close.code), &close.reason);
}

#[liweb::handler(TestIn::Flood, out = TestOut)]
async fn flood(server: TestServer, flood: test_in::Flood) -> Result<(), liweb::EncodeError> {
    let text = "x".repeat(flood.size);
    for _ in 0..flood.count {
        server.broadcast(TestOut::Flood(text.clone()))?;
        tokio::task::yield_now().await;
    }
    Ok(())
}

#[liweb::handler(TestIn::Ping)]
async fn ping(conn: Conn<TestOut>) {
    let _ = conn.emit(TestOut::Pong);
}

/// The test application's server builder, with every handler and hook
/// recording into `recorder`; tests change limits before `build`.
pub fn builder(recorder: &Recorder) -> ServerBuilder<TestIn, TestOut> {
    let on_connect_recorder = recorder.clone();
    let on_disconnect_recorder = recorder.clone();
    let on_error_recorder = recorder.clone();
    TestServer::builder()
        .state(recorder.clone())
        .handlers(liweb::handlers![
            exhaustive TestIn =>
            echo, say_first, say_second, order, fail_first, fail_second, panic_handler,
            broadcast_all, broadcast_others, broadcast_admins, set_role, close_me, flood, ping,
        ])
        .on_connect(move |conn: Conn<TestOut>| {
            let recorder = on_connect_recorder.clone();
            async move {
                recorder.conns.lock().unwrap().push(conn.clone());
                recorder.push(Record::Connected(conn.id()));
            }
        })
        .on_disconnect(move |conn: Conn<TestOut>, reason: DisconnectReason| {
            let recorder = on_disconnect_recorder.clone();
            async move { recorder.push(Record::Disconnected(conn.id(), reason)) }
        })
        .on_error(move |report: ErrorReport<TestOut>| {
            on_error_recorder.push(Record::Error {
                conn: report.conn.id(),
                event: report.event,
                error: report.error.to_string(),
            });
        })
}

/// A server running on a loopback port.
#[derive(Debug)]
pub struct Running {
    /// The server handle.
    pub server: TestServer,
    /// Where it listens.
    pub addr: SocketAddr,
    /// What its hooks and handlers did.
    pub recorder: Recorder,
}

impl Running {
    /// Starts the test application with default limits at `/ws`.
    pub async fn start() -> Self {
        Self::start_with(|builder| builder).await
    }

    /// Starts the test application after `configure` changed its builder.
    pub async fn start_with(
        configure: impl FnOnce(ServerBuilder<TestIn, TestOut>) -> ServerBuilder<TestIn, TestOut>,
    ) -> Self {
        let recorder = Recorder::default();
        let server = configure(builder(&recorder)).build();
        let app = axum::Router::new().route("/ws", server.ws_route());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
        Self {
            server,
            addr,
            recorder,
        }
    }

    /// The WebSocket URL.
    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Connects a typed client and waits until the server has run `on_connect` for it.
    pub async fn client(&self) -> (TestClient, ConnId) {
        let before = self.recorder.conns().len();
        let client = tokio::time::timeout(WAIT, TestClient::connect(&self.url()))
            .await
            .expect("connect timed out")
            .expect("connect failed");
        let records = self
            .recorder
            .wait_until("on_connect", |records| {
                records
                    .iter()
                    .filter(|r| matches!(r, Record::Connected(_)))
                    .count()
                    > before
            })
            .await;
        let id = records
            .iter()
            .filter_map(|r| match r {
                Record::Connected(id) => Some(*id),
                _ => None,
            })
            .nth(before)
            .unwrap();
        (client, id)
    }
}

/// The next item from the client, or a failure after [`WAIT`].
pub async fn next(client: &mut TestClient) -> Incoming<TestOut> {
    tokio::time::timeout(WAIT, client.recv())
        .await
        .expect("timed out waiting for the server")
        .expect("the client ended without `Closed`")
}

/// The next event from the client, failing on anything else.
pub async fn next_event(client: &mut TestClient) -> TestOut {
    match next(client).await {
        Incoming::Event(event) => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

/// Sends an `echo` and waits for its answer, failing if anything else
/// arrives first: proves nothing else was queued for this client before it.
pub async fn fence(client: &mut TestClient, text: &str) {
    client.emit(TestIn::Echo(text.to_owned())).unwrap();
    assert_eq!(next_event(client).await, TestOut::Echoed(text.to_owned()));
}
