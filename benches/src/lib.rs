//! Support for liweb's benchmarks: the dispatch fixture shared by the
//! criterion benchmark (`benches/dispatch.rs`) and the instruction-count
//! runner (`src/bin/dispatch_icount.rs`), and the room-emit fixture
//! ([`room_emit`]) shared by `benches/room_emit.rs` and
//! `src/bin/room_emit_icount.rs`.
//!
//! The fixture: an eight-event `BenchIn` enum with a handler for each event,
//! served two ways. [`liweb_server`] is liweb's generated table;
//! [`ValueRouter`] is the string-keyed dispatch many socket.io-style servers
//! do: the frame parsed into a [`serde_json::Value`], the event looked up in a
//! `HashMap<String, handler>`, the payload converted with
//! [`serde_json::from_value`], and the same handler body awaited.
//!
//! The load generator and its servers share [`raise_open_file_limit`].

use std::{
    collections::HashMap,
    future::Future,
    hint::black_box,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use liweb::{Events, Server, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub mod room_emit;

/// The frame both paths dispatch.
pub const FRAME: &str = r#"{"event":"chat:message","payload":{"text":"hello world"}}"#;
/// What one dispatch of [`FRAME`] adds to the counter.
pub const FRAME_TEXT_LEN: u64 = "hello world".len() as u64;
/// A frame naming an event the server does not have.
pub const UNKNOWN_FRAME: &str = r#"{"event":"chat:shout","payload":{"text":"hello world"}}"#;

/// The payload of `chat:message`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Say {
    /// The text.
    pub text: String,
    /// The room, if not the default.
    pub room: Option<String>,
}

/// The payload of the room events.
#[derive(Debug, Serialize, Deserialize)]
pub struct Room {
    /// The room.
    pub room: String,
}

/// The payload of `chat:read`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Read {
    /// The room.
    pub room: String,
    /// The last message read.
    pub up_to: u64,
}

/// Eight client events, so the name match is not a one-arm shortcut.
#[derive(Debug, Events)]
pub enum BenchIn {
    #[event(name = "chat:join")]
    /// `Join`.
    Join(Room),
    #[event(name = "chat:leave")]
    /// `Leave`.
    Leave(Room),
    #[event(name = "chat:message")]
    /// `Message`.
    Message(Say),
    #[event(name = "chat:typing")]
    /// `Typing`.
    Typing,
    #[event(name = "chat:stop_typing")]
    /// `StopTyping`.
    StopTyping,
    #[event(name = "chat:read")]
    /// `Read`.
    Read(Read),
    #[event(name = "presence:ping")]
    /// `Ping`.
    Ping,
    #[event(name = "presence:away")]
    /// `Away`.
    Away,
}

/// The server's events; none is sent on the measured path.
#[derive(Debug, Events)]
pub enum BenchOut {
    #[event(name = "chat:ack")]
    /// `Ack`.
    Ack,
}

/// What the handlers touch, so their work is observable.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: usize) {
        self.0.fetch_add(black_box(n) as u64, Ordering::Relaxed);
    }

    /// The total so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

// The handlers, the same bodies for both paths: the baseline calls
// `on_message::handle` itself.

#[liweb::handler(BenchIn::Message)]
async fn on_message(say: Say, State(counter): State<Counter>) {
    counter.add(say.text.len());
    black_box(say);
}

#[liweb::handler(BenchIn::Join)]
async fn on_join(room: Room, State(counter): State<Counter>) {
    counter.add(room.room.len());
}

#[liweb::handler(BenchIn::Leave)]
async fn on_leave(room: Room, State(counter): State<Counter>) {
    counter.add(room.room.len());
}

#[liweb::handler(BenchIn::Typing)]
async fn on_typing(State(counter): State<Counter>) {
    counter.add(1);
}

#[liweb::handler(BenchIn::StopTyping)]
async fn on_stop_typing(State(counter): State<Counter>) {
    counter.add(1);
}

#[liweb::handler(BenchIn::Read)]
async fn on_read(read: Read, State(counter): State<Counter>) {
    counter.add(read.room.len() + read.up_to as usize);
}

#[liweb::handler(BenchIn::Ping)]
async fn on_ping(State(counter): State<Counter>) {
    counter.add(1);
}

#[liweb::handler(BenchIn::Away)]
async fn on_away(State(counter): State<Counter>) {
    counter.add(1);
}

/// liweb's server for [`BenchIn`], with a handler in every slot.
pub fn liweb_server(counter: Counter) -> Server<BenchIn, BenchOut> {
    Server::<BenchIn, BenchOut>::builder()
        .state(counter)
        .handler(on_join)
        .handler(on_leave)
        .handler(on_message)
        .handler(on_typing)
        .handler(on_stop_typing)
        .handler(on_read)
        .handler(on_ping)
        .handler(on_away)
        // Benchmarks send far faster than a public server's default allows.
        .max_events_per_second(None)
        .build()
}

/// The future a string-keyed handler returns.
type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A string-keyed handler: takes the payload as a `Value`.
type ValueHandler = Box<dyn Fn(Value) -> BoxFuture + Send + Sync>;

/// The baseline: a `HashMap` from event name to handler, built once.
pub struct ValueRouter {
    handlers: HashMap<String, ValueHandler>,
}

impl std::fmt::Debug for ValueRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValueRouter")
            .field("events", &self.handlers.len())
            .finish()
    }
}

impl ValueRouter {
    /// Registers the same eight handlers by name.
    pub fn new(counter: &Counter) -> Self {
        let mut handlers: HashMap<String, ValueHandler> = HashMap::new();
        // A handler with a payload: `Value` → `T`, then the handler body.
        fn with_payload<T, Fut>(
            counter: &Counter,
            body: fn(T, State<Counter>) -> Fut,
        ) -> ValueHandler
        where
            T: serde::de::DeserializeOwned + 'static,
            Fut: Future<Output = ()> + Send + 'static,
        {
            let counter = counter.clone();
            Box::new(move |payload| match serde_json::from_value::<T>(payload) {
                Ok(payload) => Box::pin(body(payload, State(counter.clone()))),
                Err(_) => Box::pin(std::future::ready(())),
            })
        }
        // A handler without a payload.
        fn unit<Fut>(counter: &Counter, body: fn(State<Counter>) -> Fut) -> ValueHandler
        where
            Fut: Future<Output = ()> + Send + 'static,
        {
            let counter = counter.clone();
            Box::new(move |_payload| Box::pin(body(State(counter.clone()))))
        }
        handlers.insert("chat:join".into(), with_payload(counter, on_join::handle));
        handlers.insert("chat:leave".into(), with_payload(counter, on_leave::handle));
        handlers.insert(
            "chat:message".into(),
            with_payload(counter, on_message::handle),
        );
        handlers.insert("chat:typing".into(), unit(counter, on_typing::handle));
        handlers.insert(
            "chat:stop_typing".into(),
            unit(counter, on_stop_typing::handle),
        );
        handlers.insert("chat:read".into(), with_payload(counter, on_read::handle));
        handlers.insert("presence:ping".into(), unit(counter, on_ping::handle));
        handlers.insert("presence:away".into(), unit(counter, on_away::handle));
        Self { handlers }
    }

    /// Parses the frame into a `Value`, looks its event up and runs the handler.
    pub async fn dispatch(&self, text: &str) {
        let Ok(mut frame) = serde_json::from_str::<Value>(text) else {
            return;
        };
        // Take the payload out rather than clone it.
        let payload = frame
            .get_mut("payload")
            .map(Value::take)
            .unwrap_or_default();
        let Some(event) = frame.get("event").and_then(Value::as_str) else {
            return;
        };
        let Some(handler) = self.handlers.get(event) else {
            return;
        };
        handler(payload).await;
    }
}

/// The runtime both paths run on.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime")
}

/// Raises this process's soft open-file limit to its hard limit and returns
/// the soft limit in force afterwards (`None` if it cannot be read).
///
/// Every connection is a file descriptor on both ends, and the usual soft
/// limit of 1,024 is far below the 10,000 idle connections the load
/// generator opens; the hard limit is what an unprivileged process may
/// raise itself to. Children inherit the raised limit. A failure to raise
/// it is reported on stderr and otherwise ignored: the sizes that fit still
/// run, and the load generator checks its sizes against the result.
pub fn raise_open_file_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(soft) => Some(soft),
        Err(err) => {
            eprintln!("cannot raise the open-file limit: {err}");
            rlimit::Resource::NOFILE.get().ok().map(|(soft, _)| soft)
        }
    }
}
