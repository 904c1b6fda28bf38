//! The typed Rust client (feature `client`).
//!
//! A [`Client<Rx, Tx>`] receives the server's `Out` events (`Rx`) and sends
//! the server's `In` events (`Tx`), so it is written with the server's types
//! swapped: a server `Server<ChatIn, ChatOut>` has clients
//! `Client<ChatOut, ChatIn>`. Emitting a `ChatOut` or listening for a
//! `ChatIn` event does not compile.
//!
//! ```no_run
//! # use liweb::prelude::*;
//! # use liweb::client::{Client, Incoming};
//! # #[derive(Events)] enum ChatIn { Say(String) }
//! # #[derive(Events)] enum ChatOut { Said(String) }
//! # async fn run() -> Result<(), liweb::client::ClientError> {
//! let mut client = Client::<ChatOut, ChatIn>::connect("ws://127.0.0.1:3001/ws").await?;
//! client.emit(ChatIn::Say("hello".into()))?;
//! while let Some(incoming) = client.recv().await {
//!     match incoming {
//!         Incoming::Event(ChatOut::Said(text)) => println!("{text}"),
//!         Incoming::Error(error) => eprintln!("server says: {}", error.message),
//!         Incoming::Closed(_) | Incoming::Malformed { .. } => break,
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Requests go both ways: [`Client::request`] sends an event with an ack id
//! and waits for the server's reply; a server request arrives as
//! [`Incoming::Request`] with a [`Responder`], or is answered by a function
//! given to [`Client::on_request`]. [`Client::authenticate`] sends `__auth`
//! and waits for the server's verdict.
//!
//! [`Client::connect`] speaks JSON. [`Client::builder`] picks another codec
//! (features `msgpack`, `bincode`): it asks the server for it through the
//! WebSocket subprotocol and then encodes and decodes everything in it.
//!
//! ```no_run
//! # use liweb::prelude::*;
//! # use liweb::client::Client;
//! # #[derive(Events)] enum ChatIn { Say(String) }
//! # #[derive(Events)] enum ChatOut { Said(String) }
//! # async fn run() -> Result<(), liweb::client::ClientError> {
//! let client = Client::<ChatOut, ChatIn>::builder("ws://127.0.0.1:3001/ws")
//!     .codec(liweb::CodecKind::Json)
//!     .connect()
//!     .await?;
//! # Ok(()) }
//! ```

//! The client's files: `mod.rs` the handles, `task.rs` the task that runs
//! the connection and reads what arrives, `ws.rs` and `tcp.rs` the two
//! transports, each a `Stream` of the [`Outbound`] items a server sends and
//! a `Sink` of the [`Inbound`] items a server reads — the very items the
//! server's own transports exchange with it.

mod task;
#[cfg(feature = "tcp")]
mod tcp;
mod ws;

use std::{
    collections::HashMap,
    fmt,
    future::{Future, IntoFuture},
    marker::PhantomData,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use futures_util::{Sink, Stream};
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

use crate::{
    codec::{CodecKind, Frame, Input, RawPayload},
    error::{DecodeError, EncodeError},
    event::{EventKey, Events, PayloadDecoder},
    protocol::{ACK_EVENT, AUTH_EVENT, CloseCode, ErrorCode, ErrorPayload},
    transport::item::{Inbound, InboundFrame, Outbound},
};

/// What can go wrong with a client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The WebSocket handshake or transport failed.
    #[error("the websocket connection failed")]
    WebSocket(#[from] tungstenite::Error),
    /// The connection is closed; nothing was sent.
    #[error("the connection is closed")]
    Closed,
    /// The event could not be serialized.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// No reply within the timeout.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The TCP connection failed (feature `tcp`).
    #[error("the tcp connection failed")]
    Io(#[from] std::io::Error),
    /// The server refused the TCP connection with this close code and
    /// reason (feature `tcp`): shutting down, full, an unsupported codec,
    /// or the application's upgrade hook.
    #[error("the server refused the connection ({code}): {reason}", code = .0.as_u16(), reason = .1)]
    Refused(CloseCode, String),
    /// The server answered a request with an error reply.
    #[error("the server replied with an error: {}", .0.message)]
    Rejected(ErrorPayload),
    /// The server refused authentication; the `auth:error` reason.
    #[error("authentication refused: {0}")]
    AuthRejected(String),
    /// A reply could not be decoded as the expected type.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// One thing the server sent.
#[derive(Debug)]
#[non_exhaustive]
pub enum Incoming<Rx> {
    /// An event of the server's `Out` enum.
    Event(Rx),
    /// The server's `error` event about something this client sent.
    Error(ErrorPayload),
    /// A frame this client could not decode (an unknown event, a bad payload).
    Malformed {
        /// The event name, when the envelope could be read.
        event: Option<String>,
        /// Why it could not be decoded.
        error: DecodeError,
    },
    /// A request from the server: answer it with the [`Responder`] (or it
    /// times out on the server). Requests of events with an
    /// [`Client::on_request`] function are answered by it instead.
    Request(Rx, Responder),
    /// `auth:error` the client did not wait for with
    /// [`Client::authenticate`], with its reason (`not authenticated`, `auth timeout`, ...).
    AuthError(String),
    /// The connection ended; the server's close code and reason, if it sent a
    /// close frame. Always the last item.
    Closed(Option<(CloseCode, String)>),
}

/// Answers one server request; see [`Incoming::Request`].
#[derive(Debug)]
pub struct Responder {
    id: u64,
    codec: CodecKind,
    commands: mpsc::UnboundedSender<Inbound>,
}

impl Responder {
    /// Replies with `value`.
    pub fn reply<T: Serialize + ?Sized>(self, value: &T) -> Result<(), ClientError> {
        let frame = self.codec.encode_parts(ACK_EVENT, Some(self.id), value)?;
        send(&self.commands, frame)
    }

    /// Replies with an error carrying `message`.
    pub fn reply_error(self, message: impl Into<String>) -> Result<(), ClientError> {
        let error = ErrorPayload {
            code: ErrorCode::HandlerFailed,
            message: message.into(),
            event: None,
        };
        let frame = self.codec.encode_error_reply(self.id, &error)?;
        send(&self.commands, frame)
    }
}

/// Queues one encoded message for the client's task.
fn send(commands: &mpsc::UnboundedSender<Inbound>, frame: Frame) -> Result<(), ClientError> {
    let item = Inbound::Frame(InboundFrame::from_frame(frame));
    commands.send(item).map_err(|_| ClientError::Closed)
}

type Listener = Box<dyn Fn(RawPayload<'_>) -> Result<(), DecodeError> + Send + Sync>;
/// Answers a server request from its payload: the reply frame, or why not.
type RequestFn = Box<dyn Fn(RawPayload<'_>, u64) -> Result<Frame, ClientError> + Send + Sync>;
/// Takes the reply to one of this client's requests.
type Waiter = Box<dyn for<'a> FnOnce(Result<RawPayload<'a>, ErrorPayload>) + Send>;
/// Takes the verdict of `__auth`: the whole `auth:success` frame, decoded
/// by the waiter as its user type, or the reason.
type AuthWaiter = oneshot::Sender<Result<Bytes, String>>;

/// What the client's task shares with the handles.
#[derive(Default)]
struct Shared {
    listeners: Mutex<HashMap<usize, Vec<Listener>>>,
    responders: Mutex<HashMap<usize, RequestFn>>,
    waiters: Mutex<HashMap<u64, Waiter>>,
    auth: Mutex<Option<AuthWaiter>>,
    next_id: AtomicU64,
    codec: CodecKind,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A typed WebSocket client of a liweb server; see the [module docs](self).
pub struct Client<Rx, Tx> {
    commands: mpsc::UnboundedSender<Inbound>,
    incoming: mpsc::UnboundedReceiver<Incoming<Rx>>,
    shared: Arc<Shared>,
    _tx: PhantomData<fn(Tx)>,
}

impl<Rx, Tx> fmt::Debug for Client<Rx, Tx> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("open", &!self.commands.is_closed())
            .finish_non_exhaustive()
    }
}

/// Connects a [`Client`] with a chosen codec; made by [`Client::builder`].
#[must_use = "a builder does nothing until `connect` is awaited"]
pub struct ClientBuilder<Rx, Tx> {
    request: Result<tungstenite::handshake::client::Request, tungstenite::Error>,
    codec: Option<CodecKind>,
    _types: PhantomData<fn(Rx, Tx)>,
}

impl<Rx, Tx> fmt::Debug for ClientBuilder<Rx, Tx> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

impl<Rx: Events, Tx: Events> ClientBuilder<Rx, Tx> {
    /// The codec to speak. It is asked for through the
    /// `Sec-WebSocket-Protocol` header (`liweb.json`, `liweb.msgpack`,
    /// `liweb.bincode`); a server that does not support it refuses the
    /// upgrade. Without a codec the client speaks JSON and asks for none.
    pub fn codec(mut self, codec: CodecKind) -> Self {
        self.codec = Some(codec);
        self
    }

    /// Opens the connection.
    pub async fn connect(self) -> Result<Client<Rx, Tx>, ClientError> {
        let mut request = self.request?;
        if let Some(codec) = self.codec {
            request.headers_mut().insert(
                http::header::SEC_WEBSOCKET_PROTOCOL,
                http::HeaderValue::from_static(codec.subprotocol()),
            );
        }
        // tungstenite fails the handshake when the server does not answer
        // with the subprotocol asked for.
        Client::open(request, self.codec.unwrap_or_default()).await
    }
}

impl<Rx: Events, Tx: Events> Client<Rx, Tx> {
    /// Connects to a liweb WebSocket URL such as `ws://127.0.0.1:3001/ws`,
    /// speaking JSON.
    pub async fn connect(url: &str) -> Result<Self, ClientError> {
        Self::connect_request(url).await
    }

    /// Connects with a request built by hand (extra headers, cookies):
    /// anything `tokio-tungstenite` accepts as a client request. Speaks
    /// JSON; see [`Client::builder`] for the other codecs.
    pub async fn connect_request(
        request: impl IntoClientRequest + Unpin,
    ) -> Result<Self, ClientError> {
        Self::open(request, CodecKind::Json).await
    }

    /// Starts a connection whose codec (or request) is chosen before it
    /// opens: `Client::builder(url).codec(CodecKind::MessagePack).connect().await`.
    pub fn builder(request: impl IntoClientRequest) -> ClientBuilder<Rx, Tx> {
        ClientBuilder {
            request: request.into_client_request(),
            codec: None,
            _types: PhantomData,
        }
    }

    /// The codec this client speaks.
    pub fn codec(&self) -> CodecKind {
        self.shared.codec
    }

    async fn open(
        request: impl IntoClientRequest + Unpin,
        codec: CodecKind,
    ) -> Result<Self, ClientError> {
        let request = request.into_client_request()?;
        #[cfg(feature = "tcp")]
        if request.uri().scheme_str() == Some("tcp") {
            let socket = tcp::connect(request.uri(), codec).await?;
            return Ok(Self::start(socket, codec));
        }
        let (socket, _response) = tokio_tungstenite::connect_async(request).await?;
        Ok(Self::start(ws::Socket::new(socket), codec))
    }

    /// Starts the client's task on an open connection: a stream of what the
    /// server sends and a sink of what it reads, whatever the transport.
    fn start<S>(socket: S, codec: CodecKind) -> Self
    where
        S: Stream<Item = Outbound> + Sink<Inbound> + Unpin + Send + 'static,
    {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (incoming_tx, incoming) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            next_id: AtomicU64::new(1),
            codec,
            ..Shared::default()
        });
        tokio::spawn(task::run::<Rx, S>(
            socket,
            command_rx,
            // Only the handles keep the command channel open; the task's
            // own sender (for responders) must not, or dropping the client
            // would never close the connection.
            commands.downgrade(),
            incoming_tx,
            Arc::clone(&shared),
        ));
        Self {
            commands,
            incoming,
            shared,
            _tx: PhantomData,
        }
    }

    /// Sends `__auth` with `credentials` and waits (up to 10 s) for the
    /// server's verdict: the user from `auth:success`, decoded as `U`, or
    /// [`ClientError::AuthRejected`] with the `auth:error` reason.
    pub async fn authenticate<U: DeserializeOwned>(
        &self,
        credentials: &impl Serialize,
    ) -> Result<U, ClientError> {
        let (tx, rx) = oneshot::channel();
        *lock(&self.shared.auth) = Some(tx);
        let codec = self.shared.codec;
        let frame = codec.encode_parts(AUTH_EVENT, None, credentials)?;
        send(&self.commands, frame)?;
        let timeout = Duration::from_secs(10);
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(frame))) => {
                let success: AuthSuccess<U> = codec
                    .decode_frame(Input::Binary(&frame))?
                    .payload
                    .decode()?;
                Ok(success.user)
            }
            Ok(Ok(Err(reason))) => Err(ClientError::AuthRejected(reason)),
            Ok(Err(_closed)) => Err(ClientError::Closed),
            Err(_elapsed) => Err(ClientError::Timeout(timeout)),
        }
    }

    /// Sends `event` as a request and waits for the server's reply, decoded
    /// as `R` (the handler's return value): `client.request(ev).timeout(d).await`.
    pub fn request<R>(&self, event: Tx) -> ClientRequest<R> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = self.shared.codec.encode_parts(
            event.name(),
            Some(id),
            &crate::event::PayloadOf(&event),
        );
        ClientRequest {
            id,
            frame,
            commands: self.commands.clone(),
            shared: Arc::clone(&self.shared),
            timeout: crate::conn::request::DEFAULT_REQUEST_TIMEOUT,
            _reply: PhantomData,
        }
    }

    /// Answers the server's requests of event `K` with `respond`'s return
    /// value. They are then not queued for [`Client::recv`].
    pub fn on_request<K, R, F>(&self, respond: F)
    where
        K: EventKey<Events = Rx>,
        R: Serialize,
        F: Fn(K::Payload) -> R + Send + Sync + 'static,
    {
        let codec = self.shared.codec;
        let respond: RequestFn = Box::new(move |payload, id| {
            let reply = respond(payload.decode::<K::Payload>()?);
            Ok(codec.encode_parts(ACK_EVENT, Some(id), &reply)?)
        });
        lock(&self.shared.responders).insert(K::INDEX, respond);
    }

    /// Sends one event to the server.
    pub fn emit(&self, event: Tx) -> Result<(), ClientError> {
        send(&self.commands, self.shared.codec.encode(&event)?)
    }

    /// Sends a raw text frame, bypassing the types; for testing servers
    /// against malformed input.
    pub fn emit_raw(&self, text: impl Into<String>) -> Result<(), ClientError> {
        let frame = InboundFrame::text(text.into());
        self.commands
            .send(Inbound::Frame(frame))
            .map_err(|_| ClientError::Closed)
    }

    /// Sends a raw binary frame, bypassing the types; for testing servers
    /// against malformed input.
    pub fn emit_raw_binary(&self, bytes: impl Into<Bytes>) -> Result<(), ClientError> {
        let frame = InboundFrame::binary(bytes.into());
        self.commands
            .send(Inbound::Frame(frame))
            .map_err(|_| ClientError::Closed)
    }

    /// Calls `listener` with the payload of every `K` event. Events that have
    /// a listener are not queued for [`Client::recv`].
    pub fn on<K: EventKey<Events = Rx>>(
        &self,
        listener: impl Fn(K::Payload) + Send + Sync + 'static,
    ) {
        let listener: Listener = Box::new(move |payload| {
            listener(payload.decode::<K::Payload>()?);
            Ok(())
        });
        lock(&self.shared.listeners)
            .entry(K::INDEX)
            .or_default()
            .push(listener);
    }

    /// The next thing the server sent; `None` after [`Incoming::Closed`].
    pub async fn recv(&mut self) -> Option<Incoming<Rx>> {
        self.incoming.recv().await
    }

    /// Starts the close handshake with a code and reason. [`Client::recv`]
    /// then yields what is still in flight and finally [`Incoming::Closed`].
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<(), ClientError> {
        self.commands
            .send(Inbound::Close(Some((code, reason.to_owned()))))
            .map_err(|_| ClientError::Closed)
    }
}

impl<Rx, Tx> Stream for Client<Rx, Tx> {
    type Item = Incoming<Rx>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.incoming.poll_recv(cx)
    }
}

/// A request of this client; await it for the reply. Made by [`Client::request`].
#[must_use = "a request does nothing until awaited"]
pub struct ClientRequest<R> {
    id: u64,
    frame: Result<Frame, EncodeError>,
    commands: mpsc::UnboundedSender<Inbound>,
    shared: Arc<Shared>,
    timeout: Duration,
    _reply: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for ClientRequest<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientRequest")
            .field("id", &self.id)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<R> ClientRequest<R> {
    /// How long to wait for the reply (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl<R: DeserializeOwned + Send + 'static> IntoFuture for ClientRequest<R> {
    type Output = Result<R, ClientError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let frame = self.frame?;
            let (tx, rx) = oneshot::channel();
            let waiter: Waiter = Box::new(move |result: Result<RawPayload<'_>, ErrorPayload>| {
                let value = match result {
                    Ok(payload) => payload.decode::<R>().map_err(ClientError::Decode),
                    Err(error) => Err(ClientError::Rejected(error)),
                };
                let _ = tx.send(value);
            });
            lock(&self.shared.waiters).insert(self.id, waiter);
            let outcome = match send(&self.commands, frame) {
                Ok(()) => match tokio::time::timeout(self.timeout, rx).await {
                    Ok(Ok(result)) => result,
                    Ok(Err(_closed)) => Err(ClientError::Closed),
                    Err(_elapsed) => Err(ClientError::Timeout(self.timeout)),
                },
                Err(err) => Err(err),
            };
            lock(&self.shared.waiters).remove(&self.id);
            outcome
        })
    }
}

/// The `auth:success` payload, `{"user": ..}`.
#[derive(serde::Deserialize)]
struct AuthSuccess<U> {
    user: U,
}
