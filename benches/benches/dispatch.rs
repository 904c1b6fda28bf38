//! Decode + dispatch of one small JSON event.
//!
//! Three benchmarks in the group `dispatch`, all on one frame and one
//! current-thread tokio runtime (criterion's `to_async`: one `block_on` per
//! sample, not per iteration):
//!
//! - `liweb_generated_table`: [`liweb::Server::dispatch_text`] on a detached
//!   connection: the envelope is read with the payload left raw, the generated
//!   `match` turns the wire name into a table index, the payload is decoded
//!   straight into `Say`, and the handler runs.
//! - `serde_json_value_hashmap`: the string-keyed dispatch many socket.io-style
//!   servers do: the frame is parsed into a [`serde_json::Value`], `event` is
//!   looked up in a pre-built `HashMap<String, handler>` holding the same eight
//!   events, the payload is converted with [`serde_json::from_value`], and the
//!   same handler body is awaited.
//! - `liweb_unknown_event`: liweb's error path, a frame naming no event; the
//!   `error` event it queues is drained inside the loop.
//!
//! Before timing, each path is run once and checked: the handler must have
//! run (the shared counter advanced by the text's length) and nothing else
//! must have happened (no `error` event), so a broken path cannot be
//! measured as a fast one.
//!
//! Run with `cargo bench -p liweb-benches --bench dispatch`.

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

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use liweb::{CodecKind, Conn, Events, Server, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The frame both paths dispatch.
const FRAME: &[u8] = br#"{"event":"chat:message","payload":{"text":"hello world"}}"#;
/// What one dispatch of [`FRAME`] adds to the counter.
const FRAME_TEXT_LEN: u64 = "hello world".len() as u64;
/// A frame naming an event the server does not have.
const UNKNOWN_FRAME: &[u8] = br#"{"event":"chat:shout","payload":{"text":"hello world"}}"#;

/// The payload of `chat:message`.
#[derive(Debug, Serialize, Deserialize)]
struct Say {
    text: String,
    room: Option<String>,
}

/// The payload of the room events.
#[derive(Debug, Serialize, Deserialize)]
struct Room {
    room: String,
}

/// The payload of `chat:read`.
#[derive(Debug, Serialize, Deserialize)]
struct Read {
    room: String,
    up_to: u64,
}

/// Eight client events, so the name match is not a one-arm shortcut.
#[derive(Events)]
enum BenchIn {
    #[event(name = "chat:join")]
    Join(Room),
    #[event(name = "chat:leave")]
    Leave(Room),
    #[event(name = "chat:message")]
    Message(Say),
    #[event(name = "chat:typing")]
    Typing,
    #[event(name = "chat:stop_typing")]
    StopTyping,
    #[event(name = "chat:read")]
    Read(Read),
    #[event(name = "presence:ping")]
    Ping,
    #[event(name = "presence:away")]
    Away,
}

/// The server's events; none is sent on the measured path.
#[derive(Events)]
enum BenchOut {
    #[event(name = "chat:ack")]
    Ack,
}

/// What the handlers touch, so their work is observable.
#[derive(Debug, Clone, Default)]
struct Counter(Arc<AtomicU64>);

impl Counter {
    fn add(&self, n: usize) {
        self.0.fetch_add(black_box(n) as u64, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
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

fn liweb_server(counter: Counter) -> Server<BenchIn, BenchOut> {
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
        .build()
}

/// The future a string-keyed handler returns.
type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A string-keyed handler: takes the payload as a `Value`.
type ValueHandler = Box<dyn Fn(Value) -> BoxFuture + Send + Sync>;

/// The baseline: a `HashMap` from event name to handler, built once.
struct ValueRouter {
    handlers: HashMap<String, ValueHandler>,
}

impl ValueRouter {
    fn new(counter: &Counter) -> Self {
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
    async fn dispatch(&self, bytes: Bytes) {
        let Ok(mut frame) = serde_json::from_slice::<Value>(&bytes) else {
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

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime")
}

fn dispatch(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("dispatch");

    // liweb: the generated table.
    {
        let counter = Counter::default();
        let server = liweb_server(counter.clone());
        let (conn, mut rx) = Conn::<BenchOut>::detached(CodecKind::Json);

        rt.block_on(server.dispatch_text(&conn, Bytes::from_static(FRAME)));
        assert_eq!(
            counter.get(),
            FRAME_TEXT_LEN,
            "liweb: the handler did not run"
        );
        assert!(rx.try_recv().is_err(), "liweb: dispatch sent something");

        group.bench_function("liweb_generated_table", |b| {
            b.to_async(&rt).iter(|| {
                server.dispatch_text(black_box(&conn), black_box(Bytes::from_static(FRAME)))
            });
        });
        assert!(
            counter.get() > FRAME_TEXT_LEN,
            "liweb: the handler did not run"
        );
        assert!(rx.try_recv().is_err(), "liweb: dispatch sent something");
    }

    // Baseline: `serde_json::Value` and a `HashMap<String, handler>`.
    {
        let counter = Counter::default();
        let router = ValueRouter::new(&counter);

        rt.block_on(router.dispatch(Bytes::from_static(FRAME)));
        assert_eq!(
            counter.get(),
            FRAME_TEXT_LEN,
            "baseline: the handler did not run"
        );

        group.bench_function("serde_json_value_hashmap", |b| {
            b.to_async(&rt)
                .iter(|| router.dispatch(black_box(Bytes::from_static(FRAME))));
        });
        assert!(
            counter.get() > FRAME_TEXT_LEN,
            "baseline: the handler did not run"
        );
    }

    // liweb's error path: an unknown event is answered with an `error` event.
    {
        let counter = Counter::default();
        let server = liweb_server(counter.clone());
        let (conn, mut rx) = Conn::<BenchOut>::detached(CodecKind::Json);

        rt.block_on(server.dispatch_text(&conn, Bytes::from_static(UNKNOWN_FRAME)));
        let sent = rx
            .try_recv()
            .expect("liweb: no `error` event for an unknown event");
        assert!(
            format!("{sent:?}").contains("unknown_event"),
            "liweb: not an `unknown_event` error: {sent:?}"
        );
        assert!(rx.try_recv().is_err(), "liweb: more than one `error` event");

        group.bench_function("liweb_unknown_event", |b| {
            b.to_async(&rt).iter(|| {
                // The writer's job, for the previous iteration's `error`
                // event: keeps the queue from growing.
                while rx.try_recv().is_ok() {}
                server.dispatch_text(
                    black_box(&conn),
                    black_box(Bytes::from_static(UNKNOWN_FRAME)),
                )
            });
        });
        assert_eq!(
            counter.get(),
            0,
            "liweb: a handler ran for an unknown event"
        );
    }

    group.finish();
}

criterion_group!(benches, dispatch);
criterion_main!(benches);
