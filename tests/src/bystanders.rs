//! Well-behaved clients that keep chatting while a test attacks the server:
//! the hostile-traffic tests (section K) prove with them that the server
//! kept serving and that nobody else lost a message.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use liweb::client::Incoming;
use tokio::{sync::watch, task::JoinHandle};

use crate::{RoomRef, Running, Target, TestClient, TestIn, TestOut, WAIT};

/// How often each bystander speaks.
const EVERY: Duration = Duration::from_millis(20);
/// How many messages each bystander sends at least.
const MIN_SENT: u64 = 3;

/// Two clients in one room, each sending a numbered message every 20 ms and
/// reading everything the room sends. Start them before the attack,
/// [`Bystanders::finish`] them after it.
#[derive(Debug)]
pub struct Bystanders {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<(Seen, TestClient)>>,
}

/// What the bystanders saw, from [`Bystanders::finish`].
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Messages sent by each bystander.
    pub sent: Vec<u64>,
    /// Messages each bystander received, from both (itself included).
    pub received: Vec<u64>,
    /// The 99th percentile of the time from sending a message to its
    /// sender reading its own echo.
    pub p99: Duration,
}

#[derive(Debug)]
struct Seen {
    sent: u64,
    /// For each speaker, the next number expected from it.
    next: [u64; 2],
    received: u64,
    /// When each of its own messages not yet echoed was sent.
    sent_at: VecDeque<Instant>,
    echo: Vec<Duration>,
}

impl Bystanders {
    /// Connects two bystanders (WebSocket, JSON) to `running`, joins both to
    /// `bystanders/lobby` and starts them talking.
    pub async fn start(running: &Running) -> Self {
        let mut clients = Vec::new();
        for _ in 0..2 {
            clients.push(running.client().await.0);
        }
        Self::talking(clients).await
    }

    /// As [`Bystanders::start`], on a server with authentication: each
    /// bystander first sends `__auth` with `payload`.
    pub async fn start_authenticated(running: &Running, payload: serde_json::Value) -> Self {
        let mut clients = Vec::new();
        for _ in 0..2 {
            let before = running.recorder.conns().len();
            let client = running.connect_with(liweb::CodecKind::Json).await;
            let auth = serde_json::json!({ "event": "__auth", "payload": payload });
            client
                .emit_raw(auth.to_string())
                .expect("a bystander could not authenticate");
            running.connected(before).await;
            clients.push(client);
        }
        Self::talking(clients).await
    }

    async fn talking(mut clients: Vec<TestClient>) -> Self {
        let room = RoomRef::new("bystanders", "lobby");
        let (stop, stopped) = watch::channel(false);
        for client in &mut clients {
            client.emit(TestIn::Join(room.clone())).unwrap();
            let joined = next_event(client).await;
            assert!(
                matches!(joined, TestOut::JoinOutcome(crate::JoinOutcome::Added)),
                "a bystander could not join: {joined:?}"
            );
        }
        let tasks = clients
            .into_iter()
            .enumerate()
            .map(|(me, client)| tokio::spawn(talk(me, client, room.clone(), stopped.clone())))
            .collect();
        Self { stop, tasks }
    }

    /// Stops the bystanders and checks that each received, in order and
    /// once, every message both sent; fails the test otherwise.
    pub async fn finish(self) -> Report {
        let _ = self.stop.send(true);
        let mut talked = Vec::new();
        for task in self.tasks {
            talked.push(
                tokio::time::timeout(WAIT * 2, task)
                    .await
                    .expect("a bystander did not finish")
                    .expect("a bystander panicked"),
            );
        }
        // Nobody speaks any more: each reads until it has the last message
        // of both, or fails after `WAIT`.
        let sent: Vec<u64> = talked.iter().map(|(seen, _)| seen.sent).collect();
        let mut seen = Vec::new();
        for (me, (mut mine, mut client)) in talked.into_iter().enumerate() {
            let draining = async {
                while mine.next.to_vec() != sent {
                    let event = next_event(&mut client).await;
                    record(me, &mut mine, event);
                }
            };
            if tokio::time::timeout(WAIT, draining).await.is_err() {
                panic!(
                    "bystander {me} missed messages: next expected from each speaker {:?}, sent {sent:?}",
                    mine.next
                );
            }
            seen.push(mine);
        }
        let mut echo: Vec<Duration> = seen.iter().flat_map(|seen| seen.echo.clone()).collect();
        echo.sort();
        assert!(!echo.is_empty(), "the bystanders exchanged nothing");
        let p99 = echo[(echo.len() * 99 / 100).min(echo.len() - 1)];
        Report {
            sent,
            received: seen.iter().map(|seen| seen.received).collect(),
            p99,
        }
    }
}

async fn next_event(client: &mut TestClient) -> TestOut {
    loop {
        match tokio::time::timeout(WAIT, client.recv())
            .await
            .expect("a bystander waited too long for the server")
        {
            Some(Incoming::Event(event)) => return event,
            Some(Incoming::Closed(reason)) => panic!("a bystander was closed: {reason:?}"),
            Some(_) => continue,
            None => panic!("a bystander's connection ended"),
        }
    }
}

/// Speaks every [`EVERY`] until told to stop, then reads until its own
/// messages have all come back.
async fn talk(
    me: usize,
    mut client: TestClient,
    room: RoomRef,
    mut stopped: watch::Receiver<bool>,
) -> (Seen, TestClient) {
    let mut seen = Seen {
        sent: 0,
        next: [0; 2],
        received: 0,
        sent_at: VecDeque::new(),
        echo: Vec::new(),
    };
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tokio::select! {
            // A few messages each before stopping, however short the attack.
            _ = stopped.changed(), if seen.sent >= MIN_SENT => break,
            _ = tick.tick() => {
                client
                    .emit(TestIn::RoomEmit {
                        room: room.clone(),
                        text: format!("{me}:{}", seen.sent),
                        target: Target::Everyone,
                    })
                    .expect("a bystander could not send");
                seen.sent_at.push_back(Instant::now());
                seen.sent += 1;
            }
            event = next_event(&mut client) => record(me, &mut seen, event),
        }
    }
    // Its own last message coming back proves the server still serves it;
    // `finish` then waits for the other one's.
    let deadline = Instant::now() + WAIT;
    while seen.next[me] < seen.sent {
        assert!(
            Instant::now() < deadline,
            "bystander {me} never got its own messages back"
        );
        let event = next_event(&mut client).await;
        record(me, &mut seen, event);
    }
    (seen, client)
}

fn record(me: usize, seen: &mut Seen, event: TestOut) {
    match event {
        TestOut::RoomMessage(text) => {
            let (speaker, number) = text
                .split_once(':')
                .and_then(|(speaker, n)| {
                    Some((speaker.parse::<usize>().ok()?, n.parse::<u64>().ok()?))
                })
                .unwrap_or_else(|| panic!("a bystander got a message it did not expect: {text}"));
            assert_eq!(
                number, seen.next[speaker],
                "bystander {me} got message {number} of speaker {speaker} out of order"
            );
            seen.next[speaker] += 1;
            seen.received += 1;
            if speaker == me
                && let Some(at) = seen.sent_at.pop_front()
            {
                seen.echo.push(at.elapsed());
            }
        }
        // The answer to each room emit.
        TestOut::Sent(_) => {}
        other => panic!("bystander {me} got an event it did not expect: {other:?}"),
    }
}
