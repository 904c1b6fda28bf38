//! Hostile clients against a running chat example, measured the same way
//! before and after a change: what the server's memory did (VmRSS of
//! `--pid`), and the echo latency of two bystanders who keep chatting in
//! `general` meanwhile.
//!
//! ```text
//! cargo build --release -p chat -p liweb-benches --bin attack
//! LIWEB_ADDR=127.0.0.1:3999 target/release/chat & PID=$!
//! target/release/attack --addr 127.0.0.1:3999 --pid $PID flood
//! target/release/attack --addr 127.0.0.1:3999 --pid $PID churn
//! target/release/attack --addr 127.0.0.1:3999 --pid $PID join
//! LIWEB_SECRET=s LIWEB_ADDR=127.0.0.1:3999 target/release/chat & PID=$!
//! target/release/attack --addr 127.0.0.1:3999 --pid $PID auth
//! ```
//!
//! - `flood`: two clients send `chat:message` as fast as they can for 10 s;
//!   prints how many the others received and the bystanders' p50/p99.
//! - `churn`: opens 3,000 connections, then closes them all; prints the peak
//!   and final RSS growth.
//! - `join`: puts 50 messages in `general`'s history, then sends 100 `join
//!   general` at once; prints the bytes that came back.
//! - `auth`: connects and sends a wrong secret, again and again for 5 s;
//!   prints how many attempts per second were checked (`invalid secret`)
//!   and how many were refused unchecked.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Args {
    addr: SocketAddr,
    pid: Option<u32>,
    scenario: String,
}

fn args() -> Args {
    let mut addr = None;
    let mut pid = None;
    let mut scenario = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => addr = args.next().and_then(|a| a.parse().ok()),
            "--pid" => pid = args.next().and_then(|p| p.parse().ok()),
            other => scenario = Some(other.to_owned()),
        }
    }
    Args {
        addr: addr.expect("--addr HOST:PORT"),
        pid,
        scenario: scenario.expect("a scenario: flood, churn, join or auth"),
    }
}

/// The server's resident memory in KiB, from `/proc`.
fn rss_kib(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Samples RSS every 20 ms until dropped; keeps the peak.
struct RssWatch {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl RssWatch {
    fn start(pid: Option<u32>) -> Self {
        let peak = Arc::new(AtomicU64::new(rss_kib(pid).unwrap_or(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let (watch_peak, watch_stop) = (peak.clone(), stop.clone());
        tokio::spawn(async move {
            while !watch_stop.load(Ordering::Relaxed) {
                if let Some(now) = rss_kib(pid) {
                    watch_peak.fetch_max(now, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Self { peak, stop }
    }

    fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for RssWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn open(addr: SocketAddr) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .expect("connect");
    ws
}

async fn send(ws: &mut Ws, event: &str, payload: Value) -> bool {
    let frame = json!({ "event": event, "payload": payload }).to_string();
    ws.send(Message::text(frame)).await.is_ok()
}

/// The next event as `(name, payload)`; `None` when the socket ended.
async fn next_event(ws: &mut Ws) -> Option<(String, Value)> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(text)) => {
                let value: Value = serde_json::from_str(text.as_str()).ok()?;
                let event = value["event"].as_str()?.to_owned();
                return Some((event, value["payload"].clone()));
            }
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// Two clients that each say something in `general` every 50 ms and time
/// their own echo.
struct Bystanders {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Duration>>>,
}

impl Bystanders {
    async fn start(addr: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for me in 0..2 {
            let mut ws = open(addr).await;
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let mut echoes = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let text = format!("bystander {me} {n}");
                    n += 1;
                    let sent = Instant::now();
                    if !send(&mut ws, "chat:message", json!({ "text": text })).await {
                        break;
                    }
                    let waiting = async {
                        while let Some((event, payload)) = next_event(&mut ws).await {
                            if event == "chat:message" && payload["text"] == json!(text) {
                                return true;
                            }
                        }
                        false
                    };
                    match tokio::time::timeout(Duration::from_secs(10), waiting).await {
                        Ok(true) => echoes.push(sent.elapsed()),
                        _ => break,
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                echoes
            }));
        }
        Self { stop, tasks }
    }

    async fn finish(self) -> String {
        self.stop.store(true, Ordering::Relaxed);
        let mut echoes = Vec::new();
        for task in self.tasks {
            echoes.extend(task.await.unwrap_or_default());
        }
        echoes.sort();
        if echoes.is_empty() {
            return "bystanders: no echo at all".to_owned();
        }
        let at = |q: usize| echoes[(echoes.len() * q / 100).min(echoes.len() - 1)];
        format!(
            "bystanders: {} echoes, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            echoes.len(),
            at(50).as_secs_f64() * 1e3,
            at(99).as_secs_f64() * 1e3,
            echoes[echoes.len() - 1].as_secs_f64() * 1e3
        )
    }
}

async fn flood(args: &Args) {
    let bystanders = Bystanders::start(args.addr).await;
    let rss = RssWatch::start(args.pid);
    let before = rss_kib(args.pid).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut floods = Vec::new();
    for _ in 0..2 {
        let ws = open(args.addr).await;
        floods.push(tokio::spawn(async move {
            let (mut sink, mut stream) = ws.split();
            let reader = tokio::spawn(async move {
                let mut limited = 0u64;
                while let Some(Ok(message)) = stream.next().await {
                    if let Message::Text(text) = message
                        && text.as_str().contains("rate_limited")
                    {
                        limited += 1;
                    }
                }
                limited
            });
            let frame = json!({ "event": "chat:message", "payload": { "text": "flood" } });
            let frame = frame.to_string();
            let mut sent = 0u64;
            while Instant::now() < deadline {
                if sink.send(Message::text(frame.clone())).await.is_err() {
                    break;
                }
                sent += 1;
            }
            let _ = sink.close().await;
            let limited = match tokio::time::timeout(Duration::from_secs(5), reader).await {
                Ok(Ok(limited)) => limited,
                _ => 0,
            };
            (sent, limited)
        }));
    }
    let mut total = (0, 0);
    for flood in floods {
        let (sent, limited) = flood.await.unwrap_or((0, 0));
        total = (total.0 + sent, total.1 + limited);
    }
    println!(
        "flood: 2 flooders sent {} messages in 10 s ({:.0}/s), {} answered rate_limited; RSS peak +{} KiB",
        total.0,
        total.0 as f64 / 10.0,
        total.1,
        rss.peak().saturating_sub(before)
    );
    println!("{}", bystanders.finish().await);
}

async fn churn(args: &Args) {
    const CONNECTIONS: usize = 3_000;
    let before = rss_kib(args.pid).unwrap_or(0);
    let rss = RssWatch::start(args.pid);
    let mut open_sockets = Vec::with_capacity(CONNECTIONS);
    let mut refused = 0;
    for _ in 0..CONNECTIONS {
        match tokio_tungstenite::connect_async(format!("ws://{}/ws", args.addr)).await {
            Ok((ws, _)) => open_sockets.push(ws),
            Err(_) => refused += 1,
        }
    }
    let opened = open_sockets.len();
    for mut ws in open_sockets {
        let _ = ws.close(None).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_kib(args.pid).unwrap_or(0);
    println!(
        "churn: {opened} opened ({refused} refused) then closed; RSS peak +{} KiB, 3 s after +{} KiB",
        rss.peak().saturating_sub(before),
        after.saturating_sub(before) as i64
    );
}

async fn join(args: &Args) {
    let mut ws = open(args.addr).await;
    for n in 0..50 {
        send(
            &mut ws,
            "chat:message",
            json!({ "text": format!("history {n} {}", "x".repeat(700)) }),
        )
        .await;
    }
    send(&mut ws, "chat:message", json!({ "text": "last" })).await;
    while let Some((event, payload)) = next_event(&mut ws).await {
        if event == "chat:message" && payload["text"] == json!("last") {
            break;
        }
    }
    let sent_bytes = json!({ "event": "join", "payload": { "room": "general" } })
        .to_string()
        .len()
        * 100;
    for _ in 0..100 {
        send(&mut ws, "join", json!({ "room": "general" })).await;
    }
    let mut received = 0usize;
    let (mut joined, mut refused) = (0, 0);
    let quiet = Duration::from_secs(2);
    while let Ok(Some(Ok(message))) = tokio::time::timeout(quiet, ws.next()).await {
        if let Message::Text(text) = message {
            received += text.len();
            if text.as_str().starts_with(r#"{"event":"joined""#) {
                joined += 1;
            } else if text.as_str().contains("\"error\"") {
                refused += 1;
            }
        }
    }
    println!(
        "join: 100 joins ({sent_bytes} bytes) got {received} bytes back ({:.0}x): {joined} joined, {refused} refused",
        received as f64 / sent_bytes as f64
    );
}

async fn auth(args: &Args) {
    let started = Instant::now();
    let (mut checked, mut throttled, mut other) = (0u64, 0u64, 0u64);
    while started.elapsed() < Duration::from_secs(5) {
        let mut ws = open(args.addr).await;
        send(&mut ws, "__auth", json!({ "secret": "wrong" })).await;
        match next_event(&mut ws).await {
            Some((_, payload)) if payload["reason"] == json!("invalid secret") => checked += 1,
            Some((_, payload)) if payload["reason"] == json!("too many failed attempts") => {
                throttled += 1;
            }
            _ => other += 1,
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "auth: {:.0} attempts/s checked, {:.0}/s refused unchecked, {other} other answers, in {secs:.1} s",
        checked as f64 / secs,
        throttled as f64 / secs
    );
}

#[tokio::main]
async fn main() {
    let args = args();
    match args.scenario.as_str() {
        "flood" => flood(&args).await,
        "churn" => churn(&args).await,
        "join" => join(&args).await,
        "auth" => auth(&args).await,
        other => panic!("no scenario `{other}`: flood, churn, join or auth"),
    }
}
