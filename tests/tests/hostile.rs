//! The hostile-traffic tests (section K) share one harness: bystanders who
//! keep chatting through every attack (`liweb_tests::bystanders`). This file
//! checks the harness itself; each attack has its own `hostile_*.rs`.

use std::time::Duration;

use liweb_tests::{Running, bystanders::Bystanders};

/// On a quiet server the bystanders hear each other, in order, every time.
#[tokio::test]
async fn bystanders_hear_every_message_on_a_quiet_server() {
    let running = Running::start().await;
    let bystanders = Bystanders::start(&running).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = bystanders.finish().await;
    assert!(report.sent.iter().all(|&sent| sent >= 5), "{report:?}");
    let total: u64 = report.sent.iter().sum();
    assert_eq!(report.received, vec![total, total], "{report:?}");
    assert!(report.p99 > Duration::ZERO, "{report:?}");
}
