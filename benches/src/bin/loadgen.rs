//! Load generator: spawns each benchmark server as its own process, drives a
//! scenario with N WebSocket clients on loopback, and prints a table, the
//! liweb/raw ratios and machine-readable JSON (issue 5).
//!
//! ```text
//! cargo build --release -p liweb-benches --bins
//! target/release/loadgen --smoke
//! target/release/loadgen --server both --scenario all --clients 100,1000 --messages 200 \
//!     --echo-clients 50 --rounds 200 --idle 2000 --json target/loadgen.json
//! ```
//!
//! Options (all optional):
//! - `--server liweb|raw|both` (default `both`); each server is a binary
//!   next to this one (`liweb-bench-server`, `raw-bench-server`), started
//!   fresh for every measurement and killed after it, so memory is measured
//!   per server process. Adding a server (socketioxide) is a new
//!   [`ServerKind`] variant with its binary name; it must speak the same
//!   `{"event","payload"}` wire format or get its own client codec here.
//! - `--scenario fanout|echo|idle|all` (default `all`);
//! - `--clients N[,N...]`: fanout room sizes (default `100,1000`);
//! - `--messages M`: messages the fanout publisher sends (default 200);
//! - `--rate R`: publisher messages per second (default 0: as fast as it can);
//! - `--pad BYTES`: padding string in each fanout message (default 0);
//! - `--echo-clients C`, `--rounds K`: echo clients, round trips each
//!   (default 50 × 200);
//! - `--idle N`: idle connections (default 2000);
//! - `--smoke`: tiny sizes (fanout 20 × 50, echo 10 × 20, idle 200); exits
//!   non-zero if any scenario delivered less than everything;
//! - `--json PATH`: also write the JSON there.
//!
//! The open-file limit is not raised here (no `unsafe`, no extra crate): the
//! sizes are checked against `ulimit -n` (each client is one descriptor);
//! raise it in the shell (`ulimit -n 20000`) for 10,000 idle connections.
//!
//! Clients disable Nagle's algorithm (`TCP_NODELAY`), as both servers do.
//! Latency is the receive time minus the `ts` the sender put in the payload,
//! both `SystemTime` microseconds on the same machine. Every wait has a
//! timeout, so a run always ends by itself.

use std::{
    fmt::Write as _,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    net::TcpStream,
    process::{Child, Command},
    sync::watch,
    task::JoinSet,
    time::timeout,
};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async_with_config, tungstenite::Message,
};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Error = Box<dyn std::error::Error + Send + Sync>;
type Res<T> = Result<T, Error>;

/// How many connection handshakes run at once.
const CONNECT_CONCURRENCY: usize = 64;
/// The longest a single connect, join or round trip may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// The room the fanout clients join.
const ROOM: &str = "fanout";

/// A server under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerKind {
    /// liweb, `liweb-bench-server`.
    Liweb,
    /// The hand-written axum baseline, `raw-bench-server`.
    Raw,
    // Seam: `Socketioxide` (binary `socketioxide-bench-server`) goes here.
}

impl ServerKind {
    fn name(self) -> &'static str {
        match self {
            Self::Liweb => "liweb",
            Self::Raw => "raw",
        }
    }

    fn binary(self) -> &'static str {
        match self {
            Self::Liweb => "liweb-bench-server",
            Self::Raw => "raw-bench-server",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Fanout,
    Echo,
    Idle,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Self::Fanout => "fanout",
            Self::Echo => "echo",
            Self::Idle => "idle",
        }
    }
}

#[derive(Debug)]
struct Opts {
    servers: Vec<ServerKind>,
    scenarios: Vec<Scenario>,
    fanout_sizes: Vec<usize>,
    messages: usize,
    rate: u64,
    pad: usize,
    echo_clients: usize,
    rounds: usize,
    idle: usize,
    smoke: bool,
    json: Option<PathBuf>,
}

fn parse_args() -> Res<Opts> {
    let mut opts = Opts {
        servers: vec![ServerKind::Liweb, ServerKind::Raw],
        scenarios: vec![Scenario::Fanout, Scenario::Echo, Scenario::Idle],
        fanout_sizes: vec![100, 1000],
        messages: 200,
        rate: 0,
        pad: 0,
        echo_clients: 50,
        rounds: 200,
        idle: 2000,
        smoke: false,
        json: None,
    };
    let mut explicit = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--server" => {
                opts.servers = match value()?.as_str() {
                    "liweb" => vec![ServerKind::Liweb],
                    "raw" => vec![ServerKind::Raw],
                    "both" => vec![ServerKind::Liweb, ServerKind::Raw],
                    other => return Err(format!("unknown server `{other}`").into()),
                }
            }
            "--scenario" => {
                opts.scenarios = match value()?.as_str() {
                    "fanout" => vec![Scenario::Fanout],
                    "echo" => vec![Scenario::Echo],
                    "idle" => vec![Scenario::Idle],
                    "all" => vec![Scenario::Fanout, Scenario::Echo, Scenario::Idle],
                    other => return Err(format!("unknown scenario `{other}`").into()),
                }
            }
            "--clients" => {
                opts.fanout_sizes = value()?
                    .split(',')
                    .map(|n| n.trim().parse::<usize>())
                    .collect::<Result<_, _>>()?;
                explicit.push("clients");
            }
            "--messages" => opts.messages = value()?.parse()?,
            "--rate" => opts.rate = value()?.parse()?,
            "--pad" => opts.pad = value()?.parse()?,
            "--echo-clients" => opts.echo_clients = value()?.parse()?,
            "--rounds" => opts.rounds = value()?.parse()?,
            "--idle" => opts.idle = value()?.parse()?,
            "--json" => opts.json = Some(PathBuf::from(value()?)),
            "--smoke" => opts.smoke = true,
            "-h" | "--help" => {
                println!(
                    "loadgen [--server liweb|raw|both] [--scenario fanout|echo|idle|all] \
                     [--clients N[,N..]] [--messages M] [--rate R] [--pad BYTES] \
                     [--echo-clients C] [--rounds K] [--idle N] [--smoke] [--json PATH]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}` (see --help)").into()),
        }
    }
    if opts.smoke {
        if !explicit.contains(&"clients") {
            opts.fanout_sizes = vec![20];
        }
        opts.messages = opts.messages.min(50);
        opts.echo_clients = opts.echo_clients.min(10);
        opts.rounds = opts.rounds.min(20);
        opts.idle = opts.idle.min(200);
    }
    Ok(opts)
}

/// The soft open-file limit of this process, from `/proc/self/limits`.
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Resident memory of a process in KiB (`VmRSS`).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default()
}

/// A running server process.
struct Running {
    child: Child,
    addr: String,
    pid: u32,
}

async fn start(kind: ServerKind) -> Res<Running> {
    let exe = std::env::current_exe()?.with_file_name(kind.binary());
    let mut child = Command::new(&exe)
        .arg("127.0.0.1:0")
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start {}: {e} (build the servers: cargo build -p liweb-benches --bins, same profile)",
                exe.display()
            )
        })?;
    let pid = child.id().ok_or("server exited at once")?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = timeout(STEP_TIMEOUT, lines.next_line())
        .await
        .map_err(|_| format!("{} did not say `listening on` in time", kind.binary()))??
        .ok_or("server closed stdout")?;
    let addr = line
        .strip_prefix("listening on ")
        .ok_or_else(|| format!("unexpected first line `{line}`"))?
        .trim()
        .to_owned();
    Ok(Running { child, addr, pid })
}

async fn stop(mut running: Running) {
    let _ = running.child.start_kill();
    let _ = timeout(STEP_TIMEOUT, running.child.wait()).await;
}

#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(borrow)]
    event: &'a str,
    #[serde(default)]
    payload: Stamp,
}

#[derive(Deserialize, Default)]
struct Stamp {
    #[serde(default)]
    ts: u64,
    #[serde(default)]
    seq: u64,
}

/// The next text frame, parsed by `f`; other frames are skipped.
async fn next_text<T>(ws: &mut Ws, f: impl Fn(&Incoming<'_>) -> Option<T>) -> Res<T> {
    loop {
        let message = timeout(STEP_TIMEOUT, ws.next())
            .await
            .map_err(|_| "timed out waiting for a frame")?
            .ok_or("connection closed")??;
        if let Message::Text(text) = message {
            let incoming: Incoming<'_> = serde_json::from_str(text.as_str())?;
            if let Some(value) = f(&incoming) {
                return Ok(value);
            }
        }
    }
}

/// Opens `n` connections, `CONNECT_CONCURRENCY` handshakes at a time; with
/// `room`, each joins it and waits for `joined`.
async fn connect_many(addr: &str, n: usize, room: Option<&'static str>) -> Res<Vec<Ws>> {
    let url = format!("ws://{addr}/ws");
    let mut out = Vec::with_capacity(n);
    let mut set = JoinSet::new();
    let mut started = 0;
    while out.len() < n {
        while started < n && set.len() < CONNECT_CONCURRENCY {
            let url = url.clone();
            set.spawn(async move {
                let (mut ws, _) = timeout(STEP_TIMEOUT, connect_async_with_config(url, None, true))
                    .await
                    .map_err(|_| "connect timed out")??;
                if let Some(room) = room {
                    let join = json!({"event": "join", "payload": {"room": room}});
                    ws.send(Message::text(join.to_string())).await?;
                    next_text(&mut ws, |m| (m.event == "joined").then_some(())).await?;
                }
                Res::Ok(ws)
            });
            started += 1;
        }
        match set.join_next().await {
            Some(result) => out.push(result??),
            None => break,
        }
    }
    Ok(out)
}

/// Latency percentiles of a sample, in microseconds.
fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// One measurement.
#[derive(Debug, Default, Clone)]
struct Row {
    server: &'static str,
    scenario: &'static str,
    clients: usize,
    expected: u64,
    delivered: u64,
    elapsed_s: f64,
    per_sec: f64,
    p50_us: u64,
    p99_us: u64,
    max_us: u64,
    rss_before_kib: u64,
    rss_after_kib: u64,
    kib_per_conn: f64,
}

impl Row {
    fn complete(&self) -> bool {
        self.delivered >= self.expected
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "server": self.server, "scenario": self.scenario, "clients": self.clients,
            "expected": self.expected, "delivered": self.delivered,
            "elapsed_s": self.elapsed_s, "per_sec": self.per_sec,
            "p50_us": self.p50_us, "p99_us": self.p99_us, "max_us": self.max_us,
            "rss_before_kib": self.rss_before_kib, "rss_after_kib": self.rss_after_kib,
            "kib_per_conn": self.kib_per_conn,
        })
    }
}

fn latency_row(row: &mut Row, mut samples: Vec<u64>) {
    samples.sort_unstable();
    row.p50_us = percentile(&samples, 0.50);
    row.p99_us = percentile(&samples, 0.99);
    row.max_us = samples.last().copied().unwrap_or(0);
}

/// `n` clients in one room; a publisher outside the room sends `m` messages.
async fn fanout(addr: &str, n: usize, m: usize, rate: u64, pad: usize) -> Res<Row> {
    let clients = connect_many(addr, n, Some(ROOM)).await?;
    let mut publisher = connect_many(addr, 1, None)
        .await?
        .pop()
        .ok_or("no publisher")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut readers = JoinSet::new();
    for mut ws in clients {
        let mut stop = stop_rx.clone();
        readers.spawn(async move {
            let mut samples = Vec::with_capacity(m);
            let mut last = None;
            while samples.len() < m {
                tokio::select! {
                    message = ws.next() => match message {
                        Some(Ok(Message::Text(text))) => {
                            let now = now_us();
                            if let Ok(incoming) = serde_json::from_str::<Incoming<'_>>(text.as_str())
                                && incoming.event == "msg"
                            {
                                samples.push(now.saturating_sub(incoming.payload.ts));
                                last = Some(Instant::now());
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => break,
                    },
                    _ = stop.changed() => break,
                }
            }
            (samples, last, ws)
        });
    }
    let padding = "x".repeat(pad);
    let interval = (rate > 0).then(|| Duration::from_secs_f64(1.0 / rate as f64));
    let t0 = Instant::now();
    for seq in 0..m {
        let mut payload = json!({"room": ROOM, "ts": now_us(), "seq": seq});
        if pad > 0 {
            payload["pad"] = json!(padding);
        }
        let frame = json!({"event": "publish", "payload": payload}).to_string();
        timeout(STEP_TIMEOUT, publisher.send(Message::text(frame)))
            .await
            .map_err(|_| "publish timed out")??;
        if let Some(interval) = interval {
            tokio::time::sleep_until((t0 + interval * (seq as u32 + 1)).into()).await;
        }
    }
    // Everything must arrive within this budget after the last send.
    let budget = Duration::from_secs(10) + Duration::from_micros((n * m) as u64 * 20);
    let mut deadline = tokio::time::Instant::now() + budget;
    let mut stopped = false;
    let mut samples = Vec::with_capacity(n * m);
    let mut last_recv = t0;
    let mut keep = Vec::with_capacity(n);
    loop {
        match tokio::time::timeout_at(deadline, readers.join_next()).await {
            Ok(Some(result)) => {
                let (s, last, ws) = result?;
                samples.extend(s);
                if let Some(last) = last {
                    last_recv = last_recv.max(last);
                }
                keep.push(ws);
            }
            Ok(None) => break,
            Err(_) if !stopped => {
                eprintln!("fanout: deadline reached, stopping the readers");
                let _ = stop_tx.send(true);
                stopped = true;
                deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
            }
            Err(_) => {
                eprintln!("fanout: readers did not stop, aborting them");
                readers.abort_all();
                break;
            }
        }
    }
    drop(keep);
    let elapsed = last_recv.duration_since(t0).as_secs_f64();
    let mut row = Row {
        scenario: "fanout",
        clients: n,
        expected: (n * m) as u64,
        delivered: samples.len() as u64,
        elapsed_s: elapsed,
        per_sec: if elapsed > 0.0 {
            samples.len() as f64 / elapsed
        } else {
            0.0
        },
        ..Row::default()
    };
    latency_row(&mut row, samples);
    Ok(row)
}

/// `c` clients each doing `k` sequential `echo` → `echoed` round trips.
async fn echo(addr: &str, c: usize, k: usize) -> Res<Row> {
    let clients = connect_many(addr, c, None).await?;
    let t0 = Instant::now();
    let mut set = JoinSet::new();
    for mut ws in clients {
        set.spawn(async move {
            let mut samples = Vec::with_capacity(k);
            for seq in 0..k as u64 {
                let frame = json!({"event": "echo", "payload": {"ts": now_us(), "seq": seq}});
                ws.send(Message::text(frame.to_string())).await?;
                let ts = next_text(&mut ws, |m| {
                    (m.event == "echoed" && m.payload.seq == seq).then_some(m.payload.ts)
                })
                .await?;
                samples.push(now_us().saturating_sub(ts));
            }
            Res::Ok(samples)
        });
    }
    let mut samples = Vec::with_capacity(c * k);
    while let Some(result) = set.join_next().await {
        match result? {
            Ok(s) => samples.extend(s),
            Err(err) => eprintln!("echo client failed: {err}"),
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let mut row = Row {
        scenario: "echo",
        clients: c,
        expected: (c * k) as u64,
        delivered: samples.len() as u64,
        elapsed_s: elapsed,
        per_sec: samples.len() as f64 / elapsed,
        ..Row::default()
    };
    latency_row(&mut row, samples);
    Ok(row)
}

/// Waits until the RSS of `pid` stops moving (two reads 250 ms apart within
/// 0.5 %), at most 10 s; returns the last read.
async fn settled_rss(pid: u32) -> Res<u64> {
    let mut last = rss_kib(pid).ok_or("cannot read VmRSS")?;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = rss_kib(pid).ok_or("cannot read VmRSS")?;
        if now.abs_diff(last) * 200 <= last {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

/// Server RSS before and after opening `n` idle connections.
async fn idle(running: &Running, n: usize) -> Res<Row> {
    // One connection first, so one-time costs (runtime workers, the first
    // upgrade's allocations) are in the baseline.
    let warm = connect_many(&running.addr, 1, None).await?;
    let before = settled_rss(running.pid).await?;
    let t0 = Instant::now();
    let conns = connect_many(&running.addr, n, None).await?;
    let elapsed = t0.elapsed().as_secs_f64();
    let after = settled_rss(running.pid).await?;
    let row = Row {
        scenario: "idle",
        clients: n,
        expected: n as u64,
        delivered: conns.len() as u64,
        elapsed_s: elapsed,
        per_sec: conns.len() as f64 / elapsed,
        rss_before_kib: before,
        rss_after_kib: after,
        kib_per_conn: after.saturating_sub(before) as f64 / n as f64,
        ..Row::default()
    };
    drop(conns);
    drop(warm);
    Ok(row)
}

async fn measure(kind: ServerKind, scenario: Scenario, size: usize, opts: &Opts) -> Res<Row> {
    let running = start(kind).await?;
    let result = match scenario {
        Scenario::Fanout => fanout(&running.addr, size, opts.messages, opts.rate, opts.pad).await,
        Scenario::Echo => echo(&running.addr, size, opts.rounds).await,
        Scenario::Idle => idle(&running, size).await,
    };
    stop(running).await;
    let mut row = result?;
    row.server = kind.name();
    Ok(row)
}

fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<7} {:<8} {:>7} {:>10} {:>12} {:>10} {:>10} {:>10} {:>10}",
        "server",
        "scenario",
        "clients",
        "delivered",
        "per_sec",
        "p50_us",
        "p99_us",
        "max_us",
        "KiB/conn"
    );
    for r in rows {
        let kib = if r.scenario == "idle" {
            format!("{:.1}", r.kib_per_conn)
        } else {
            "-".to_owned()
        };
        let _ = writeln!(
            out,
            "{:<7} {:<8} {:>7} {:>10} {:>12.0} {:>10} {:>10} {:>10} {:>10}",
            r.server,
            r.scenario,
            r.clients,
            format!("{}/{}", r.delivered, r.expected),
            r.per_sec,
            r.p50_us,
            r.p99_us,
            r.max_us,
            kib
        );
    }
    out
}

fn ratio(a: f64, b: f64) -> serde_json::Value {
    if b > 0.0 {
        json!((a / b * 1000.0).round() / 1000.0)
    } else {
        serde_json::Value::Null
    }
}

/// liweb/raw ratios per scenario and size.
fn ratios(rows: &[Row]) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for l in rows.iter().filter(|r| r.server == "liweb") {
        let Some(r) = rows
            .iter()
            .find(|r| r.server == "raw" && r.scenario == l.scenario && r.clients == l.clients)
        else {
            continue;
        };
        let mut v = json!({"scenario": l.scenario, "clients": l.clients});
        if l.scenario == "idle" {
            v["kib_per_conn"] = ratio(l.kib_per_conn, r.kib_per_conn);
        } else {
            v["per_sec"] = ratio(l.per_sec, r.per_sec);
            v["p50_us"] = ratio(l.p50_us as f64, r.p50_us as f64);
            v["p99_us"] = ratio(l.p99_us as f64, r.p99_us as f64);
            v["max_us"] = ratio(l.max_us as f64, r.max_us as f64);
        }
        out.push(v);
    }
    out
}

async fn run(opts: Opts) -> Res<bool> {
    let limit = open_file_limit().unwrap_or(1024);
    let biggest = opts
        .fanout_sizes
        .iter()
        .copied()
        .chain([opts.echo_clients, opts.idle])
        .max()
        .unwrap_or(0);
    if biggest + 64 > limit {
        return Err(format!(
            "{biggest} clients need more than the open-file limit {limit} allows; \
             raise it in the shell first (ulimit -n {})",
            biggest + 1024
        )
        .into());
    }
    let mut rows = Vec::new();
    let mut ok = true;
    for &scenario in &opts.scenarios {
        let sizes = match scenario {
            Scenario::Fanout => opts.fanout_sizes.clone(),
            Scenario::Echo => vec![opts.echo_clients],
            Scenario::Idle => vec![opts.idle],
        };
        for size in sizes {
            for &kind in &opts.servers {
                let started = Instant::now();
                match measure(kind, scenario, size, &opts).await {
                    Ok(row) => {
                        eprintln!(
                            "{} {} {}: {}/{} in {:.1}s",
                            kind.name(),
                            scenario.name(),
                            size,
                            row.delivered,
                            row.expected,
                            started.elapsed().as_secs_f64()
                        );
                        ok &= row.complete();
                        rows.push(row);
                    }
                    Err(err) => {
                        eprintln!(
                            "{} {} {}: FAILED: {err}",
                            kind.name(),
                            scenario.name(),
                            size
                        );
                        ok = false;
                    }
                }
            }
        }
    }
    print!("{}", table(&rows));
    let ratios = ratios(&rows);
    for r in &ratios {
        println!("liweb/raw {r}");
    }
    let report = json!({
        "smoke": opts.smoke,
        "messages": opts.messages,
        "rounds": opts.rounds,
        "rate": opts.rate,
        "pad": opts.pad,
        "results": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
        "ratios_liweb_over_raw": ratios,
        "complete": ok,
    });
    println!("JSON {report}");
    if let Some(path) = &opts.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(ok)
}

#[tokio::main]
async fn main() {
    let opts = match parse_args() {
        Ok(opts) => opts,
        Err(err) => {
            eprintln!("loadgen: {err}");
            std::process::exit(2);
        }
    };
    let smoke = opts.smoke;
    match run(opts).await {
        Ok(true) => {}
        Ok(false) => {
            eprintln!("loadgen: some scenario did not deliver everything");
            std::process::exit(1);
        }
        Err(err) => {
            eprintln!("loadgen: {err}");
            std::process::exit(if smoke { 1 } else { 2 });
        }
    }
}
