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

use futures_util::{SinkExt, StreamExt};
use liweb::{
    CloseCode, CodecKind, DisconnectReason, ErrorReport, JoinError, Room, Serve, ServeHandle,
    ServerBuilder,
    auth::AuthUser,
    client::{Client, Incoming},
    prelude::*,
    presence::PresenceKey,
    state::StateError,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Notify;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{self, Message, client::IntoClientRequest},
};

pub mod bystanders;
mod combo;

pub use combo::{Combo, Heard, Link, Msg, Peer, Refusal, encode};

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

/// A room, named by its channel and its key in that channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomRef {
    /// The channel.
    pub channel: String,
    /// The room's key in its channel.
    pub room: String,
}

impl RoomRef {
    /// The room `room` of channel `channel`.
    pub fn new(channel: &str, room: &str) -> Self {
        Self {
            channel: channel.to_owned(),
            room: room.to_owned(),
        }
    }

    /// The room on `server`, created if it does not exist yet.
    pub fn on(&self, server: &TestServer) -> Room<TestOut> {
        server.channel(&self.channel).room(&self.room)
    }
}

/// Which members of a room a room emit is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// `Room::emit`: every member.
    Everyone,
    /// `Room::emit_except`: every member but this one.
    Except(ConnId),
    /// `Room::emit_to`: this member only.
    To(ConnId),
}

/// One operation on a room's state, run by the `room_state` handler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum StateOp {
    /// `set`; answers `null`.
    Set {
        /// The key.
        key: String,
        /// The value.
        value: Value,
    },
    /// `get::<Value>`; answers the value or `null`.
    Get {
        /// The key.
        key: String,
    },
    /// `get::<i64>`; answers the number or `null`.
    GetInt {
        /// The key.
        key: String,
    },
    /// `has`; answers a boolean.
    Has {
        /// The key.
        key: String,
    },
    /// `delete`; answers whether the key was set.
    Delete {
        /// The key.
        key: String,
    },
    /// `clear`; answers `null`.
    Clear,
    /// `snapshot`; answers the whole map.
    Snapshot,
    /// `update`; answers `null`.
    Update {
        /// The key.
        key: String,
        /// The new value.
        value: Value,
    },
    /// `patch`; answers `null`.
    Patch {
        /// The key.
        key: String,
        /// The fields to merge.
        fields: Value,
    },
    /// `push`; answers `null`.
    Push {
        /// The key.
        key: String,
        /// The item to append.
        item: Value,
    },
    /// `remove` of the items equal to `equal_to`; answers how many went.
    Remove {
        /// The key.
        key: String,
        /// The value of the items to remove.
        equal_to: Value,
    },
    /// `increment`; answers the new number.
    Increment {
        /// The key.
        key: String,
        /// How much to add.
        by: i64,
    },
    /// `decrement`; answers the new number.
    Decrement {
        /// The key.
        key: String,
        /// How much to subtract.
        by: i64,
    },
}

/// A [`StateError`] as the test client receives it: its kind and key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateFailure {
    /// `StateError::KeyMissing`.
    KeyMissing(String),
    /// `StateError::NotAnArray`.
    NotAnArray(String),
    /// `StateError::NotANumber`.
    NotANumber(String),
    /// `StateError::NotAnObject`.
    NotAnObject(String),
    /// `StateError::Decode`.
    Decode(String),
    /// Any other error, as text.
    Other(String),
}

impl From<StateError> for StateFailure {
    fn from(error: StateError) -> Self {
        match error {
            StateError::KeyMissing { key } => Self::KeyMissing(key),
            StateError::NotAnArray { key } => Self::NotAnArray(key),
            StateError::NotANumber { key } => Self::NotANumber(key),
            StateError::NotAnObject { key } => Self::NotAnObject(key),
            StateError::Decode { key, .. } => Self::Decode(key),
            other => Self::Other(other.to_string()),
        }
    }
}

/// What `Room::join` answered, as the test client receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinOutcome {
    /// `Ok(true)`.
    Added,
    /// `Ok(false)`.
    AlreadyMember,
    /// `Err(JoinError::Rejected(reason))`.
    Rejected(String),
    /// `Err(JoinError::TimedOut)`.
    TimedOut,
}

/// The user of the auth tests' strategies (and the claims of their JWTs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestUser {
    /// The user's name, also its id.
    pub name: String,
    /// Whether the user is an administrator.
    #[serde(default)]
    pub admin: bool,
}

impl AuthUser for TestUser {
    fn user_id(&self) -> String {
        self.name.clone()
    }
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
    /// Joins the sender to a room; answered with `join_outcome`.
    Join(RoomRef),
    /// Removes the sender from a room; answered with `left`.
    Leave(RoomRef),
    /// Sends `room_message` to members of a room; answered with `sent`.
    RoomEmit {
        /// The room.
        room: RoomRef,
        /// The message.
        text: String,
        /// Which members.
        target: Target,
    },
    /// Sends `room_message` once to every member of any of the rooms
    /// (`server.to(..)`), but `except`; answered with `sent`.
    MultiEmit {
        /// The rooms.
        rooms: Vec<RoomRef>,
        /// The message.
        text: String,
        /// The member to skip.
        #[serde(default)]
        except: Option<ConnId>,
    },
    /// Deletes a room; answered with `deleted`.
    DeleteRoom(RoomRef),
    /// Runs one operation on a room's state; answered with `state_result`.
    RoomState {
        /// The room.
        room: RoomRef,
        /// The operation.
        op: StateOp,
    },
    /// Sets or clears the sender's presence activity in a room; answered
    /// with `activity_set`.
    SetActivity {
        /// The room.
        room: RoomRef,
        /// The activity.
        activity: Option<String>,
    },
    /// Makes the sender's presence that of this user; recorded.
    SetUser(String),
    /// Recorded; as a request, answered with `num / den`, or with an error
    /// reply ([`Boom`]) when `den` is 0.
    Divide {
        /// The dividend.
        num: i64,
        /// The divisor.
        den: i64,
    },
    /// As a request, answered through the `Ack` extractor with
    /// `"early <text>"` before the handler records it; the handler's own
    /// return value (`"late <text>"`) must not be sent.
    AckEarly(String),
    /// Refused by a guard unless the sender's role is admin; recorded and,
    /// as a request, answered with the text.
    Guarded(String),
    /// Answered with `you`: the sender's authenticated [`TestUser`], if any.
    WhoAmI,
    /// A payload type that recurses; answered with `echoed` carrying its
    /// depth.
    Nest(Nest),
}

/// A payload type that recurses, as a user's tree might: for the payload
/// depth limit in every codec.
/// Its variants have one-letter names so a deep one fits a frame: on the
/// wire in JSON, `{"d":{"d":"e"}}` is three levels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Nest {
    /// The innermost level.
    #[serde(rename = "e")]
    End,
    /// One level more.
    #[serde(rename = "d")]
    Deeper(Box<Nest>),
}

impl Nest {
    /// How many levels it has, counted without recursing.
    pub fn depth(&self) -> usize {
        let mut depth = 1;
        let mut nest = self;
        while let Nest::Deeper(inner) = nest {
            depth += 1;
            nest = inner;
        }
        depth
    }
}

impl Drop for Nest {
    /// Dropped without recursing, so a deep one cannot overflow the stack.
    fn drop(&mut self) {
        let mut next = match self {
            Nest::Deeper(inner) => std::mem::replace(&mut **inner, Nest::End),
            Nest::End => return,
        };
        while let Nest::Deeper(inner) = &mut next {
            next = std::mem::replace(&mut **inner, Nest::End);
        }
    }
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
    /// A room emit.
    RoomMessage(String),
    /// The answer to `join`.
    JoinOutcome(JoinOutcome),
    /// The answer to `leave`: whether the sender was a member.
    Left(bool),
    /// The answer to room emits: how many connections the event was queued for.
    Sent(usize),
    /// The answer to `delete_room`: whether the room existed.
    Deleted(bool),
    /// The answer to `room_state`.
    StateResult(Result<Value, StateFailure>),
    /// The answer to `set_activity`: whether the sender had a presence record.
    ActivitySet(bool),
    /// The answer to `who_am_i`.
    You(Option<TestUser>),
    /// A server request, for tests of client replies.
    Question(String),
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
    /// Another hook (auth, middleware, policy callback) ran: which one, and
    /// what it got.
    Hook(&'static str, String),
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

#[liweb::handler(TestIn::Join)]
async fn join_room(
    conn: Conn<TestOut>,
    server: TestServer,
    room: RoomRef,
) -> Result<(), liweb::EmitError> {
    let outcome = match room.on(&server).join(&conn).await {
        Ok(true) => JoinOutcome::Added,
        Ok(false) => JoinOutcome::AlreadyMember,
        Err(JoinError::Rejected(rejected)) => JoinOutcome::Rejected(rejected.reason().to_owned()),
        Err(JoinError::TimedOut) => JoinOutcome::TimedOut,
        Err(other) => JoinOutcome::Rejected(other.to_string()),
    };
    conn.emit(TestOut::JoinOutcome(outcome))
}

#[liweb::handler(TestIn::Leave)]
async fn leave_room(
    conn: Conn<TestOut>,
    server: TestServer,
    room: RoomRef,
) -> Result<(), liweb::EmitError> {
    let left = room.on(&server).leave(&conn).await;
    conn.emit(TestOut::Left(left))
}

#[liweb::handler(TestIn::RoomEmit)]
async fn room_emit(
    conn: Conn<TestOut>,
    server: TestServer,
    emit: test_in::RoomEmit,
) -> Result<(), liweb::EmitError> {
    let room = emit.room.on(&server);
    let event = TestOut::RoomMessage(emit.text);
    let sent = match emit.target {
        Target::Everyone => room.emit(event)?,
        Target::Except(id) => room.emit_except(id, event)?,
        Target::To(id) => usize::from(room.emit_to(id, event)?),
    };
    conn.emit(TestOut::Sent(sent))
}

#[liweb::handler(TestIn::MultiEmit)]
async fn multi_emit(
    conn: Conn<TestOut>,
    server: TestServer,
    emit: test_in::MultiEmit,
) -> Result<(), liweb::EmitError> {
    let rooms: Vec<Room<TestOut>> = emit.rooms.iter().map(|room| room.on(&server)).collect();
    let to = server.to(&rooms);
    let event = TestOut::RoomMessage(emit.text);
    let sent = match emit.except {
        Some(id) => to.emit_except(id, event)?,
        None => to.emit(event)?,
    };
    conn.emit(TestOut::Sent(sent))
}

#[liweb::handler(TestIn::DeleteRoom)]
async fn delete_room(
    conn: Conn<TestOut>,
    server: TestServer,
    room: RoomRef,
) -> Result<(), liweb::EmitError> {
    let deleted = server.channel(&room.channel).delete_room(&room.room).await;
    conn.emit(TestOut::Deleted(deleted))
}

#[liweb::handler(TestIn::RoomState)]
async fn room_state(
    conn: Conn<TestOut>,
    server: TestServer,
    call: test_in::RoomState,
) -> Result<(), liweb::EmitError> {
    let state = call.room.on(&server).state();
    let result = match call.op {
        StateOp::Set { key, value } => state.set(&key, &value).await.map(|()| Value::Null),
        StateOp::Get { key } => state
            .get::<Value>(&key)
            .await
            .map(Option::unwrap_or_default),
        StateOp::GetInt { key } => state.get::<i64>(&key).await.map(Value::from),
        StateOp::Has { key } => state.has(&key).await.map(Value::from),
        StateOp::Delete { key } => state.delete(&key).await.map(Value::from),
        StateOp::Clear => state.clear().await.map(|()| Value::Null),
        StateOp::Snapshot => state.snapshot().await.map(Value::Object),
        StateOp::Update { key, value } => state.update(&key, &value).await.map(|()| Value::Null),
        StateOp::Patch { key, fields } => state.patch(&key, &fields).await.map(|()| Value::Null),
        StateOp::Push { key, item } => state.push(&key, &item).await.map(|()| Value::Null),
        StateOp::Remove { key, equal_to } => state
            .remove(&key, move |item| *item == equal_to)
            .await
            .map(Value::from),
        StateOp::Increment { key, by } => state.increment(&key, by).await.map(Value::Number),
        StateOp::Decrement { key, by } => state.decrement(&key, by).await.map(Value::Number),
    };
    conn.emit(TestOut::StateResult(result.map_err(StateFailure::from)))
}

#[liweb::handler(TestIn::SetActivity)]
async fn set_activity(
    conn: Conn<TestOut>,
    server: TestServer,
    set: test_in::SetActivity,
) -> Result<(), liweb::EmitError> {
    let known = set.room.on(&server).set_activity(&conn, set.activity);
    conn.emit(TestOut::ActivitySet(known))
}

#[liweb::handler(TestIn::SetUser)]
async fn set_user(conn: Conn<TestOut>, State(recorder): State<Recorder>, user: String) {
    conn.set_data(PresenceKey::user(user.as_str()));
    recorder.push(Record::Handled("set_user", user));
}

#[liweb::handler(TestIn::Divide)]
async fn divide(State(recorder): State<Recorder>, divide: test_in::Divide) -> Result<i64, Boom> {
    recorder.push(Record::Handled(
        "divide",
        format!("{}/{}", divide.num, divide.den),
    ));
    divide.num.checked_div(divide.den).ok_or(Boom)
}

#[liweb::handler(TestIn::AckEarly)]
async fn ack_early(
    ack: Ack,
    State(recorder): State<Recorder>,
    text: String,
) -> Result<String, Boom> {
    let sent = ack.send(&format!("early {text}")).unwrap_or(false);
    recorder.push(Record::Handled("ack_early", format!("{text} sent={sent}")));
    Ok(format!("late {text}"))
}

async fn admins_only(conn: Conn<TestOut>) -> Result<(), &'static str> {
    match conn.data::<Role>() {
        Some(Role::Admin) => Ok(()),
        _ => Err("admins only"),
    }
}

#[liweb::handler(TestIn::Guarded, out = TestOut, guard = admins_only)]
async fn guarded(State(recorder): State<Recorder>, text: String) -> Result<String, Boom> {
    recorder.push(Record::Handled("guarded", text.clone()));
    Ok(text)
}

#[liweb::handler(TestIn::WhoAmI)]
async fn who_am_i(conn: Conn<TestOut>) -> Result<(), liweb::EmitError> {
    conn.emit(TestOut::You(conn.user::<TestUser>()))
}

#[liweb::handler(TestIn::Nest)]
async fn nest(conn: Conn<TestOut>, nest: Nest) -> Result<(), liweb::EmitError> {
    conn.emit(TestOut::Echoed(nest.depth().to_string()))
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
            join_room, leave_room, room_emit, multi_emit, delete_room, room_state, set_activity,
            set_user, divide, ack_early, guarded, who_am_i, nest,
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

/// Serves `server` on the current runtime: WebSocket at `/ws` on one
/// loopback port (with `liweb::serve`'s defaults), TCP on another. Returns
/// the two addresses.
pub async fn serve<In: Events, Out: Events>(server: &Server<In, Out>) -> (SocketAddr, SocketAddr) {
    let (addr, tcp_addr, _) = serve_with(server, |serve| serve).await;
    (addr, tcp_addr)
}

/// Serves `server` as [`serve`] does, after `configure` changed the
/// settings of the WebSocket side's `liweb::serve`. Returns the two
/// addresses and the handle that reads `liweb::serve`'s counters.
pub async fn serve_with<In: Events, Out: Events>(
    server: &Server<In, Out>,
    configure: impl FnOnce(Serve) -> Serve,
) -> (SocketAddr, SocketAddr, ServeHandle) {
    let app = axum::Router::new().route("/ws", server.ws_route());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = configure(liweb::serve(listener, app));
    let handle = serving.handle();
    tokio::spawn(async move {
        serving.await.unwrap();
    });
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp_addr = tcp.local_addr().unwrap();
    let serving = server.clone();
    tokio::spawn(async move { serving.serve_tcp(tcp).await.unwrap() });
    (addr, tcp_addr, handle)
}

/// A server running on a loopback port.
#[derive(Debug)]
pub struct Running {
    /// The server handle.
    pub server: TestServer,
    /// Where it listens for WebSocket connections.
    pub addr: SocketAddr,
    /// Where the same server listens for TCP connections.
    pub tcp_addr: SocketAddr,
    /// What its hooks and handlers did.
    pub recorder: Recorder,
    /// The counters of the `liweb::serve` that serves its WebSocket side.
    pub serving: ServeHandle,
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
        Self::start_recording(Recorder::default(), configure).await
    }

    /// Starts the test application recording into `recorder`, after
    /// `configure` changed its builder: for hooks and middleware that the
    /// test adds and that record too.
    pub async fn start_recording(
        recorder: Recorder,
        configure: impl FnOnce(ServerBuilder<TestIn, TestOut>) -> ServerBuilder<TestIn, TestOut>,
    ) -> Self {
        Self::start_serving(recorder, configure, |serve| serve).await
    }

    /// Starts the test application as [`Running::start_recording`] does,
    /// after `serve` changed the settings of its `liweb::serve`.
    pub async fn start_serving(
        recorder: Recorder,
        configure: impl FnOnce(ServerBuilder<TestIn, TestOut>) -> ServerBuilder<TestIn, TestOut>,
        serve: impl FnOnce(Serve) -> Serve,
    ) -> Self {
        let server = configure(builder(&recorder)).build();
        let (addr, tcp_addr, serving) = serve_with(&server, serve).await;
        Self {
            server,
            addr,
            tcp_addr,
            recorder,
            serving,
        }
    }

    /// The TCP URL of the Rust client: `tcp://127.0.0.1:port`.
    pub fn tcp_url(&self) -> String {
        format!("tcp://{}", self.tcp_addr)
    }

    /// Connects a typed client over TCP speaking `codec` and waits until
    /// the server has run `on_connect` for it.
    pub async fn tcp_client_with(&self, codec: CodecKind) -> (TestClient, ConnId) {
        let before = self.recorder.conns().len();
        let client = self.tcp_connect_with(codec).await;
        (client, self.connected(before).await)
    }

    /// Connects a typed JSON client over TCP and waits until the server has
    /// run `on_connect` for it.
    pub async fn tcp_client(&self) -> (TestClient, ConnId) {
        self.tcp_client_with(CodecKind::Json).await
    }

    /// Connects a typed client over TCP speaking `codec` without waiting
    /// for `on_connect`.
    pub async fn tcp_connect_with(&self, codec: CodecKind) -> TestClient {
        let connecting = TestClient::builder(self.tcp_url()).codec(codec).connect();
        tokio::time::timeout(WAIT, connecting)
            .await
            .expect("connect timed out")
            .expect("connect failed")
    }

    /// Opens a raw TCP connection that has done the JSON handshake and
    /// waits until the server has run `on_connect` for it.
    pub async fn raw_tcp_client(&self) -> (RawTcp, ConnId) {
        let before = self.recorder.conns().len();
        let client = RawTcp::open(self.tcp_addr, "liweb.json").await;
        (client, self.connected(before).await)
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
        (client, self.connected(before).await)
    }

    /// Connects a typed client speaking `codec` and waits until the server
    /// has run `on_connect` for it.
    pub async fn client_with(&self, codec: CodecKind) -> (TestClient, ConnId) {
        let before = self.recorder.conns().len();
        let client = self.connect_with(codec).await;
        (client, self.connected(before).await)
    }

    /// Connects a typed client speaking `codec` without waiting for
    /// `on_connect`: for connections that authenticate first.
    pub async fn connect_with(&self, codec: CodecKind) -> TestClient {
        let connecting = TestClient::builder(self.url()).codec(codec).connect();
        tokio::time::timeout(WAIT, connecting)
            .await
            .expect("connect timed out")
            .expect("connect failed")
    }

    /// Connects a raw JSON client and waits until the server has run
    /// `on_connect` for it.
    pub async fn raw_client(&self) -> (RawClient, ConnId) {
        let before = self.recorder.conns().len();
        let (socket, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(self.url()))
            .await
            .expect("connect timed out")
            .expect("connect failed");
        (RawClient { socket }, self.connected(before).await)
    }

    /// Opens a raw JSON connection without waiting for `on_connect`: for
    /// connections that authenticate first, or that the server refuses.
    pub async fn raw_connect(&self) -> RawClient {
        connect(self.url()).await.expect("the upgrade was refused")
    }

    /// The id of the connection after the first `before`, once `on_connect`
    /// ran for it: take `before` as `recorder.conns().len()` before opening
    /// a connection by hand.
    pub async fn connected(&self, before: usize) -> ConnId {
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
        records
            .iter()
            .filter_map(|r| match r {
                Record::Connected(id) => Some(*id),
                _ => None,
            })
            .nth(before)
            .unwrap()
    }

    /// The connection `id`, as `on_connect` saw it (also after it closed).
    pub fn conn(&self, id: ConnId) -> Conn<TestOut> {
        self.recorder
            .conns()
            .into_iter()
            .find(|conn| conn.id() == id)
            .expect("on_connect saw this connection")
    }
}

/// Opens a raw JSON connection from `request` (a URL, or a request with
/// headers); an upgrade the server refuses gives its HTTP status.
pub async fn connect(
    request: impl IntoClientRequest + Unpin,
) -> Result<RawClient, http::StatusCode> {
    let connecting = tokio_tungstenite::connect_async(request);
    match tokio::time::timeout(WAIT, connecting)
        .await
        .expect("connect timed out")
    {
        Ok((socket, _)) => Ok(RawClient { socket }),
        Err(tungstenite::Error::Http(response)) => Err(response.status()),
        Err(other) => panic!("connect failed: {other}"),
    }
}

/// A WebSocket client that sends and reads raw JSON text frames: for the
/// reserved events (`state:*`, `presence:*`) the typed client does not decode,
/// and for checking the exact shape of what the server sends.
#[derive(Debug)]
pub struct RawClient {
    socket: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
}

impl RawClient {
    /// Opens a raw JSON connection to the server at `addr` (path `/ws`) from
    /// the local address `from` (any of `127.0.0.0/8` on Linux), so the
    /// server sees another remote address; `None` if the upgrade failed.
    pub async fn connect_from(addr: SocketAddr, from: std::net::IpAddr) -> Option<Self> {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket
            .bind(SocketAddr::new(from, 0))
            .expect("bind the local address");
        let opening = async {
            let stream = socket.connect(addr).await.ok()?;
            let url = format!("ws://{addr}/ws");
            let (socket, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
                .await
                .ok()?;
            Some(Self { socket })
        };
        tokio::time::timeout(WAIT, opening)
            .await
            .expect("connect timed out")
    }

    /// Sends `{"event": event, "payload": payload}`.
    pub async fn emit(&mut self, event: &str, payload: Value) {
        let frame = serde_json::json!({ "event": event, "payload": payload });
        tokio::time::timeout(WAIT, self.socket.send(Message::text(frame.to_string())))
            .await
            .expect("send timed out")
            .expect("send failed");
    }

    /// Sends a text frame as it is.
    pub async fn send_text(&mut self, text: &str) {
        tokio::time::timeout(WAIT, self.socket.send(Message::text(text)))
            .await
            .expect("send timed out")
            .expect("send failed");
    }

    /// Sends a request: `{"event": event, "payload": payload, "ack": ack}`.
    pub async fn request(&mut self, event: &str, payload: Value, ack: u64) {
        let frame = serde_json::json!({ "event": event, "payload": payload, "ack": ack });
        self.send_text(&frame.to_string()).await;
    }

    /// The next message of any kind, pings and pongs included; `None` once
    /// the connection has ended (or broke).
    pub async fn next_message(&mut self) -> Option<Message> {
        tokio::time::timeout(WAIT, self.socket.next())
            .await
            .expect("timed out waiting for the server")
            .and_then(Result::ok)
    }

    /// Waits for the server's close frame and returns its code and reason,
    /// failing if a text frame arrives first.
    pub async fn closed(&mut self) -> (u16, String) {
        loop {
            match self.next_message().await {
                Some(Message::Close(Some(frame))) => {
                    return (u16::from(frame.code), frame.reason.as_str().to_owned());
                }
                Some(Message::Ping(_) | Message::Pong(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    /// The next text frame, parsed; pings and pongs are skipped.
    pub async fn next(&mut self) -> Value {
        let frame = tokio::time::timeout(WAIT, async {
            loop {
                match self.socket.next().await {
                    Some(Ok(Message::Text(text))) => return text,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    other => panic!("expected a text frame, got {other:?}"),
                }
            }
        })
        .await
        .expect("timed out waiting for the server");
        serde_json::from_str(frame.as_str()).expect("the server sends JSON")
    }

    /// Sends an `echo` and waits for its answer, failing if anything else
    /// arrives first: proves nothing else was queued for this client before it.
    pub async fn fence(&mut self, text: &str) {
        self.emit("echo", Value::from(text)).await;
        assert_eq!(
            self.next().await,
            serde_json::json!({ "event": "echoed", "payload": text })
        );
    }

    /// Closes the connection and waits until the server's close arrives.
    pub async fn close(mut self) {
        tokio::time::timeout(WAIT, async {
            let _ = self.socket.close(None).await;
            while let Some(Ok(_)) = self.socket.next().await {}
        })
        .await
        .expect("close timed out");
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

/// Polls `state` every 10 ms until `done` holds for it, failing after
/// [`WAIT`] with what `state` last said.
pub async fn eventually<T: std::fmt::Debug>(
    what: &str,
    state: impl Fn() -> T,
    done: impl Fn(&T) -> bool,
) {
    let polling = async {
        while !done(&state()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    if tokio::time::timeout(WAIT, polling).await.is_err() {
        panic!("timed out waiting for {what}: {:?}", state());
    }
}

/// One frame of the TCP transport, as [`RawTcp`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpFrame {
    /// `HELLO` (kind 1) with its codec name.
    Hello(String),
    /// `MESSAGE` (kind 2) with its bytes.
    Message(Vec<u8>),
    /// `PING` (kind 3).
    Ping,
    /// `PONG` (kind 4).
    Pong,
    /// `CLOSE` (kind 5) with its code and reason.
    Close(u16, String),
    /// Any other kind, with its body.
    Other(u8, Vec<u8>),
}

/// A TCP client that reads and writes the transport's frames by hand: for
/// the handshake, heartbeat and close frames, and for broken input.
#[derive(Debug)]
pub struct RawTcp {
    stream: tokio::net::TcpStream,
}

impl RawTcp {
    /// Opens a TCP connection without any handshake.
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = tokio::time::timeout(WAIT, tokio::net::TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect failed");
        Self { stream }
    }

    /// Opens a TCP connection, sends `HELLO` with `codec` and checks that
    /// the server answers `HELLO` with the same name.
    pub async fn open(addr: SocketAddr, codec: &str) -> Self {
        let mut client = Self::connect(addr).await;
        client.send_frame(1, codec.as_bytes()).await;
        assert_eq!(
            client.next_frame().await,
            Some(TcpFrame::Hello(codec.to_owned()))
        );
        client
    }

    /// The client's own address: the server sees it as the remote address.
    pub fn local_addr(&self) -> SocketAddr {
        self.stream
            .local_addr()
            .expect("a connected socket has an address")
    }

    /// Writes bytes as they are.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        tokio::time::timeout(WAIT, self.stream.write_all(bytes))
            .await
            .expect("send timed out")
            .expect("send failed");
    }

    /// Writes one frame: the length, the kind, the body.
    pub async fn send_frame(&mut self, kind: u8, body: &[u8]) {
        let len = u32::try_from(body.len() + 1).unwrap();
        let mut frame = len.to_be_bytes().to_vec();
        frame.push(kind);
        frame.extend_from_slice(body);
        self.send_bytes(&frame).await;
    }

    /// Sends `{"event": event, "payload": payload}` as a `MESSAGE`.
    pub async fn emit(&mut self, event: &str, payload: Value) {
        let frame = serde_json::json!({ "event": event, "payload": payload });
        self.send_frame(2, frame.to_string().as_bytes()).await;
    }

    /// Sends a request: `{"event": event, "payload": payload, "ack": ack}`.
    pub async fn request(&mut self, event: &str, payload: Value, ack: u64) {
        let frame = serde_json::json!({ "event": event, "payload": payload, "ack": ack });
        self.send_frame(2, frame.to_string().as_bytes()).await;
    }

    /// Shuts the writing direction down: the server reads the end of the stream.
    pub async fn shutdown_write(&mut self) {
        use tokio::io::AsyncWriteExt;
        let _ = tokio::time::timeout(WAIT, self.stream.shutdown()).await;
    }

    /// The next frame; `None` at the end of the stream (or when it broke).
    pub async fn next_frame(&mut self) -> Option<TcpFrame> {
        use tokio::io::AsyncReadExt;
        tokio::time::timeout(WAIT, async {
            let mut len = [0; 4];
            self.stream.read_exact(&mut len).await.ok()?;
            let mut body = vec![0; u32::from_be_bytes(len) as usize];
            self.stream.read_exact(&mut body).await.ok()?;
            let (&kind, rest) = body.split_first()?;
            Some(match kind {
                1 => TcpFrame::Hello(String::from_utf8_lossy(rest).into_owned()),
                2 => TcpFrame::Message(rest.to_vec()),
                3 => TcpFrame::Ping,
                4 => TcpFrame::Pong,
                5 if rest.len() >= 2 => TcpFrame::Close(
                    u16::from_be_bytes([rest[0], rest[1]]),
                    String::from_utf8_lossy(&rest[2..]).into_owned(),
                ),
                other => TcpFrame::Other(other, rest.to_vec()),
            })
        })
        .await
        .expect("timed out waiting for the server")
    }

    /// The next `MESSAGE`, parsed as JSON; pings are skipped.
    pub async fn next(&mut self) -> Value {
        loop {
            match self.next_frame().await {
                Some(TcpFrame::Message(bytes)) => {
                    return serde_json::from_slice(&bytes).expect("the server sends JSON");
                }
                Some(TcpFrame::Ping) => continue,
                other => panic!("expected a message, got {other:?}"),
            }
        }
    }

    /// The server's `CLOSE` code and reason, pings skipped, failing if a
    /// message arrives first; then the end of the stream.
    pub async fn closed(&mut self) -> (u16, String) {
        loop {
            match self.next_frame().await {
                Some(TcpFrame::Close(code, reason)) => {
                    assert_eq!(self.next_frame().await, None, "nothing after CLOSE");
                    return (code, reason);
                }
                Some(TcpFrame::Ping) => continue,
                other => panic!("expected CLOSE, got {other:?}"),
            }
        }
    }

    /// Sends an `echo` and waits for its answer, failing if anything else
    /// arrives first.
    pub async fn fence(&mut self, text: &str) {
        self.emit("echo", Value::from(text)).await;
        assert_eq!(
            self.next().await,
            serde_json::json!({ "event": "echoed", "payload": text })
        );
    }
}
