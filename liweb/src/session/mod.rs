//! The task that runs one connection, whatever its transport: read,
//! dispatch in arrival order, write, keep the timers, tear down.

mod timers;
mod writer;

use std::{
    sync::{Arc, atomic::Ordering},
    task::Poll,
};

use futures_util::{
    FutureExt, Sink, Stream, StreamExt,
    future::{Fuse, FusedFuture},
};
use tokio::time::Instant;

use self::{
    timers::{RateLimit, Timers},
    writer::write_loop,
};
use crate::{
    auth::{AuthFailure, AuthReason},
    conn::{Conn, DisconnectReason, meta::ConnMeta},
    dispatch,
    event::Events,
    protocol::{CloseCode, ErrorCode},
    server::Server,
    transport::item::{Inbound, Outbound},
};

/// How many received frames may wait while a handler runs before the
/// connection stops reading (and TCP pushes back on the client).
const MAX_PENDING: usize = 32;
/// Runs a connection to its end: authenticates it when the server asks for
/// it, registers it, fires `on_connect`, reads and dispatches frames in
/// arrival order, writes the outbound queue in batches, keeps the heartbeat
/// and the timeouts, then unregisters it and fires `on_disconnect` once.
pub(crate) async fn run<In, Out, R, W>(
    server: Server<In, Out>,
    meta: ConnMeta,
    mut reader: R,
    writer: W,
) where
    In: Events,
    Out: Events,
    R: Stream<Item = Inbound> + Unpin + Send,
    W: Sink<Outbound> + Unpin + Send + 'static,
{
    let config = server.config();
    let auth = &server.inner.auth;
    let conn = Conn::<Out>::new(
        meta,
        config.max_queue_bytes,
        Arc::clone(&server.inner.budget),
        auth.is_some(),
    );
    // The writer runs inside this task, polled beside the reader and the
    // handler in flight: a task of its own would cost every connection a
    // second task cell for no gain in what it can do.
    let writer = write_loop(writer, Arc::clone(&conn.inner));
    tokio::pin!(writer);

    let started = Instant::now();
    let mut timers = Timers {
        close: None,
        auth: None,
        ping: config.ping_interval.map(|every| started + every),
        pong: None,
        last_activity: started,
    };
    if let Some(auth) = auth {
        timers.auth = Some(started + auth.timeout);
    }
    // Boxed: a future kept inline would take room in every connection's task
    // for its whole life, though it runs once.
    Box::pin(async {
        match auth {
            None => {
                server.register(&conn);
                server.fire_connect(&conn).await;
            }
            Some(_) if dispatch::auth::refused_as_throttled(&server, &conn).await => {}
            Some(auth) => {
                let checking = auth.check_request(conn.meta());
                if let Ok(Some(verdict)) = tokio::time::timeout(auth.timeout, checking).await {
                    dispatch::auth::finish(&server, &conn, verdict).await;
                }
            }
        }
    })
    .await;

    let codec = conn.meta().codec();
    let mut rate = config
        .max_events_per_second
        .map(|limit| RateLimit::new(limit, config.event_burst.unwrap_or(limit), started));
    // A shutdown closes every tracked connection; one that is tracked after
    // it began closes itself.
    server.inner.live.track(conn.id(), &conn.inner);
    if server.is_shutting_down() {
        conn.close(CloseCode::GoingAway, crate::server::config::GOING_AWAY);
    }
    let mut reason: Option<DisconnectReason> = None;
    let mut reading = true;
    let mut writer_done = false;
    let mut pending = std::collections::VecDeque::new();
    let inflight = Fuse::terminated();
    tokio::pin!(inflight);
    let timer = tokio::time::sleep_until(timers.next(config.idle_timeout).unwrap_or(started));
    tokio::pin!(timer);

    loop {
        // Once closing, idleness no longer matters: its deadline, by then in
        // the past, would fire the timer on every turn of this biased loop,
        // spinning and never reading the peer's half of the close handshake
        // (the idle-timeout close took the whole close timeout).
        let idle = config.idle_timeout.filter(|_| !conn.is_closed());
        let next_wake = timers.next(idle);
        if let Some(at) = next_wake
            && timer.deadline() != at
        {
            timer.as_mut().reset(at);
        }
        tokio::select! {
            biased;
            // Atomics only: this is polled on every wake-up of the task.
            () = std::future::poll_fn(|cx| {
                conn.inner.close_requested.register(cx.waker());
                if conn.is_closed() { Poll::Ready(()) } else { Poll::Pending }
            }), if timers.close.is_none() => {
                // A shutdown's deadline bounds the close handshake too.
                let at = Instant::now() + config.close_timeout;
                timers.close = Some(server.inner.shutdown_deadline.get().map_or(at, |&end| end.min(at)));
            }
            () = &mut timer, if next_wake.is_some() => {
                let now = Instant::now();
                if timers.close.is_some_and(|at| now >= at) {
                    break;
                }
                if timers.auth.is_some_and(|at| now >= at) {
                    timers.auth = None;
                    if conn.inner.is_auth_pending() {
                        Box::pin(dispatch::auth::fail(&server, &conn, AuthFailure { reason: AuthReason::Timeout, detail: None })).await;
                    }
                }
                if timers.pong.is_some_and(|at| now >= at) {
                    // The peer is gone or stuck; do not wait for a close handshake.
                    server.inner.stats.ping_timeouts.fetch_add(1, Ordering::Relaxed);
                    conn.close(CloseCode::PingTimeout, "ping timeout");
                    break;
                }
                if config.idle_timeout.is_some_and(|idle| now >= timers.last_activity + idle) && !conn.is_closed() {
                    server.inner.stats.idle_timeouts.fetch_add(1, Ordering::Relaxed);
                    conn.close(CloseCode::IdleTimeout, "idle timeout");
                }
                if let (Some(at), Some(every)) = (timers.ping, config.ping_interval)
                    && now >= at
                {
                    conn.inner.queue.push(Outbound::Ping);
                    timers.pong.get_or_insert(now + config.ping_timeout);
                    timers.ping = Some(now + every);
                }
            }
            _ = &mut writer, if !writer_done => {
                writer_done = true;
                // The writer ends after sending a close frame or on a write
                // error; without a close in progress there is nothing to wait for.
                if !conn.is_closed() {
                    reason.get_or_insert(DisconnectReason::TransportError("write failed".into()));
                    break;
                }
                // After a protocol error nothing more is read, so the peer's
                // half of the close handshake cannot arrive: done.
                if !reading {
                    break;
                }
            }
            () = &mut inflight, if !inflight.is_terminated() => {
                if let Some(arrival) = pending.pop_front() {
                    inflight.set(dispatch::dispatch(&server, &conn, arrival).fuse());
                }
            }
            item = reader.next(), if reading && pending.len() < MAX_PENDING => match item {
                Some(Inbound::Frame(frame)) => {
                    let frame = frame.0;
                    let now = Instant::now();
                    timers.last_activity = now;
                    timers.pong = None;
                    if let Some(rate) = &mut rate
                        && !rate.take(now)
                    {
                        server.inner.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                        if rate.first_refusal() {
                            tracing::info!(conn = %conn.id(), "over the event rate limit: events are dropped while it lasts");
                        }
                        conn.send_error(ErrorCode::RateLimited, "too many events; this one was dropped".to_owned(), None);
                        continue;
                    }
                    // The envelope is read once, here: a reply is handed to
                    // its request at once, not queued behind the handler that
                    // may be waiting for it.
                    let Some(arrival) = dispatch::arrive(&conn, codec, frame) else {
                        continue;
                    };
                    if inflight.is_terminated() {
                        inflight.set(dispatch::dispatch(&server, &conn, arrival).fuse());
                    } else {
                        pending.push_back(arrival);
                    }
                }
                Some(Inbound::Pong) => timers.pong = None,
                Some(Inbound::Close(frame)) => {
                    reason.get_or_insert(DisconnectReason::ClientClosed(frame));
                    // Keep reading: the transport sends its half of the close
                    // handshake on the next read, and then the stream ends.
                }
                Some(Inbound::Error(code, message)) => {
                    tracing::debug!(conn = %conn.id(), %message, "transport error");
                    // A policy close: the backlog is dropped, the close goes first.
                    conn.inner.close_now(code, &message);
                    reading = false;
                }
                Some(Inbound::Reset(message)) => {
                    reason.get_or_insert(DisconnectReason::TransportError(message));
                    break;
                }
                None => {
                    reason.get_or_insert(DisconnectReason::TransportError("connection reset".into()));
                    break;
                }
            },
        }
    }

    // The connection has ended: a strategy still checking `__auth` must not
    // open it now, or the application would see a connect (and a
    // disconnect) of a client that left while authenticating (A8). Settled
    // quietly, so no `on_auth_error` either.
    conn.inner.settle_auth(false);

    // Frames that arrived before the end are still handled, in order. (A
    // finished `Fuse` stays pending forever, so only await an unfinished one.)
    if !inflight.is_terminated() {
        inflight.await;
    }
    if !pending.is_empty() {
        // Boxed for the same reason as the start.
        Box::pin(async {
            while let Some(arrival) = pending.pop_front() {
                dispatch::dispatch(&server, &conn, arrival).await;
            }
        })
        .await;
    }

    server.inner.live.untrack(conn.id());
    // Emits after this point fail with `Closed` instead of queueing forever.
    conn.inner.closing.store(true, Ordering::Release);
    // What the writer held is never sent: its bytes leave the server's total.
    conn.inner.queue.release();
    conn.inner.requests.clear();
    // A connection that never authenticated was never seen by the
    // application: no room, no count, no `on_disconnect`.
    let seen = conn.inner.is_open();
    if conn.inner.close_code.get() == Some(&CloseCode::SlowConsumer) {
        server
            .inner
            .stats
            .slow_consumers
            .fetch_add(1, Ordering::Relaxed);
    }
    server.unregister(conn.id());
    let reason = match conn.inner.close_code.get() {
        Some(&code) => DisconnectReason::ServerClosed(code),
        None => {
            reason.unwrap_or_else(|| DisconnectReason::TransportError("connection ended".into()))
        }
    };
    Box::pin(async {
        server.inner.rooms.leave_all(&conn).await;
        // Before the hook, so `Conn::closed` never lags `on_disconnect`.
        conn.inner.end(reason.clone());
        if seen {
            server.fire_disconnect(&conn, reason).await;
        }
    })
    .await;
}
