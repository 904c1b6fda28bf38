//! Dispatches the benchmark frame N times through one path, for instruction
//! counts that do not depend on how busy the machine is:
//!
//! ```text
//! cargo build --release -p liweb-benches --bin dispatch_icount
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/dispatch_icount liweb 1000
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/dispatch_icount liweb 11000
//! ```
//!
//! The difference of the two totals over 10,000 is the cost of one dispatch;
//! the path is `liweb` (the generated table) or `value` (`serde_json::Value`
//! and a `HashMap<String, handler>`).

use liweb::{CodecKind, Conn};
use liweb_benches::{BenchOut, Counter, FRAME, FRAME_TEXT_LEN, ValueRouter, liweb_server, runtime};

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_default();
    let n: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let rt = runtime();
    let counter = Counter::default();
    match path.as_str() {
        "liweb" => {
            let server = liweb_server(counter.clone());
            let (conn, _rx) = Conn::<BenchOut>::detached(CodecKind::Json);
            rt.block_on(async {
                for _ in 0..n {
                    server.dispatch_text(&conn, FRAME).await;
                }
            });
        }
        "value" => {
            let router = ValueRouter::new(&counter);
            rt.block_on(async {
                for _ in 0..n {
                    router.dispatch(FRAME).await;
                }
            });
        }
        other => {
            eprintln!("usage: dispatch_icount liweb|value N (got {other:?})");
            std::process::exit(2);
        }
    }
    assert_eq!(
        counter.get(),
        n * FRAME_TEXT_LEN,
        "every dispatch ran the handler"
    );
    println!("{path}: {n} dispatches");
}
