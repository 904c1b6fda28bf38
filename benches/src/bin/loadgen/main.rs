//! Load generator: spawns each benchmark server as its own process, drives a
//! scenario with N WebSocket clients on loopback, and prints a table, the
//! liweb/raw and liweb/socketioxide ratios and machine-readable JSON
//! (issue 5).
//!
//! ```text
//! cargo build --release -p liweb-benches --bins
//! target/release/loadgen --smoke
//! target/release/loadgen                 # every scenario, every server
//! target/release/loadgen --repeat 3 --json target/loadgen.json
//! ```
//!
//! With no option it runs the whole comparison: fanout to 100, 1,000 and
//! 5,000 clients (200 messages), echo (50 clients × 200 round trips) and
//! idle (10,000 connections), against liweb, the raw axum server and
//! socketioxide, one server process at a time.
//!
//! Options (all optional):
//! - `--server S[,S...]`, each `liweb`, `raw` or `socketioxide`, or `both`
//!   (liweb and raw) or `all` (the default); each server is a binary next
//!   to this one (`liweb-bench-server`, `raw-bench-server`,
//!   `socketioxide-bench-server`), started fresh for every measurement and
//!   killed after it, so memory is measured per server process;
//! - `--scenario fanout|echo|idle|all` (default `all`);
//! - `--clients N[,N...]`: fanout room sizes (default `100,1000,5000`);
//! - `--messages M`: messages the fanout publisher sends (default 200);
//! - `--rate R`: publisher messages per second (default 0: as fast as it can);
//! - `--pad BYTES`: padding string in each fanout message (default 0);
//! - `--echo-clients C`, `--rounds K`: echo clients, round trips each
//!   (default 50 × 200);
//! - `--idle N`: idle connections (default 10,000);
//! - `--repeat N`: measure every cell N times, the servers taking turns, and
//!   report the median of each figure (default 1);
//! - `--smoke`: tiny sizes (fanout 20 × 50, echo 10 × 20, idle 200); exits
//!   non-zero if any scenario delivered less than everything;
//! - `--json PATH`: also write the JSON there.
//!
//! The open-file limit is raised to the hard limit at start (the servers
//! raise theirs too), so 10,000 idle connections need no `ulimit -n` as
//! long as the hard limit allows them; the sizes are checked against it
//! (each client is one descriptor).
//!
//! The client speaks each server's frames ([`wire`]): liweb's envelope to
//! liweb and the raw server, socket.io v5 over engine.io v4 to
//! socketioxide, answering its pings. Clients disable Nagle's algorithm
//! (`TCP_NODELAY`), as the servers do. Fanout latency is the receive time
//! minus the `ts` the publisher put in the payload, both `SystemTime`
//! microseconds on the same machine; echo latency is the round trip of a
//! request with an ack id, matched to its reply by that id. Fanout and echo
//! also report the server's CPU time per delivered message or round trip
//! (all its threads, from `/proc/<pid>/task/*/schedstat`), which a shared
//! machine disturbs less than the wall clock. Every wait has a timeout, so
//! a run always ends by itself.

mod wire;

use std::{
    fmt::Write as _,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use futures_util::{SinkExt, StreamExt};
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

use wire::{Incoming, Wire};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Error = Box<dyn std::error::Error + Send + Sync>;
type Res<T> = Result<T, Error>;

/// How many connection handshakes run at once.
const CONNECT_CONCURRENCY: usize = 64;
/// The longest a single connect, join or round trip may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// The room the fanout clients join.
const ROOM: &str = "fanout";
/// Descriptors kept free for the runtime, the child's pipes and the publisher.
const SPARE_FDS: usize = 64;

/// A server under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerKind {
    /// liweb, `liweb-bench-server`.
    Liweb,
    /// The hand-written axum baseline, `raw-bench-server`.
    Raw,
    /// socketioxide on axum, `socketioxide-bench-server`.
    Socketioxide,
}

impl ServerKind {
    const ALL: [Self; 3] = [Self::Liweb, Self::Raw, Self::Socketioxide];

    fn name(self) -> &'static str {
        match self {
            Self::Liweb => "liweb",
            Self::Raw => "raw",
            Self::Socketioxide => "socketioxide",
        }
    }

    fn binary(self) -> &'static str {
        match self {
            Self::Liweb => "liweb-bench-server",
            Self::Raw => "raw-bench-server",
            Self::Socketioxide => "socketioxide-bench-server",
        }
    }

    fn wire(self) -> Wire {
        match self {
            Self::Liweb | Self::Raw => Wire::Envelope,
            Self::Socketioxide => Wire::SocketIo,
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
    repeat: usize,
    smoke: bool,
    json: Option<PathBuf>,
}

fn parse_servers(list: &str) -> Res<Vec<ServerKind>> {
    let mut servers = Vec::new();
    for name in list.split(',').map(str::trim) {
        let more: &[ServerKind] = match name {
            "liweb" => &[ServerKind::Liweb],
            "raw" => &[ServerKind::Raw],
            "socketioxide" => &[ServerKind::Socketioxide],
            "both" => &[ServerKind::Liweb, ServerKind::Raw],
            "all" => &ServerKind::ALL,
            other => return Err(format!("unknown server `{other}`").into()),
        };
        for &kind in more {
            if !servers.contains(&kind) {
                servers.push(kind);
            }
        }
    }
    Ok(servers)
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Res<Opts> {
    let mut opts = Opts {
        servers: ServerKind::ALL.to_vec(),
        scenarios: vec![Scenario::Fanout, Scenario::Echo, Scenario::Idle],
        fanout_sizes: vec![100, 1000, 5000],
        messages: 200,
        rate: 0,
        pad: 0,
        echo_clients: 50,
        rounds: 200,
        idle: 10_000,
        repeat: 1,
        smoke: false,
        json: None,
    };
    let mut explicit_clients = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--server" => opts.servers = parse_servers(&value()?)?,
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
                explicit_clients = true;
            }
            "--messages" => opts.messages = value()?.parse()?,
            "--rate" => opts.rate = value()?.parse()?,
            "--pad" => opts.pad = value()?.parse()?,
            "--echo-clients" => opts.echo_clients = value()?.parse()?,
            "--rounds" => opts.rounds = value()?.parse()?,
            "--idle" => opts.idle = value()?.parse()?,
            "--repeat" => opts.repeat = value()?.parse::<usize>()?.max(1),
            "--json" => opts.json = Some(PathBuf::from(value()?)),
            "--smoke" => opts.smoke = true,
            "-h" | "--help" => {
                println!(
                    "loadgen [--server liweb|raw|socketioxide|both|all[,...]] \
                     [--scenario fanout|echo|idle|all] [--clients N[,N..]] [--messages M] \
                     [--rate R] [--pad BYTES] [--echo-clients C] [--rounds K] [--idle N] \
                     [--repeat N] [--smoke] [--json PATH]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}` (see --help)").into()),
        }
    }
    if opts.smoke {
        if !explicit_clients {
            opts.fanout_sizes = vec![20];
        }
        opts.messages = opts.messages.min(50);
        opts.echo_clients = opts.echo_clients.min(10);
        opts.rounds = opts.rounds.min(20);
        opts.idle = opts.idle.min(200);
    }
    Ok(opts)
}

/// CPU time all threads of a process have run, in nanoseconds (the first
/// field of each `/proc/<pid>/task/<tid>/schedstat`). On a shared machine
/// it is steadier than the wall clock: time the server waits for a core
/// does not count.
fn cpu_ns(pid: u32) -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
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
    kind: ServerKind,
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
    Ok(Running {
        child,
        addr,
        pid,
        kind,
    })
}

async fn stop(mut running: Running) {
    let _ = running.child.start_kill();
    let _ = timeout(STEP_TIMEOUT, running.child.wait()).await;
}

/// One client connection and the frames its server speaks.
struct Client {
    ws: Ws,
    wire: Wire,
}

impl Client {
    async fn send_event(
        &mut self,
        name: &str,
        payload: &serde_json::Value,
        ack: Option<u64>,
    ) -> Res<()> {
        let frame = self.wire.event(name, payload, ack)?;
        timeout(STEP_TIMEOUT, self.ws.send(Message::text(frame)))
            .await
            .map_err(|_| "send timed out")??;
        Ok(())
    }

    /// Reads one frame; `Ok(None)` for anything but a text frame. Answers
    /// engine.io pings on the way and fails on a close.
    async fn read(&mut self, message: Message) -> Res<Option<Incoming<'static>>> {
        let Message::Text(text) = message else {
            return match message {
                Message::Close(_) => Err("connection closed by the server".into()),
                _ => Ok(None),
            };
        };
        let incoming = match self.wire.parse(text.as_str())? {
            Incoming::Ping => {
                self.ws.send(Message::text(wire::ENGINEIO_PONG)).await?;
                return Ok(None);
            }
            Incoming::Closed => return Err("closed by the server".into()),
            // Only owned data leaves this function.
            Incoming::Event { name, stamp } => Incoming::Event {
                name: name.into_owned().into(),
                stamp,
            },
            Incoming::Ack { id, reply } => Incoming::Ack {
                id,
                reply: reply.map_err(|e| e.into_owned().into()),
            },
            Incoming::ConnectError(data) => Incoming::ConnectError(data.into_owned().into()),
            Incoming::Open => Incoming::Open,
            Incoming::Connected => Incoming::Connected,
            Incoming::Other => Incoming::Other,
        };
        Ok(Some(incoming))
    }

    /// The first frame for which `f` says `Some`; others are skipped.
    async fn next<T>(&mut self, f: impl Fn(&Incoming<'_>) -> Option<T>) -> Res<T> {
        loop {
            let message = timeout(STEP_TIMEOUT, self.ws.next())
                .await
                .map_err(|_| "timed out waiting for a frame")?
                .ok_or("connection closed")??;
            if let Some(incoming) = self.read(message).await?
                && let Some(value) = f(&incoming)
            {
                return Ok(value);
            }
        }
    }
}

/// Opens one connection (for socket.io, in the default namespace); with
/// `room`, joins it and waits for `joined`.
async fn connect(kind: ServerKind, addr: &str, room: Option<&str>) -> Res<Client> {
    let wire = kind.wire();
    let url = format!("ws://{addr}{}", wire.path());
    let (ws, _) = timeout(STEP_TIMEOUT, connect_async_with_config(url, None, true))
        .await
        .map_err(|_| "connect timed out")??;
    let mut client = Client { ws, wire };
    if wire == Wire::SocketIo {
        client
            .next(|m| matches!(m, Incoming::Open).then_some(()))
            .await?;
        timeout(
            STEP_TIMEOUT,
            client.ws.send(Message::text(wire::SOCKETIO_CONNECT)),
        )
        .await
        .map_err(|_| "send timed out")??;
        client
            .next(|m| match m {
                Incoming::Connected => Some(Ok(())),
                Incoming::ConnectError(data) => Some(Err(format!("connect refused: {data}"))),
                _ => None,
            })
            .await??;
    }
    if let Some(room) = room {
        client
            .send_event("join", &json!({"room": room}), None)
            .await?;
        client
            .next(|m| matches!(m, Incoming::Event { name, .. } if name == "joined").then_some(()))
            .await?;
    }
    Ok(client)
}

/// Opens `n` connections, `CONNECT_CONCURRENCY` handshakes at a time; with
/// `room`, each joins it and waits for `joined`.
async fn connect_many(
    kind: ServerKind,
    addr: &str,
    n: usize,
    room: Option<&'static str>,
) -> Res<Vec<Client>> {
    let mut out = Vec::with_capacity(n);
    let mut set = JoinSet::new();
    let mut started = 0;
    while out.len() < n {
        while started < n && set.len() < CONNECT_CONCURRENCY {
            let addr = addr.to_owned();
            set.spawn(async move { connect(kind, &addr, room).await });
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

/// One measurement, or the medians of several.
#[derive(Debug, Default, Clone)]
struct Row {
    server: &'static str,
    scenario: &'static str,
    clients: usize,
    runs: usize,
    expected: u64,
    delivered: u64,
    elapsed_s: f64,
    per_sec: f64,
    p50_us: u64,
    p99_us: u64,
    max_us: u64,
    /// Server CPU time per delivered message (fanout) or round trip (echo).
    cpu_ns_per_msg: u64,
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
            "runs": self.runs, "expected": self.expected, "delivered": self.delivered,
            "elapsed_s": self.elapsed_s, "per_sec": self.per_sec,
            "p50_us": self.p50_us, "p99_us": self.p99_us, "max_us": self.max_us,
            "cpu_ns_per_msg": self.cpu_ns_per_msg,
            "rss_before_kib": self.rss_before_kib, "rss_after_kib": self.rss_after_kib,
            "kib_per_conn": self.kib_per_conn,
        })
    }
}

/// The median of each figure over `runs` (the upper median for an even
/// count); `delivered` is the smallest, so a short run shows.
fn median_row(runs: &[Row]) -> Row {
    fn median<T: Copy + PartialOrd>(mut values: Vec<T>) -> T {
        values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        values[values.len() / 2]
    }
    let Some(first) = runs.first() else {
        return Row::default();
    };
    let pick = |f: fn(&Row) -> f64| median(runs.iter().map(f).collect());
    let pick_u = |f: fn(&Row) -> u64| median(runs.iter().map(f).collect());
    Row {
        server: first.server,
        scenario: first.scenario,
        clients: first.clients,
        runs: runs.len(),
        expected: first.expected,
        delivered: runs.iter().map(|r| r.delivered).min().unwrap_or(0),
        elapsed_s: pick(|r| r.elapsed_s),
        per_sec: pick(|r| r.per_sec),
        p50_us: pick_u(|r| r.p50_us),
        p99_us: pick_u(|r| r.p99_us),
        max_us: pick_u(|r| r.max_us),
        cpu_ns_per_msg: pick_u(|r| r.cpu_ns_per_msg),
        rss_before_kib: pick_u(|r| r.rss_before_kib),
        rss_after_kib: pick_u(|r| r.rss_after_kib),
        kib_per_conn: pick(|r| r.kib_per_conn),
    }
}

fn latency_row(row: &mut Row, mut samples: Vec<u64>) {
    samples.sort_unstable();
    row.p50_us = percentile(&samples, 0.50);
    row.p99_us = percentile(&samples, 0.99);
    row.max_us = samples.last().copied().unwrap_or(0);
}

/// `n` clients in one room; a publisher outside the room sends `m` messages.
async fn fanout(running: &Running, n: usize, m: usize, rate: u64, pad: usize) -> Res<Row> {
    let clients = connect_many(running.kind, &running.addr, n, Some(ROOM)).await?;
    let mut publisher = connect_many(running.kind, &running.addr, 1, None)
        .await?
        .pop()
        .ok_or("no publisher")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut readers = JoinSet::new();
    for mut client in clients {
        let mut stop = stop_rx.clone();
        readers.spawn(async move {
            let mut samples = Vec::with_capacity(m);
            let mut last = None;
            while samples.len() < m {
                tokio::select! {
                    message = client.ws.next() => {
                        let Some(Ok(message)) = message else { break };
                        let now = now_us();
                        match client.read(message).await {
                            Ok(Some(Incoming::Event { name, stamp })) if name == "msg" => {
                                samples.push(now.saturating_sub(stamp.ts));
                                last = Some(Instant::now());
                            }
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    },
                    _ = stop.changed() => break,
                }
            }
            (samples, last, client)
        });
    }
    let padding = "x".repeat(pad);
    let interval = (rate > 0).then(|| Duration::from_secs_f64(1.0 / rate as f64));
    let cpu_before = cpu_ns(running.pid).unwrap_or(0);
    let t0 = Instant::now();
    for seq in 0..m {
        let mut payload = json!({"room": ROOM, "ts": now_us(), "seq": seq});
        if pad > 0 {
            payload["pad"] = json!(padding);
        }
        publisher.send_event("publish", &payload, None).await?;
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
                let (s, last, client) = result?;
                samples.extend(s);
                if let Some(last) = last {
                    last_recv = last_recv.max(last);
                }
                keep.push(client);
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
    let cpu = cpu_ns(running.pid).unwrap_or(0).saturating_sub(cpu_before);
    drop(keep);
    drop(publisher);
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
        cpu_ns_per_msg: cpu / (samples.len() as u64).max(1),
        ..Row::default()
    };
    latency_row(&mut row, samples);
    Ok(row)
}

/// `c` clients each doing `k` sequential `echo` requests with an ack id,
/// each matched to its reply by that id.
///
/// liweb and the raw server answer with `__ack`; an `echoed` event with the
/// request's `seq` (what liweb bench servers without acknowledgements sent)
/// is taken as the reply too.
async fn echo(running: &Running, c: usize, k: usize) -> Res<Row> {
    let clients = connect_many(running.kind, &running.addr, c, None).await?;
    let cpu_before = cpu_ns(running.pid).unwrap_or(0);
    let t0 = Instant::now();
    let mut set = JoinSet::new();
    for mut client in clients {
        set.spawn(async move {
            let mut samples = Vec::with_capacity(k);
            for seq in 0..k as u64 {
                // Ack ids are per connection; start at 1 so that 0 is
                // never mistaken for a default.
                let id = seq + 1;
                let sent = Instant::now();
                let payload = json!({"ts": now_us(), "seq": seq});
                client.send_event("echo", &payload, Some(id)).await?;
                let reply = client
                    .next(|m| match m {
                        Incoming::Ack { id: got, reply } if *got == id => Some(
                            reply
                                .as_ref()
                                .map(|stamp| stamp.seq)
                                .map_err(|err| err.to_string()),
                        ),
                        Incoming::Event { name, stamp } if name == "echoed" && stamp.seq == seq => {
                            Some(Ok(seq))
                        }
                        _ => None,
                    })
                    .await?;
                match reply {
                    Ok(got) if got == seq => {}
                    Ok(got) => return Err(format!("ack {id} carried seq {got}, not {seq}").into()),
                    Err(err) => return Err(format!("ack {id} answered an error: {err}").into()),
                }
                samples.push(sent.elapsed().as_micros() as u64);
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
    let cpu = cpu_ns(running.pid).unwrap_or(0).saturating_sub(cpu_before);
    let mut row = Row {
        scenario: "echo",
        clients: c,
        expected: (c * k) as u64,
        delivered: samples.len() as u64,
        elapsed_s: elapsed,
        per_sec: samples.len() as f64 / elapsed,
        cpu_ns_per_msg: cpu / (samples.len() as u64).max(1),
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

/// Keeps `clients` open, reading what comes (socket.io's pings must be
/// answered or the server drops the connection), until the set is dropped.
fn keep_alive(clients: Vec<Client>) -> JoinSet<()> {
    let mut set = JoinSet::new();
    for mut client in clients {
        set.spawn(async move {
            while let Some(Ok(message)) = client.ws.next().await {
                if client.read(message).await.is_err() {
                    break;
                }
            }
        });
    }
    set
}

/// Server RSS before and after opening `n` idle connections.
async fn idle(running: &Running, n: usize) -> Res<Row> {
    // One connection first, so one-time costs (runtime workers, the first
    // upgrade's allocations) are in the baseline.
    let warm = keep_alive(connect_many(running.kind, &running.addr, 1, None).await?);
    let before = settled_rss(running.pid).await?;
    let t0 = Instant::now();
    let conns = connect_many(running.kind, &running.addr, n, None).await?;
    let elapsed = t0.elapsed().as_secs_f64();
    let opened = conns.len();
    let mut conns = keep_alive(conns);
    let after = settled_rss(running.pid).await?;
    // A connection counts only if it is still open once the memory is read.
    let mut closed = 0;
    while conns.try_join_next().is_some() {
        closed += 1;
    }
    let row = Row {
        scenario: "idle",
        clients: n,
        expected: n as u64,
        delivered: opened.saturating_sub(closed) as u64,
        elapsed_s: elapsed,
        per_sec: opened as f64 / elapsed,
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
        Scenario::Fanout => fanout(&running, size, opts.messages, opts.rate, opts.pad).await,
        Scenario::Echo => echo(&running, size, opts.rounds).await,
        Scenario::Idle => idle(&running, size).await,
    };
    stop(running).await;
    let mut row = result?;
    row.server = kind.name();
    row.runs = 1;
    Ok(row)
}

fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<12} {:<8} {:>7} {:>4} {:>16} {:>12} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "server",
        "scenario",
        "clients",
        "runs",
        "delivered",
        "per_sec",
        "p50_us",
        "p99_us",
        "max_us",
        "cpu_ns/msg",
        "KiB/conn"
    );
    for r in rows {
        let (kib, cpu) = if r.scenario == "idle" {
            (format!("{:.1}", r.kib_per_conn), "-".to_owned())
        } else {
            ("-".to_owned(), r.cpu_ns_per_msg.to_string())
        };
        let _ = writeln!(
            out,
            "{:<12} {:<8} {:>7} {:>4} {:>16} {:>12.0} {:>10} {:>10} {:>10} {:>10} {:>10}",
            r.server,
            r.scenario,
            r.clients,
            r.runs,
            format!("{}/{}", r.delivered, r.expected),
            r.per_sec,
            r.p50_us,
            r.p99_us,
            r.max_us,
            cpu,
            kib
        );
    }
    out
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| (a / b * 1000.0).round() / 1000.0)
}

/// liweb's figures over `other`'s, per scenario and size: throughput, p50,
/// p99 (and max), or, for idle, memory per connection.
fn ratios(rows: &[Row], other: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for l in rows.iter().filter(|r| r.server == "liweb") {
        let Some(r) = rows
            .iter()
            .find(|r| r.server == other && r.scenario == l.scenario && r.clients == l.clients)
        else {
            continue;
        };
        let mut v = json!({"scenario": l.scenario, "clients": l.clients});
        if l.scenario == "idle" {
            v["kib_per_conn"] = json!(ratio(l.kib_per_conn, r.kib_per_conn));
        } else {
            v["per_sec"] = json!(ratio(l.per_sec, r.per_sec));
            v["p50_us"] = json!(ratio(l.p50_us as f64, r.p50_us as f64));
            v["p99_us"] = json!(ratio(l.p99_us as f64, r.p99_us as f64));
            v["max_us"] = json!(ratio(l.max_us as f64, r.max_us as f64));
            v["cpu_ns_per_msg"] = json!(ratio(l.cpu_ns_per_msg as f64, r.cpu_ns_per_msg as f64));
        }
        out.push(v);
    }
    out
}

/// The ratios as a table: one line per scenario and size.
fn ratio_table(other: &str, ratios: &[serde_json::Value]) -> String {
    let cell = |v: &serde_json::Value, key: &str| {
        v[key]
            .as_f64()
            .map_or_else(|| "-".to_owned(), |x| format!("{x:.2}"))
    };
    let mut out = String::new();
    if ratios.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "{:<18} {:<8} {:>7} {:>8} {:>6} {:>6} {:>10} {:>9}",
        "ratio", "scenario", "clients", "per_sec", "p50", "p99", "cpu/msg", "KiB/conn"
    );
    for v in ratios {
        let _ = writeln!(
            out,
            "{:<18} {:<8} {:>7} {:>8} {:>6} {:>6} {:>10} {:>9}",
            format!("liweb/{other}"),
            v["scenario"].as_str().unwrap_or("?"),
            v["clients"].as_u64().unwrap_or(0),
            cell(v, "per_sec"),
            cell(v, "p50_us"),
            cell(v, "p99_us"),
            cell(v, "cpu_ns_per_msg"),
            cell(v, "kib_per_conn"),
        );
    }
    out
}

async fn run(opts: Opts) -> Res<bool> {
    let limit = liweb_benches::raise_open_file_limit().unwrap_or(1024) as usize;
    let biggest = opts
        .fanout_sizes
        .iter()
        .copied()
        .chain([opts.echo_clients, opts.idle])
        .max()
        .unwrap_or(0);
    if biggest + SPARE_FDS > limit {
        return Err(format!(
            "{biggest} clients need more open files than the hard limit {limit} allows; \
             raise it first (ulimit -Hn {} as root)",
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
            let mut runs: Vec<Vec<Row>> = vec![Vec::new(); opts.servers.len()];
            for round in 1..=opts.repeat {
                for (i, &kind) in opts.servers.iter().enumerate() {
                    let started = Instant::now();
                    match measure(kind, scenario, size, &opts).await {
                        Ok(row) => {
                            let figures = match scenario {
                                Scenario::Idle => format!("{:.2} KiB/conn", row.kib_per_conn),
                                _ => format!(
                                    "{:.0}/s, p50 {} µs, p99 {} µs, server {} ns CPU/msg",
                                    row.per_sec, row.p50_us, row.p99_us, row.cpu_ns_per_msg
                                ),
                            };
                            eprintln!(
                                "{} {} {} (run {round}/{}): {}/{} in {:.2}s, {figures}",
                                kind.name(),
                                scenario.name(),
                                size,
                                opts.repeat,
                                row.delivered,
                                row.expected,
                                started.elapsed().as_secs_f64(),
                            );
                            ok &= row.complete();
                            runs[i].push(row);
                        }
                        Err(err) => {
                            eprintln!(
                                "{} {} {} (run {round}/{}): FAILED: {err}",
                                kind.name(),
                                scenario.name(),
                                size,
                                opts.repeat
                            );
                            ok = false;
                        }
                    }
                }
            }
            rows.extend(runs.iter().filter(|r| !r.is_empty()).map(|r| median_row(r)));
        }
    }
    print!("{}", table(&rows));
    let over_raw = ratios(&rows, "raw");
    let over_socketioxide = ratios(&rows, "socketioxide");
    print!("{}", ratio_table("raw", &over_raw));
    print!("{}", ratio_table("socketioxide", &over_socketioxide));
    let report = json!({
        "smoke": opts.smoke,
        "messages": opts.messages,
        "rounds": opts.rounds,
        "rate": opts.rate,
        "pad": opts.pad,
        "repeat": opts.repeat,
        "results": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
        "ratios_liweb_over_raw": over_raw,
        "ratios_liweb_over_socketioxide": over_socketioxide,
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
    let opts = match parse_args(std::env::args().skip(1)) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn defaults_run_the_whole_comparison() {
        let opts = parse_args(args(&[])).unwrap();
        assert_eq!(opts.servers, ServerKind::ALL);
        assert_eq!(opts.fanout_sizes, [100, 1000, 5000]);
        assert_eq!(opts.idle, 10_000);
        assert_eq!(opts.scenarios.len(), 3);
        assert_eq!(opts.repeat, 1);
    }

    #[test]
    fn server_lists() {
        let opts = parse_args(args(&["--server", "liweb,socketioxide"])).unwrap();
        assert_eq!(opts.servers, [ServerKind::Liweb, ServerKind::Socketioxide]);
        let opts = parse_args(args(&["--server", "both"])).unwrap();
        assert_eq!(opts.servers, [ServerKind::Liweb, ServerKind::Raw]);
        let opts = parse_args(args(&["--server", "raw,all"])).unwrap();
        assert_eq!(
            opts.servers,
            [ServerKind::Raw, ServerKind::Liweb, ServerKind::Socketioxide]
        );
        assert!(parse_args(args(&["--server", "nginx"])).is_err());
    }

    #[test]
    fn smoke_is_small_and_includes_every_server() {
        let opts = parse_args(args(&["--smoke"])).unwrap();
        assert_eq!(opts.servers, ServerKind::ALL);
        assert_eq!(opts.fanout_sizes, [20]);
        assert_eq!(opts.idle, 200);
        assert!(opts.messages <= 50 && opts.rounds <= 20 && opts.echo_clients <= 10);
    }

    #[test]
    fn median_row_takes_each_figure_on_its_own() {
        let row = |per_sec: f64, p99_us: u64, delivered: u64| Row {
            server: "liweb",
            scenario: "fanout",
            clients: 10,
            runs: 1,
            expected: 100,
            delivered,
            per_sec,
            p99_us,
            ..Row::default()
        };
        let median = median_row(&[row(3.0, 10, 100), row(1.0, 30, 90), row(2.0, 20, 100)]);
        assert_eq!(median.per_sec, 2.0);
        assert_eq!(median.p99_us, 20);
        assert_eq!(median.delivered, 90);
        assert_eq!(median.runs, 3);
        assert!(!median.complete());
    }

    #[test]
    fn ratios_pair_liweb_with_the_other_server() {
        let rows = [
            Row {
                server: "liweb",
                scenario: "idle",
                clients: 5,
                kib_per_conn: 10.0,
                ..Row::default()
            },
            Row {
                server: "socketioxide",
                scenario: "idle",
                clients: 5,
                kib_per_conn: 40.0,
                ..Row::default()
            },
        ];
        let over = ratios(&rows, "socketioxide");
        assert_eq!(over.len(), 1);
        assert_eq!(over[0]["kib_per_conn"], 0.25);
        assert!(ratios(&rows, "raw").is_empty());
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let sorted: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 0.50), 50);
        assert_eq!(percentile(&sorted, 0.99), 99);
        assert_eq!(percentile(&[], 0.5), 0);
    }
}
