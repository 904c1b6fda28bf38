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

use std::{
    collections::HashMap,
    fmt,
    marker::PhantomData,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use bytes::Bytes;
use futures_util::{SinkExt, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{
    self, Message,
    client::IntoClientRequest,
    protocol::{CloseFrame, frame::coding::CloseCode as WsCloseCode},
};

use crate::{
    codec::{CodecKind, Input, RawPayload},
    error::{DecodeError, EncodeError},
    event::{EventKey, Events, PayloadDecoder},
    protocol::{CloseCode, ERROR_EVENT, ErrorPayload},
};

/// What can go wrong with a client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The WebSocket handshake or transport failed.
    #[error("websocket: {0}")]
    WebSocket(#[from] tungstenite::Error),
    /// The connection is closed; nothing was sent.
    #[error("the connection is closed")]
    Closed,
    /// The event could not be serialized.
    #[error(transparent)]
    Encode(#[from] EncodeError),
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
    /// The connection ended; the server's close code and reason, if it sent a
    /// close frame. Always the last item.
    Closed(Option<(CloseCode, String)>),
}

type Listener = Box<dyn Fn(RawPayload<'_>) -> Result<(), DecodeError> + Send + Sync>;

enum Command {
    Send(Bytes),
    Close(CloseCode, String),
}

/// A typed WebSocket client of a liweb server; see the [module docs](self).
pub struct Client<Rx, Tx> {
    commands: mpsc::UnboundedSender<Command>,
    incoming: mpsc::UnboundedReceiver<Incoming<Rx>>,
    listeners: Arc<Mutex<HashMap<usize, Vec<Listener>>>>,
    _tx: PhantomData<fn(Tx)>,
}

impl<Rx, Tx> fmt::Debug for Client<Rx, Tx> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("open", &!self.commands.is_closed())
            .finish_non_exhaustive()
    }
}

impl<Rx: Events, Tx: Events> Client<Rx, Tx> {
    /// Connects to a liweb WebSocket URL such as `ws://127.0.0.1:3001/ws`.
    pub async fn connect(url: &str) -> Result<Self, ClientError> {
        Self::connect_request(url).await
    }

    /// Connects with a request built by hand (extra headers, cookies):
    /// anything `tokio-tungstenite` accepts as a client request.
    pub async fn connect_request(
        request: impl IntoClientRequest + Unpin,
    ) -> Result<Self, ClientError> {
        let (socket, _response) = tokio_tungstenite::connect_async(request).await?;
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (incoming_tx, incoming) = mpsc::unbounded_channel();
        let listeners: Arc<Mutex<HashMap<usize, Vec<Listener>>>> = Arc::default();
        tokio::spawn(run::<Rx>(
            socket,
            command_rx,
            incoming_tx,
            Arc::clone(&listeners),
        ));
        Ok(Self {
            commands,
            incoming,
            listeners,
            _tx: PhantomData,
        })
    }

    /// Sends one event to the server.
    pub fn emit(&self, event: Tx) -> Result<(), ClientError> {
        let frame = CodecKind::Json.encode(&event)?;
        self.commands
            .send(Command::Send(frame.into_bytes()))
            .map_err(|_| ClientError::Closed)
    }

    /// Sends a raw text frame, bypassing the types; for testing servers
    /// against malformed input.
    pub fn emit_raw(&self, text: impl Into<String>) -> Result<(), ClientError> {
        self.commands
            .send(Command::Send(Bytes::from(text.into())))
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
        self.listeners
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
            .send(Command::Close(code, reason.to_owned()))
            .map_err(|_| ClientError::Closed)
    }
}

impl<Rx, Tx> Stream for Client<Rx, Tx> {
    type Item = Incoming<Rx>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.incoming.poll_recv(cx)
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn run<Rx: Events>(
    mut socket: Socket,
    mut commands: mpsc::UnboundedReceiver<Command>,
    incoming: mpsc::UnboundedSender<Incoming<Rx>>,
    listeners: Arc<Mutex<HashMap<usize, Vec<Listener>>>>,
) {
    let mut close = None;
    let mut commands_open = true;
    loop {
        tokio::select! {
            command = commands.recv(), if commands_open => match command {
                Some(Command::Send(bytes)) => {
                    let Ok(text) = tungstenite::Utf8Bytes::try_from(bytes) else { continue };
                    if socket.send(Message::Text(text)).await.is_err() {
                        break;
                    }
                }
                Some(Command::Close(code, reason)) => {
                    let frame = CloseFrame { code: WsCloseCode::from(code.as_u16()), reason: reason.into() };
                    let _ = socket.close(Some(frame)).await;
                }
                // Every handle is gone: say goodbye and stop.
                None => {
                    commands_open = false;
                    let _ = socket.close(None).await;
                }
            },
            message = socket.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    if let Some(item) = decode::<Rx>(text.as_str(), &listeners) {
                        let _ = incoming.send(item);
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    let _ = incoming.send(Incoming::Malformed {
                        event: None,
                        error: DecodeError::frame("binary frame on a JSON connection"),
                    });
                }
                Some(Ok(Message::Close(frame))) => {
                    close = frame.map(|frame| (CloseCode::from(u16::from(frame.code)), frame.reason.as_str().to_owned()));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
        }
    }
    let _ = incoming.send(Incoming::Closed(close));
}

fn decode<Rx: Events>(
    text: &str,
    listeners: &Mutex<HashMap<usize, Vec<Listener>>>,
) -> Option<Incoming<Rx>> {
    let frame = match CodecKind::Json.decode_frame(Input::Text(text)) {
        Ok(frame) => frame,
        Err(error) => return Some(Incoming::Malformed { event: None, error }),
    };
    let malformed = |error| Incoming::Malformed {
        event: Some(frame.event.to_string()),
        error,
    };
    if frame.event == ERROR_EVENT {
        return Some(match frame.payload.decode::<ErrorPayload>() {
            Ok(error) => Incoming::Error(error),
            Err(error) => malformed(error),
        });
    }
    let Some(index) = Rx::index_of(&frame.event) else {
        return Some(malformed(DecodeError::frame(format_args!(
            "unknown event `{}`",
            frame.event
        ))));
    };
    {
        let listeners = listeners
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(listeners) = listeners.get(&index).filter(|list| !list.is_empty()) {
            for listener in listeners {
                if let Err(error) = listener(frame.payload) {
                    return Some(malformed(error));
                }
            }
            return None;
        }
    }
    match Rx::decode(index, frame.payload) {
        Some(Ok(event)) => Some(Incoming::Event(event)),
        Some(Err(error)) => Some(malformed(error)),
        None => Some(malformed(DecodeError::frame("event index out of range"))),
    }
}
