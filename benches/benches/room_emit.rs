//! A room emit: serialize once, fan out to every member.
//!
//! One group, `room_emit`, with one benchmark per room size:
//! `room_emit/emit/10`, `room_emit/emit/100` and `room_emit/emit/1000`. Each
//! times [`liweb::Room::emit`] of a small struct payload
//! (`chat:message {"from","seq","text"}`) to a room of that many detached
//! members (no transport; each member's outbound queue is an unbounded
//! receiver the benchmark holds). The throughput is set to the room's size,
//! so criterion also reports members per second.
//!
//! What is timed: the emit alone. The member queues are drained between
//! batches of [`EMIT_BATCH`] emits with the clock stopped (`iter_custom`): a
//! real connection's writer empties its queue on its own task, so draining
//! is not the emitter's cost, and without it memory would grow with the
//! iteration count. So at most `EMIT_BATCH × n` frames are outstanding; the
//! last reference to each encoded frame is dropped while draining, so the
//! frame's buffer is freed outside the timed section (as the writer would).
//! Two clock reads per batch of 16 emits are the only timing overhead.
//!
//! Checked outside the timed loop, for every size: one emit serializes the
//! payload exactly once (its `Serialize` counts calls), reaches every member,
//! and each member queued exactly one frame, with the expected bytes; after
//! the timed loop, the serialization count still equals the number of emits.
//!
//! Run with `cargo bench -p liweb-benches --bench room_emit`.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use liweb_benches::room_emit::{EMIT_BATCH, EmitFixture, emit_batch, serializations};

/// The room sizes measured.
const SIZES: [usize; 3] = [10, 100, 1_000];

fn room_emit(c: &mut Criterion) {
    let mut group = c.benchmark_group("room_emit");
    for n in SIZES {
        let mut fixture = EmitFixture::new(n);
        fixture.check_one_emit(0);

        let mut emits: u64 = 0;
        let before = serializations();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("emit", n), &n, |b, &n| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    let batch = EMIT_BATCH.min(iters - done);
                    let start = Instant::now();
                    let reached = emit_batch(&fixture.room, emits + 1, batch);
                    timed += start.elapsed();
                    let drained = fixture.drain();
                    assert_eq!(
                        reached,
                        batch as usize * n,
                        "every emit reached every member"
                    );
                    assert_eq!(drained, reached, "every member queued one frame per emit");
                    done += batch;
                    emits += batch;
                }
                timed
            });
        });
        assert_eq!(
            serializations() - before,
            emits,
            "room of {n}: one serialization per emit"
        );
        fixture.check_one_emit(emits + 1);
    }
    group.finish();
}

criterion_group!(benches, room_emit);
criterion_main!(benches);
