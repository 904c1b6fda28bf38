//! Cross-node delivery over the Redis adapter, against the same load on one
//! node.
//!
//! ```text
//! cargo build --release -p liweb-benches --bin cluster-bench
//! LIWEB_REDIS_URL=redis://127.0.0.1:6379 target/release/cluster-bench \
//!     --clients 100 --messages 2000 --rate 1000
//! ```
//!
//! Two set-ups, each run with the same clients and emits:
//! - **single**: one node, no adapter; the emitter and the clients are on it;
//! - **cluster**: nodes A and B, each with its own Redis connections; the
//!   emitter calls `Room::emit` on A, the clients are members on B, so every
//!   message crosses Redis (published once, delivered by B to every client).
//!
//! Clients are real WebSocket connections on loopback; all run in this one
//! process, so servers and clients share the machine's cores in both
//! set-ups. Latency is receive time minus the emit's timestamp (both
//! `SystemTime` microseconds); p50 and p99 are over every delivery.
//! Delivered msgs/s counts deliveries from the first emit to the last
//! receipt. Options: `--clients N` (default 100), `--messages M` (default
//! 2000), `--rate R` emits per second (default 1000; 0 for as fast as
//! possible), `--runs K` (default 3; medians are reported), `--smoke`.

use std::{
    net::SocketAddr,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::serve::ListenerExt;
use futures_util::{SinkExt, StreamExt};
use liweb::{
    cluster::{RedisAdapter, RedisConfig},
    prelude::*,
};
use serde::{Deserialize, Serialize};
use tokio::{net::TcpStream, task::JoinSet, time::timeout};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

type Error = Box<dyn std::error::Error + Send + Sync>;
type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const CHANNEL: &str = "bench";
const ROOM: &str = "cluster";
/// The longest any one step (connect, join, the last delivery) may take.
const STEP: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tick {
    ts: u64,
    seq: u64,
}

#[derive(Debug, Events)]
enum BenchIn {
    Join,
}

#[derive(Debug, Events)]
enum BenchOut {
    Joined,
    Tick(Tick),
}

type BenchServer = Server<BenchIn, BenchOut>;

#[liweb::handler(BenchIn::Join)]
async fn on_join(conn: Conn<BenchOut>, server: BenchServer) {
    let _ = server.channel(CHANNEL).room(ROOM).join(&conn).await;
    let _ = conn.emit(BenchOut::Joined);
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

async fn start(adapter: Option<RedisAdapter>) -> Result<(BenchServer, SocketAddr), Error> {
    let mut builder = BenchServer::builder()
        .handler(on_join)
        .max_queue_bytes(64 * 1024 * 1024)
        .max_events_per_second(None)
        .max_connections(None);
    if let Some(adapter) = adapter {
        builder = builder.adapter(adapter);
    }
    let server = builder.build();
    let app = axum::Router::new().route("/ws", server.ws_route());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    // Small frames must not wait for delayed ACKs (as in the load generator).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    Ok((server, addr))
}

async fn client(addr: SocketAddr) -> Result<Ws, Error> {
    let (mut ws, _) = timeout(
        STEP,
        tokio_tungstenite::connect_async_with_config(format!("ws://{addr}/ws"), None, true),
    )
    .await??;
    ws.send(Message::text(r#"{"event":"join"}"#)).await?;
    loop {
        match timeout(STEP, ws.next()).await? {
            Some(Ok(Message::Text(text))) if text.as_str().contains("\"joined\"") => return Ok(ws),
            Some(Ok(_)) => {}
            other => return Err(format!("no `joined`: {other:?}").into()),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Frame {
    payload: Tick,
}

/// Reads `messages` ticks; returns each one's latency in microseconds and
/// when the last arrived.
async fn receive(mut ws: Ws, messages: usize) -> Result<(Vec<u64>, Instant), Error> {
    let mut latencies = Vec::with_capacity(messages);
    while latencies.len() < messages {
        match timeout(STEP, ws.next()).await? {
            Some(Ok(Message::Text(text))) => {
                let frame: Frame = serde_json::from_str(text.as_str())?;
                latencies.push(now_us().saturating_sub(frame.payload.ts));
            }
            Some(Ok(_)) => {}
            other => return Err(format!("stream ended: {other:?}").into()),
        }
    }
    Ok((latencies, Instant::now()))
}

#[derive(Debug, Clone, Copy)]
struct Outcome {
    p50_us: u64,
    p99_us: u64,
    per_second: f64,
}

async fn run(
    emitter: &BenchServer,
    clients_at: SocketAddr,
    clients: usize,
    messages: usize,
    rate: u64,
) -> Result<Outcome, Error> {
    let mut sockets = Vec::with_capacity(clients);
    for _ in 0..clients {
        sockets.push(client(clients_at).await?);
    }
    let mut receivers = JoinSet::new();
    for ws in sockets {
        receivers.spawn(receive(ws, messages));
    }
    let room = emitter.channel(CHANNEL).room(ROOM);
    let started = Instant::now();
    let gap = (rate > 0).then(|| Duration::from_secs_f64(1.0 / rate as f64));
    for seq in 0..messages as u64 {
        if let Some(gap) = gap {
            let due = started + gap * u32::try_from(seq).unwrap_or(u32::MAX);
            tokio::time::sleep_until(due.into()).await;
        } else if seq % 64 == 0 {
            tokio::task::yield_now().await;
        }
        room.emit(BenchOut::Tick(Tick { ts: now_us(), seq }))?;
    }
    let mut latencies = Vec::with_capacity(clients * messages);
    let mut last = started;
    while let Some(joined) = receivers.join_next().await {
        let (mut some, at) = joined??;
        latencies.append(&mut some);
        last = last.max(at);
    }
    latencies.sort_unstable();
    let pick = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    Ok(Outcome {
        p50_us: pick(0.50),
        p99_us: pick(0.99),
        per_second: latencies.len() as f64 / (last - started).as_secs_f64(),
    })
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut clients = 100;
    let mut messages = 2000;
    let mut rate = 1000;
    let mut runs = 3;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || -> Result<u64, Error> {
            Ok(args.next().ok_or(format!("{arg} needs a value"))?.parse()?)
        };
        match arg.as_str() {
            "--clients" => clients = usize::try_from(value()?)?,
            "--messages" => messages = usize::try_from(value()?)?,
            "--rate" => rate = value()?,
            "--runs" => runs = usize::try_from(value()?)?,
            "--smoke" => {
                clients = 5;
                messages = 50;
                rate = 0;
                runs = 1;
            }
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    let url =
        std::env::var("LIWEB_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    println!(
        "{clients} clients, {messages} emits at {} per run, {runs} runs; Redis {url}",
        if rate == 0 {
            "full speed".to_owned()
        } else {
            format!("{rate}/s")
        }
    );
    let mut table: Vec<(&str, Vec<Outcome>)> = Vec::new();
    for setup in ["single", "cluster"] {
        let mut outcomes = Vec::new();
        for run_index in 0..runs {
            let outcome = if setup == "single" {
                let (server, addr) = start(None).await?;
                run(&server, addr, clients, messages, rate).await?
            } else {
                let prefix = format!("liweb-bench:{}:{run_index}", now_us());
                let config = || RedisConfig::new().prefix(prefix.clone());
                let (a, _) = start(Some(RedisAdapter::connect_with(&url, config()).await?)).await?;
                let (_b, b_addr) =
                    start(Some(RedisAdapter::connect_with(&url, config()).await?)).await?;
                run(&a, b_addr, clients, messages, rate).await?
            };
            println!(
                "{setup:>8} run {}: p50 {:>7} µs  p99 {:>7} µs  {:>10.0} msgs/s",
                run_index + 1,
                outcome.p50_us,
                outcome.p99_us,
                outcome.per_second
            );
            outcomes.push(outcome);
        }
        table.push((setup, outcomes));
    }
    let medians: Vec<(f64, f64, f64)> = table
        .iter()
        .map(|(_, outcomes)| {
            let mut p50: Vec<f64> = outcomes.iter().map(|o| o.p50_us as f64).collect();
            let mut p99: Vec<f64> = outcomes.iter().map(|o| o.p99_us as f64).collect();
            let mut rate: Vec<f64> = outcomes.iter().map(|o| o.per_second).collect();
            (median(&mut p50), median(&mut p99), median(&mut rate))
        })
        .collect();
    println!("\n| set-up | p50 latency | p99 latency | delivered msgs/s |");
    println!("|---|---|---|---|");
    for ((setup, _), (p50, p99, rate)) in table.iter().zip(&medians) {
        println!("| {setup} | {p50:.0} µs | {p99:.0} µs | {rate:.0} |");
    }
    let (single, cluster) = (medians[0], medians[1]);
    println!(
        "| cluster / single | {:.2}× | {:.2}× | {:.2}× |",
        cluster.0 / single.0.max(1.0),
        cluster.1 / single.1.max(1.0),
        cluster.2 / single.2
    );
    Ok(())
}
