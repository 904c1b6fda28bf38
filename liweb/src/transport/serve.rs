//! Serving an axum router on a TCP listener, hardened against clients that
//! hold sockets open: [`serve`].
//!
//! `axum::serve` gives hyper no timer, so a client that sends its request
//! one byte at a time keeps its socket for as long as it likes, and it
//! sleeps a whole second whenever `accept` fails. This module drives hyper's
//! HTTP/1 connection itself, with hyper's own header-read timeout and header
//! limits, `TCP_NODELAY` on every socket, a cap on open sockets, and an
//! accept loop that waits for a descriptor to free instead of spinning.

use std::{
    fmt,
    future::{Future, IntoFuture, Pending, pending},
    io,
    net::SocketAddr,
    pin::{Pin, pin},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{Router, body::Body, extract::ConnectInfo};
use http::{Request, Response, StatusCode, header};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{Notify, OwnedSemaphorePermit, Semaphore, watch},
};
use tower_service::Service;

use crate::{
    transport::accept::{Backoff, is_connection_error},
    util::BoxFuture,
};

/// The default of [`Serve::header_read_timeout`].
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The default of [`Serve::max_header_bytes`].
const MAX_HEADER_BYTES: usize = 16 * 1024;
/// The default of [`Serve::max_headers`] (hyper's own).
const MAX_HEADERS: usize = 100;
/// The default of [`Serve::max_connections`].
const MAX_CONNECTIONS: usize = 10_000;

/// Serves `router` on `listener`: HTTP/1 with WebSocket upgrades, hardened
/// for a public server. Await it (it runs until the shutdown signal, if
/// any), after changing any of its settings:
///
/// ```no_run
/// # use liweb::prelude::*;
/// # use std::time::Duration;
/// # #[derive(Events)] enum In { Ping }
/// # #[derive(Events)] enum Out { Pong }
/// # async fn ctrl_c() {}
/// # async fn run(server: Server<In, Out>) -> std::io::Result<()> {
/// let app = axum::Router::new().route("/ws", server.ws_route());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
/// let stopping = server.clone();
/// liweb::serve(listener, app)
///     .header_read_timeout(Duration::from_secs(5))
///     .with_graceful_shutdown(async move {
///         ctrl_c().await;
///         stopping.shutdown(Duration::from_secs(5)).await;
///     })
///     .await
/// # }
/// ```
///
/// What it does that `axum::serve(listener, app)` does not:
///
/// | setting | default | when it is reached |
/// |---|---|---|
/// | [`header_read_timeout`](Serve::header_read_timeout): from the first byte a request may start with to the end of its headers, for every request of a connection | 10 s | the socket is closed (counted in [`ServeStats::header_timeouts`]) |
/// | [`max_header_bytes`](Serve::max_header_bytes): request line and headers | 16 KiB | `431 Request Header Fields Too Large`, then closed |
/// | [`max_headers`](Serve::max_headers) | 100 | `431`, then closed |
/// | [`max_connections`](Serve::max_connections): sockets open at once, HTTP and the WebSocket connections they upgraded to | 10,000 | the socket is served one `503 Service Unavailable` and closed ([`ServeStats::refused_full`]) |
///
/// Every accepted socket gets `TCP_NODELAY`, so small frames are not held
/// back by Nagle's algorithm waiting for the peer's delayed ACK. The
/// remote address reaches [`ConnMeta::remote_addr`](crate::ConnMeta::remote_addr)
/// as axum's `ConnectInfo<SocketAddr>` in the request's extensions (what
/// `into_make_service_with_connect_info::<SocketAddr>()` does for
/// `axum::serve`).
///
/// When `accept` fails because the process or the system ran out of file
/// descriptors (`EMFILE`, `ENFILE`), the error is logged (at most a line
/// per 5 s) and the loop waits: until a socket of this server closes, or
/// for a backoff of 5 ms doubling up to 250 ms (a descriptor freed
/// elsewhere). The client waiting in the listen queue is accepted as soon
/// as a descriptor is free; the recovery is logged with the number of
/// failed attempts. The attempts are counted in
/// [`ServeStats::accept_errors`].
///
/// [`with_graceful_shutdown`](Serve::with_graceful_shutdown) stops
/// accepting when its signal completes, lets the HTTP requests in progress
/// finish, and returns. WebSocket connections belong to the liweb
/// [`Server`](crate::Server): end them with
/// [`Server::shutdown`](crate::Server::shutdown), for example inside the
/// signal as above (upgrades are refused with `503` meanwhile).
pub fn serve(listener: TcpListener, router: Router) -> Serve {
    Serve {
        listener,
        router,
        settings: Settings {
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_header_bytes: MAX_HEADER_BYTES,
            max_headers: MAX_HEADERS,
            max_connections: MAX_CONNECTIONS,
            tap: None,
        },
        signal: pending(),
        shared: Arc::default(),
    }
}

/// A server being set up by [`serve`]; await it to run it.
#[must_use = "a `Serve` does nothing until it is awaited"]
pub struct Serve<F = Pending<()>> {
    listener: TcpListener,
    router: Router,
    settings: Settings,
    signal: F,
    shared: Arc<Shared>,
}

type Tap = Arc<dyn Fn(&TcpStream) + Send + Sync>;

#[derive(Clone)]
struct Settings {
    header_read_timeout: Duration,
    max_header_bytes: usize,
    max_headers: usize,
    max_connections: usize,
    tap: Option<Tap>,
}

impl<F> fmt::Debug for Serve<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let settings = &self.settings;
        f.debug_struct("Serve")
            .field("listener", &self.listener)
            .field("header_read_timeout", &settings.header_read_timeout)
            .field("max_header_bytes", &settings.max_header_bytes)
            .field("max_headers", &settings.max_headers)
            .field("max_connections", &settings.max_connections)
            .finish_non_exhaustive()
    }
}

impl<F> Serve<F> {
    /// How long a client has to send a request's line and headers, from
    /// when the server starts reading it (the connection's start, or the
    /// end of its previous response); past it the socket is closed. Default
    /// 10 s. This is what closes a slowloris: a client that sends its
    /// upgrade request one byte at a time.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.settings.header_read_timeout = timeout;
        self
    }

    /// The largest request line and headers, in bytes; a larger request
    /// gets `431` and the socket is closed. Default 16 KiB.
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        self.settings.max_header_bytes = bytes;
        self
    }

    /// The most headers a request may carry; more get `431` and the socket
    /// is closed. Default 100.
    pub fn max_headers(mut self, headers: usize) -> Self {
        self.settings.max_headers = headers;
        self
    }

    /// The most sockets open at once: HTTP connections and the WebSocket
    /// connections they upgraded to. One more is served a
    /// `503 Service Unavailable` and closed (it still holds a descriptor
    /// until then, at most the header-read timeout). Default 10,000.
    ///
    /// The liweb server's own
    /// [`Config::max_connections`](crate::Config::max_connections) counts
    /// its connections of every transport and refuses upgrades past it;
    /// this one protects the process's descriptors, whatever the router.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.settings.max_connections = connections.clamp(1, Semaphore::MAX_PERMITS);
        self
    }

    /// Runs `tap` on every accepted socket, after liweb's own settings
    /// (`TCP_NODELAY`) and before any byte is read: to set a socket option
    /// of your own, or to look at one.
    pub fn tap_io(mut self, tap: impl Fn(&TcpStream) + Send + Sync + 'static) -> Self {
        self.settings.tap = Some(Arc::new(tap));
        self
    }

    /// Stops accepting when `signal` completes, lets the HTTP requests in
    /// progress finish, and then completes. See [`serve`] for the
    /// WebSocket connections.
    pub fn with_graceful_shutdown<G>(self, signal: G) -> Serve<G>
    where
        G: Future<Output = ()> + Send + 'static,
    {
        Serve {
            listener: self.listener,
            router: self.router,
            settings: self.settings,
            signal,
            shared: self.shared,
        }
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A handle that reads this server's counters while it runs.
    pub fn handle(&self) -> ServeHandle {
        ServeHandle {
            shared: self.shared.clone(),
        }
    }
}

impl<F> IntoFuture for Serve<F>
where
    F: Future<Output = ()> + Send + 'static,
{
    type Output = io::Result<()>;
    type IntoFuture = BoxFuture<'static, io::Result<()>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            self.run().await;
            Ok(())
        })
    }
}

/// Reads the counters of a [`serve`] while it runs, from [`Serve::handle`].
#[derive(Debug, Clone)]
pub struct ServeHandle {
    shared: Arc<Shared>,
}

impl ServeHandle {
    /// A snapshot of the counters.
    pub fn stats(&self) -> ServeStats {
        let counters = &self.shared;
        ServeStats {
            open: counters.open.load(Ordering::Relaxed),
            accepted: counters.accepted.load(Ordering::Relaxed),
            refused_full: counters.refused_full.load(Ordering::Relaxed),
            header_timeouts: counters.header_timeouts.load(Ordering::Relaxed),
            accept_errors: counters.accept_errors.load(Ordering::Relaxed),
        }
    }
}

/// What a [`serve`] has done, from [`ServeHandle::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServeStats {
    /// Sockets open now: HTTP connections and the WebSocket connections
    /// they upgraded to.
    pub open: usize,
    /// Sockets accepted.
    pub accepted: u64,
    /// Sockets served `503` at [`Serve::max_connections`].
    pub refused_full: u64,
    /// Sockets closed because their request's headers did not arrive
    /// within [`Serve::header_read_timeout`].
    pub header_timeouts: u64,
    /// Failed `accept` calls (out of descriptors, or another resource),
    /// each followed by a wait; connections the peer aborted before they
    /// were accepted are not counted.
    pub accept_errors: u64,
}

/// The counters, and the signal that a socket of this server closed.
#[derive(Debug, Default)]
struct Shared {
    open: AtomicUsize,
    accepted: AtomicU64,
    refused_full: AtomicU64,
    header_timeouts: AtomicU64,
    accept_errors: AtomicU64,
    /// Whether the refusals at the cap have been logged since the last
    /// socket the cap let in: one line per burst.
    full_logged: AtomicBool,
    closed: Notify,
}

impl<F> Serve<F>
where
    F: Future<Output = ()> + Send + 'static,
{
    async fn run(self) {
        let Self {
            listener,
            router,
            settings,
            signal,
            shared,
        } = self;
        let permits = Arc::new(Semaphore::new(settings.max_connections));
        // Connection tasks watch `stop`; each holds a `done` receiver, and
        // the sender's `closed()` completes when the last one is dropped.
        let (stop, stopped) = watch::channel(false);
        let (done, done_rx) = watch::channel(());
        let mut signal = pin!(signal);
        let mut backoff = Backoff::default();
        loop {
            let accepted = tokio::select! {
                biased;
                () = &mut signal => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, remote) = match accepted {
                Ok(accepted) => accepted,
                // The peer gave up while waiting in the queue; nothing to wait for.
                Err(err) if is_connection_error(&err) => continue,
                Err(err) => {
                    shared.accept_errors.fetch_add(1, Ordering::Relaxed);
                    let wait = backoff.failed(&err);
                    tokio::select! {
                        biased;
                        () = &mut signal => break,
                        () = shared.closed.notified() => {}
                        () = tokio::time::sleep(wait) => {}
                    }
                    continue;
                }
            };
            backoff.recovered();
            let connection = Connection {
                router: router.clone(),
                settings: settings.clone(),
                shared: shared.clone(),
                remote,
            };
            let permit = permits.clone().try_acquire_owned().ok();
            tokio::spawn(connection.run(stream, permit, stopped.clone(), done_rx.clone()));
        }
        drop(listener);
        tracing::debug!(
            in_progress = done.receiver_count() - 1,
            "shutdown: no longer accepting; waiting for the HTTP connections in progress"
        );
        stop.send_replace(true);
        drop(done_rx);
        done.closed().await;
    }
}

/// One accepted socket and what its task needs.
struct Connection {
    router: Router,
    settings: Settings,
    shared: Arc<Shared>,
    remote: SocketAddr,
}

impl Connection {
    async fn run(
        self,
        stream: TcpStream,
        permit: Option<OwnedSemaphorePermit>,
        mut stop: watch::Receiver<bool>,
        done: watch::Receiver<()>,
    ) {
        let Self {
            router,
            settings,
            shared,
            remote,
        } = self;
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%err, %remote, "could not set TCP_NODELAY");
        }
        if let Some(tap) = &settings.tap {
            tap(&stream);
        }
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        let full = permit.is_none();
        if full {
            shared.refused_full.fetch_add(1, Ordering::Relaxed);
            if !shared.full_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    max_connections = settings.max_connections,
                    "connection limit reached: answering 503 until a socket closes"
                );
            }
        } else {
            shared.full_logged.store(false, Ordering::Relaxed);
        }
        let io = TokioIo::new(Counted::new(stream, permit, shared.clone()));
        let service = service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(remote));
            let mut router = router.clone();
            async move {
                if full {
                    Ok(unavailable())
                } else {
                    router.call(request).await
                }
            }
        });
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(settings.header_read_timeout)
            .max_header_size(settings.max_header_bytes)
            .max_headers(settings.max_headers)
            .keep_alive(!full);
        let mut connection = pin!(builder.serve_connection(io, service).with_upgrades());
        let stopping = async {
            // The `Serve` future was dropped without a signal: keep serving,
            // as a spawned connection of `axum::serve` does.
            if stop.wait_for(|stop| *stop).await.is_err() {
                pending::<()>().await;
            }
        };
        let result = tokio::select! {
            result = connection.as_mut() => result,
            () = stopping => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        match result {
            Ok(()) => {}
            Err(err) if err.is_timeout() => {
                shared.header_timeouts.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%remote, "closed: request headers not read in time");
            }
            Err(err) => tracing::debug!(%err, %remote, "connection ended with an error"),
        }
        drop(done);
    }
}

/// The answer to every request of a socket over the connection cap.
fn unavailable() -> Response<Body> {
    let mut response = Response::new(Body::from("too many connections"));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    response
}

/// An accepted socket that gives back its place under the cap and wakes a
/// waiting accept loop when it is dropped, including after hyper handed it
/// to a WebSocket upgrade.
struct Counted {
    // Fields drop in order: the descriptor is closed before the place is
    // given back and the accept loop woken, so its next accept can succeed.
    stream: TcpStream,
    _permit: Option<OwnedSemaphorePermit>,
    _release: Release,
}

impl Counted {
    fn new(stream: TcpStream, permit: Option<OwnedSemaphorePermit>, shared: Arc<Shared>) -> Self {
        shared.open.fetch_add(1, Ordering::Relaxed);
        Self {
            stream,
            _permit: permit,
            _release: Release(shared),
        }
    }
}

struct Release(Arc<Shared>);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
        self.0.closed.notify_one();
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
