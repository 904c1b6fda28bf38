//! K3: the process runs out of file descriptors while clients hold
//! sockets. `liweb::serve` waits instead of spinning on the failing
//! `accept`, and accepts again as soon as the holders let go; the
//! bystanders keep chatting throughout.
//!
//! The open-file limit belongs to the whole process, so this test has a
//! binary of its own: no other test can be starved of descriptors by it.
#![cfg(target_os = "linux")]

use std::{
    fs::File,
    time::{Duration, Instant},
};

use liweb::{ServeHandle, ServeStats};
use liweb_tests::{Recorder, Running, WAIT, bystanders::Bystanders};
use rlimit::Resource;
use tokio::net::TcpStream;

/// Sockets that connect and send nothing, holding a descriptor each on
/// the server (and one each here, on the client side).
const HOLDERS: usize = 20;

/// The descriptors this process has open.
fn open_descriptors() -> u64 {
    // The directory being read is one of them.
    std::fs::read_dir("/proc/self/fd").unwrap().count() as u64 - 1
}

/// Waits until `stats` holds, or fails after [`WAIT`] with the last value.
async fn until(serving: &ServeHandle, what: &str, holds: impl Fn(&ServeStats) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = serving.stats();
        if holds(&stats) {
            return;
        }
        assert!(Instant::now() < deadline, "never {what}: {stats:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// K3: out of descriptors, the accept loop retries a few times a second
/// (not thousands), and a client that waited in the listen queue is
/// accepted within moments of the holders closing their sockets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k3_out_of_descriptors_accept_backs_off_and_recovers_when_holders_let_go() {
    let running = Running::start_serving(
        Recorder::default(),
        |builder| builder,
        // The holders must not be closed by the timeout during the test.
        |serve| serve.header_read_timeout(Duration::from_secs(60)),
    )
    .await;
    let bystanders = Bystanders::start(&running).await;
    let mut holders = Vec::new();
    for _ in 0..HOLDERS {
        holders.push(TcpStream::connect(running.addr).await.unwrap());
    }
    until(&running.serving, "accepted the holders", |stats| {
        stats.open == HOLDERS + 2
    })
    .await;

    // Leave a few descriptors, take them with files, and give one to a
    // client: its connection waits in the listen queue, since the server
    // has no descriptor left to accept it with.
    let (soft, hard) = rlimit::getrlimit(Resource::NOFILE).unwrap();
    rlimit::setrlimit(Resource::NOFILE, open_descriptors() + 8, hard).unwrap();
    let mut fillers = Vec::new();
    loop {
        match File::open("/dev/null") {
            Ok(file) => fillers.push(file),
            Err(err) if err.raw_os_error() == Some(24) => break, // EMFILE
            Err(err) => panic!("unexpected error while filling descriptors: {err}"),
        }
    }
    assert!(!fillers.is_empty(), "no descriptor was left to fill");
    fillers.pop();
    let waiting = TcpStream::connect(running.addr).await.unwrap();
    until(&running.serving, "failed to accept", |stats| {
        stats.accept_errors > 0
    })
    .await;
    let accepted = running.serving.stats().accepted;

    // Out of descriptors for a second: a few retries, not a spin.
    let before = running.serving.stats().accept_errors;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stats = running.serving.stats();
    let retries = stats.accept_errors - before;
    assert!(
        (2..=20).contains(&retries),
        "{retries} accept attempts in one second out of descriptors: {stats:?}"
    );
    assert_eq!(stats.accepted, accepted, "accepted with no descriptor free");
    assert!(
        TcpStream::connect(running.addr)
            .await
            .is_err_and(|err| err.raw_os_error() == Some(24)),
        "the process was not out of descriptors"
    );

    // The holders let go: the waiting client is accepted at once.
    let released = Instant::now();
    drop(holders);
    until(&running.serving, "accepted the waiting client", |stats| {
        stats.accepted > accepted
    })
    .await;
    let recovered = released.elapsed();
    assert!(
        recovered < Duration::from_millis(500),
        "accepting again took {recovered:?} after the holders closed"
    );
    // And a new client gets in, with the files still held.
    let _client = running.client().await;
    println!("accept retries in 1 s: {retries}; accepting again {recovered:?} after release");

    drop(waiting);
    drop(fillers);
    rlimit::setrlimit(Resource::NOFILE, soft, hard).unwrap();
    let report = bystanders.finish().await;
    let total: u64 = report.sent.iter().sum();
    assert!(total >= 40, "{report:?}");
    assert_eq!(report.received, vec![total, total], "{report:?}");
}
