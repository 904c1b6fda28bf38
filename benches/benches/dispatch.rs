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

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use liweb::{CodecKind, Conn};
use liweb_benches::{
    BenchOut, Counter, FRAME, FRAME_TEXT_LEN, UNKNOWN_FRAME, ValueRouter, liweb_server, runtime,
};

fn dispatch(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("dispatch");

    // liweb: the generated table.
    {
        let counter = Counter::default();
        let server = liweb_server(counter.clone());
        let (conn, mut rx) = Conn::<BenchOut>::detached(CodecKind::Json);

        rt.block_on(server.dispatch_text(&conn, FRAME));
        assert_eq!(
            counter.get(),
            FRAME_TEXT_LEN,
            "liweb: the handler did not run"
        );
        assert!(rx.try_recv().is_err(), "liweb: dispatch sent something");

        group.bench_function("liweb_generated_table", |b| {
            b.to_async(&rt)
                .iter(|| server.dispatch_text(black_box(&conn), black_box(FRAME)));
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

        rt.block_on(router.dispatch(FRAME));
        assert_eq!(
            counter.get(),
            FRAME_TEXT_LEN,
            "baseline: the handler did not run"
        );

        group.bench_function("serde_json_value_hashmap", |b| {
            b.to_async(&rt).iter(|| router.dispatch(black_box(FRAME)));
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

        rt.block_on(server.dispatch_text(&conn, UNKNOWN_FRAME));
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
                server.dispatch_text(black_box(&conn), black_box(UNKNOWN_FRAME))
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
