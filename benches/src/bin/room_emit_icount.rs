//! Emits K messages to a room of N detached members, for instruction counts
//! that do not depend on how busy the machine is:
//!
//! ```text
//! cargo build --release -p liweb-benches --bin room_emit_icount
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null --toggle-collect='*emit_batch*' \
//!     target/release/room_emit_icount 1000 100
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null --toggle-collect='*emit_batch*' \
//!     target/release/room_emit_icount 1000 1100
//! ```
//!
//! `--toggle-collect='*emit_batch*'` counts only the emits
//! (`liweb_benches::room_emit::emit_batch`), not the setup (building the
//! server, joining the members) nor the draining of the members' queues
//! between batches of 16 emits (the writers' job), exactly as the criterion
//! benchmark times it. The difference of the two totals over 1,000 is the
//! cost of one emit to N members; one-time costs (a queue's first channel
//! block) cancel out. Per member: (per emit at N=1000 − per emit at N=10) / 990.
//!
//! Before and after, the run checks that the payload is serialized once per
//! emit and that every member gets exactly one frame per emit, with the
//! expected bytes.

use liweb_benches::room_emit::{EMIT_BATCH, EmitFixture, emit_batch, serializations};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(n), Some(k)) = (
        args.next().and_then(|n| n.parse::<usize>().ok()),
        args.next().and_then(|k| k.parse::<u64>().ok()),
    ) else {
        eprintln!("usage: room_emit_icount MEMBERS EMITS");
        std::process::exit(2);
    };
    let mut fixture = EmitFixture::new(n);
    fixture.check_one_emit(0);

    let before = serializations();
    let mut done = 0;
    while done < k {
        let batch = EMIT_BATCH.min(k - done);
        let reached = emit_batch(&fixture.room, done + 1, batch);
        assert_eq!(
            reached,
            batch as usize * n,
            "every emit reached every member"
        );
        assert_eq!(fixture.drain(), reached, "one frame per member per emit");
        done += batch;
    }
    assert_eq!(serializations() - before, k, "one serialization per emit");
    fixture.check_one_emit(k + 1);
    println!("room of {n}: {k} emits, {} frames", k * n as u64);
}
