//! The transport × codec combinations the conformance suite runs on.
//!
//! A conformance test is written once, as an `async fn` taking a [`Combo`],
//! and the [`conformance!`](crate::conformance) macro instantiates it once
//! per combination: `m1_a_known_event_runs::ws_json`,
//! `m1_a_known_event_runs::tcp_bincode`, ... so the test output lists every
//! combination each behaviour ran on.
//!
//! A test speaks to the server through a typed [`TestClient`] opened with
//! [`Running::client_on`], or, for what the typed client cannot send (broken
//! frames, reserved events, hand-picked ack ids), through a [`Peer`]: a raw
//! client of either transport that encodes and decodes in the combination's
//! codec.

use std::{fmt, net::SocketAddr};

use futures_util::{SinkExt, StreamExt};
use liweb::{
    BincodeCodec, Codec, CodecKind, DecodeError, ErrorPayload, Input, JsonCodec, MsgPackCodec,
    PayloadDecoder, prelude::ConnId,
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Message, client::IntoClientRequest},
};

use crate::{RawTcp, Running, TcpFrame, TestClient, WAIT};

/// The transport of a [`Combo`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// WebSocket, through the axum route.
    WebSocket,
    /// The length-delimited TCP transport.
    Tcp,
}

/// One transport × codec combination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Combo {
    /// The transport.
    pub link: Link,
    /// The codec.
    pub codec: CodecKind,
}

impl Combo {
    /// Every combination, in the order the suite names them.
    pub const ALL: [Self; 6] = [
        Self::ws_json(),
        Self::ws_msgpack(),
        Self::ws_bincode(),
        Self::tcp_json(),
        Self::tcp_msgpack(),
        Self::tcp_bincode(),
    ];

    /// WebSocket, JSON text frames.
    pub const fn ws_json() -> Self {
        Self::new(Link::WebSocket, CodecKind::Json)
    }

    /// WebSocket, MessagePack binary frames.
    pub const fn ws_msgpack() -> Self {
        Self::new(Link::WebSocket, CodecKind::MessagePack)
    }

    /// WebSocket, bincode binary frames.
    pub const fn ws_bincode() -> Self {
        Self::new(Link::WebSocket, CodecKind::Bincode)
    }

    /// TCP, JSON messages.
    pub const fn tcp_json() -> Self {
        Self::new(Link::Tcp, CodecKind::Json)
    }

    /// TCP, MessagePack messages.
    pub const fn tcp_msgpack() -> Self {
        Self::new(Link::Tcp, CodecKind::MessagePack)
    }

    /// TCP, bincode messages.
    pub const fn tcp_bincode() -> Self {
        Self::new(Link::Tcp, CodecKind::Bincode)
    }

    const fn new(link: Link, codec: CodecKind) -> Self {
        Self { link, codec }
    }

    /// Whether payloads of this codec can be read without knowing their
    /// type (every codec but bincode): what [`Msg::json`] needs.
    pub fn self_describing(self) -> bool {
        self.codec != CodecKind::Bincode
    }
}

impl fmt::Display for Combo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let link = match self.link {
            Link::WebSocket => "ws",
            Link::Tcp => "tcp",
        };
        let codec = self.codec.subprotocol().trim_start_matches("liweb.");
        write!(f, "{link}_{codec}")
    }
}

/// Declares conformance tests, each written once over a [`Combo`] and run
/// once per combination as `name::ws_json`, `name::tcp_bincode`, ...
///
/// ```ignore
/// conformance! {
///     /// Conformance M1.
///     async fn m1_a_known_event_runs_its_handlers(combo) {
///         let running = Running::start().await;
///         let (client, _) = running.client_on(combo).await;
///         // ...
///     }
///
///     /// Conformance C3: origins are an HTTP matter.
///     on [ws_json, ws_msgpack, ws_bincode]
///     async fn c3_a_foreign_origin_is_refused(combo) { /* ... */ }
/// }
/// ```
///
/// Without `on [..]` a test runs on every combination of [`Combo::ALL`].
#[macro_export]
macro_rules! conformance {
    () => {};
    (
        $(#[$attr:meta])*
        async fn $name:ident($combo:ident) $body:block
        $($rest:tt)*
    ) => {
        $crate::conformance! {
            @one [ws_json, ws_msgpack, ws_bincode, tcp_json, tcp_msgpack, tcp_bincode]
            $(#[$attr])* $name $combo $body
        }
        $crate::conformance! { $($rest)* }
    };
    (
        $(#[$attr:meta])*
        on [$($on:ident),+ $(,)?]
        async fn $name:ident($combo:ident) $body:block
        $($rest:tt)*
    ) => {
        $crate::conformance! { @one [$($on),+] $(#[$attr])* $name $combo $body }
        $crate::conformance! { $($rest)* }
    };
    (@one [$($on:ident),+] $(#[$attr:meta])* $name:ident $combo:ident $body:block) => {
        $(#[$attr])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($combo: $crate::Combo) $body

            $(
                #[::tokio::test]
                async fn $on() {
                    run($crate::Combo::$on()).await
                }
            )+
        }
    };
}

impl Running {
    /// Connects a typed client over `combo` and waits until the server has
    /// run `on_connect` for it.
    pub async fn client_on(&self, combo: Combo) -> (TestClient, ConnId) {
        match combo.link {
            Link::WebSocket => self.client_with(combo.codec).await,
            Link::Tcp => self.tcp_client_with(combo.codec).await,
        }
    }

    /// Connects a typed client over `combo` without waiting for
    /// `on_connect`: for connections that authenticate first.
    pub async fn connect_on(&self, combo: Combo) -> TestClient {
        match combo.link {
            Link::WebSocket => self.connect_with(combo.codec).await,
            Link::Tcp => self.tcp_connect_with(combo.codec).await,
        }
    }

    /// Opens a raw [`Peer`] over `combo` and waits until the server has run
    /// `on_connect` for it.
    pub async fn peer_on(&self, combo: Combo) -> (Peer, ConnId) {
        let before = self.recorder.conns().len();
        let peer = self.open_peer(combo).await;
        (peer, self.connected(before).await)
    }

    /// Opens a raw [`Peer`] over `combo` without waiting for `on_connect`.
    pub async fn open_peer(&self, combo: Combo) -> Peer {
        let link = match combo.link {
            Link::WebSocket => PeerLink::Ws(Box::new(ws_upgrade(self.url(), combo.codec).await)),
            Link::Tcp => {
                PeerLink::Tcp(RawTcp::open(self.tcp_addr, combo.codec.subprotocol()).await)
            }
        };
        Peer {
            combo,
            link,
            addr: self.addr,
        }
    }

    /// Opens a raw WebSocket [`Peer`] in `combo`'s codec from `request` (the
    /// URL with a query, or a request with extra headers) without waiting
    /// for `on_connect`: for credentials in the upgrade request, which only
    /// WebSocket carries.
    pub async fn ws_peer(&self, combo: Combo, request: impl IntoClientRequest) -> Peer {
        assert_eq!(
            combo.link,
            Link::WebSocket,
            "only WebSocket has an upgrade request"
        );
        Peer {
            combo,
            link: PeerLink::Ws(Box::new(ws_upgrade(request, combo.codec).await)),
            addr: self.addr,
        }
    }
}

/// How the server refused a connection, per transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A WebSocket upgrade refused with this HTTP status.
    Http(http::StatusCode),
    /// A TCP handshake answered with `CLOSE`: its code and reason.
    Close(u16, String),
}

impl Running {
    /// The WebSocket upgrade request asking for `codec`: for tests that add
    /// headers or change the URL before [`open_ws_peer`](Self::open_ws_peer).
    pub fn ws_request(&self, codec: CodecKind) -> http::Request<()> {
        ws_request(self.url(), codec)
    }

    /// Opens a WebSocket [`Peer`] from `request` (see
    /// [`ws_request`](Self::ws_request)); a refused upgrade gives its status.
    pub async fn open_ws_peer(
        &self,
        codec: CodecKind,
        request: http::Request<()>,
    ) -> Result<Peer, http::StatusCode> {
        let socket = try_ws_upgrade(request, codec).await?;
        Ok(Peer {
            combo: Combo::new(Link::WebSocket, codec),
            link: PeerLink::Ws(Box::new(socket)),
            addr: self.addr,
        })
    }

    /// Opens a [`Peer`] over `combo`, or tells how the server refused it.
    pub async fn try_open_peer(&self, combo: Combo) -> Result<Peer, Refusal> {
        match combo.link {
            Link::WebSocket => self
                .open_ws_peer(combo.codec, self.ws_request(combo.codec))
                .await
                .map_err(Refusal::Http),
            Link::Tcp => {
                let mut tcp = RawTcp::connect(self.tcp_addr).await;
                let name = combo.codec.subprotocol();
                tcp.send_frame(1, name.as_bytes()).await;
                match tcp.next_frame().await {
                    Some(TcpFrame::Hello(echoed)) if echoed == name => Ok(Peer {
                        combo,
                        link: PeerLink::Tcp(tcp),
                        addr: self.addr,
                    }),
                    Some(TcpFrame::Close(code, reason)) => Err(Refusal::Close(code, reason)),
                    other => panic!("expected HELLO or CLOSE, got {other:?}"),
                }
            }
        }
    }
}

fn ws_request(request: impl IntoClientRequest, codec: CodecKind) -> http::Request<()> {
    let mut request = request.into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        codec.subprotocol().parse().unwrap(),
    );
    request
}

async fn ws_upgrade(
    request: impl IntoClientRequest,
    codec: CodecKind,
) -> WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>> {
    try_ws_upgrade(ws_request(request, codec), codec)
        .await
        .unwrap_or_else(|status| panic!("the upgrade was refused with {status}"))
}

async fn try_ws_upgrade(
    request: http::Request<()>,
    codec: CodecKind,
) -> Result<WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>, http::StatusCode> {
    let connecting = tokio_tungstenite::connect_async(request);
    let (socket, response) = match tokio::time::timeout(WAIT, connecting)
        .await
        .expect("connect timed out")
    {
        Ok(connected) => connected,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            return Err(response.status());
        }
        Err(other) => panic!("connect failed: {other}"),
    };
    let chosen = response
        .headers()
        .get("sec-websocket-protocol")
        .map(|value| value.to_str().unwrap().to_owned());
    assert_eq!(chosen.as_deref(), Some(codec.subprotocol()));
    Ok(socket)
}

/// A raw client of either transport, speaking one codec: it sends
/// messages built from their parts, or bytes as they are, and reads what the
/// server sends as [`Msg`]s.
#[derive(Debug)]
pub struct Peer {
    combo: Combo,
    link: PeerLink,
    addr: SocketAddr,
}

#[derive(Debug)]
enum PeerLink {
    Ws(Box<WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>>),
    Tcp(RawTcp),
}

impl Peer {
    /// The combination this peer speaks.
    pub fn combo(&self) -> Combo {
        self.combo
    }

    /// The WebSocket listener's address of the server (for tests that
    /// compare it with connection metadata).
    pub fn server_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The client's own address: the server sees it as the remote address.
    pub fn local_addr(&self) -> SocketAddr {
        match &self.link {
            PeerLink::Ws(socket) => match socket.get_ref() {
                MaybeTlsStream::Plain(stream) => stream.local_addr().expect("a connected socket"),
                _ => unreachable!("the tests use plain WebSocket"),
            },
            PeerLink::Tcp(tcp) => tcp.local_addr(),
        }
    }

    /// Sends `event` with `payload`, encoded in the peer's codec.
    pub async fn emit(&mut self, event: &str, payload: &(impl Serialize + ?Sized)) {
        let bytes = encode(self.combo.codec, event, None, payload);
        self.send_message(bytes).await;
    }

    /// Sends a request: `event` with `payload` and acknowledgement id `ack`.
    pub async fn request(&mut self, event: &str, payload: &(impl Serialize + ?Sized), ack: u64) {
        let bytes = encode(self.combo.codec, event, Some(ack), payload);
        self.send_message(bytes).await;
    }

    /// Sends one message of bytes as they are: a text frame on a JSON
    /// WebSocket when they are UTF-8, a binary frame otherwise, a `MESSAGE`
    /// frame on TCP.
    pub async fn send_message(&mut self, bytes: Vec<u8>) {
        match &mut self.link {
            PeerLink::Ws(socket) => {
                let message = match (self.combo.codec, String::from_utf8(bytes)) {
                    (CodecKind::Json, Ok(text)) => Message::text(text),
                    (_, Ok(text)) => Message::binary(text.into_bytes()),
                    (_, Err(err)) => Message::binary(err.into_bytes()),
                };
                tokio::time::timeout(WAIT, socket.send(message))
                    .await
                    .expect("send timed out")
                    .expect("send failed");
            }
            PeerLink::Tcp(tcp) => tcp.send_frame(2, &bytes).await,
        }
    }

    /// The next message from the server; heartbeat frames are skipped.
    pub async fn next(&mut self) -> Msg {
        let codec = self.combo.codec;
        match &mut self.link {
            PeerLink::Ws(socket) => {
                let bytes = tokio::time::timeout(WAIT, async {
                    loop {
                        match socket.next().await {
                            Some(Ok(Message::Text(text))) if codec == CodecKind::Json => {
                                return text.as_bytes().to_vec();
                            }
                            Some(Ok(Message::Binary(bytes))) if codec != CodecKind::Json => {
                                return bytes.to_vec();
                            }
                            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                            other => panic!("expected a {codec:?} message, got {other:?}"),
                        }
                    }
                })
                .await
                .expect("timed out waiting for the server");
                Msg { codec, bytes }
            }
            PeerLink::Tcp(tcp) => loop {
                match tcp.next_frame().await {
                    Some(TcpFrame::Message(bytes)) => return Msg { codec, bytes },
                    Some(TcpFrame::Ping) => tcp.send_frame(4, &[]).await,
                    Some(TcpFrame::Pong) => continue,
                    other => panic!("expected a message, got {other:?}"),
                }
            },
        }
    }

    /// Waits for the server's close and returns its code and reason,
    /// failing if a message arrives first.
    pub async fn closed(&mut self) -> (u16, String) {
        match &mut self.link {
            PeerLink::Ws(socket) => tokio::time::timeout(WAIT, async {
                loop {
                    match socket.next().await {
                        Some(Ok(Message::Close(Some(frame)))) => {
                            return (u16::from(frame.code), frame.reason.as_str().to_owned());
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        other => panic!("expected a close frame, got {other:?}"),
                    }
                }
            })
            .await
            .expect("timed out waiting for the close"),
            PeerLink::Tcp(tcp) => tcp.closed().await,
        }
    }

    /// Sends an `echo` and waits for its answer, failing if anything else
    /// arrives first: proves nothing else was queued for this peer before it.
    pub async fn fence(&mut self, text: &str) {
        self.emit("echo", text).await;
        let msg = self.next().await;
        assert_eq!(msg.event(), "echoed", "expected the fence, got {msg:?}");
        assert_eq!(msg.payload::<String>(), text);
    }

    /// Closes the connection from the client side and waits until the
    /// server's side of it has ended.
    pub async fn close(self) {
        match self.link {
            PeerLink::Ws(mut socket) => tokio::time::timeout(WAIT, async {
                let _ = socket.as_mut().close(None).await;
                while let Some(Ok(_)) = socket.next().await {}
            })
            .await
            .expect("close timed out"),
            PeerLink::Tcp(mut tcp) => {
                tcp.send_frame(5, &1000u16.to_be_bytes()).await;
                tcp.shutdown_write().await;
                tokio::time::timeout(WAIT, async { while tcp.next_frame().await.is_some() {} })
                    .await
                    .expect("close timed out");
            }
        }
    }

    /// The next thing the server sent, heartbeat pings included, for
    /// heartbeat tests. On TCP a ping stays unanswered until
    /// [`pong`](Peer::pong); a WebSocket library answers pings by itself on
    /// its next read, so a WebSocket peer that should stop answering must
    /// stop reading.
    pub async fn heard(&mut self) -> Heard {
        let codec = self.combo.codec;
        match &mut self.link {
            PeerLink::Ws(socket) => match tokio::time::timeout(WAIT, socket.next())
                .await
                .expect("timed out waiting for the server")
            {
                Some(Ok(Message::Ping(_))) => Heard::Ping,
                Some(Ok(Message::Text(text))) => Heard::Message(Msg {
                    codec,
                    bytes: text.as_bytes().to_vec(),
                }),
                Some(Ok(Message::Binary(bytes))) => Heard::Message(Msg {
                    codec,
                    bytes: bytes.to_vec(),
                }),
                Some(Ok(Message::Close(Some(frame)))) => {
                    Heard::Close(u16::from(frame.code), frame.reason.as_str().to_owned())
                }
                Some(Ok(other)) => panic!("unexpected {other:?}"),
                None | Some(Err(_)) => Heard::End,
            },
            PeerLink::Tcp(tcp) => match tcp.next_frame().await {
                Some(TcpFrame::Ping) => Heard::Ping,
                Some(TcpFrame::Message(bytes)) => Heard::Message(Msg { codec, bytes }),
                Some(TcpFrame::Close(code, reason)) => Heard::Close(code, reason),
                None => Heard::End,
                Some(other) => panic!("unexpected {other:?}"),
            },
        }
    }

    /// Answers a ping read with [`heard`](Peer::heard): a `PONG` frame on
    /// TCP; nothing on WebSocket, whose library answers on its next read.
    pub async fn pong(&mut self) {
        if let PeerLink::Tcp(tcp) = &mut self.link {
            tcp.send_frame(4, &[]).await;
        }
    }
}

/// Encodes a message in `codec` from its parts.
pub fn encode(
    codec: CodecKind,
    event: &str,
    ack: Option<u64>,
    payload: &(impl Serialize + ?Sized),
) -> Vec<u8> {
    match codec {
        CodecKind::Json => JsonCodec::encode(event, ack, payload),
        CodecKind::MessagePack => MsgPackCodec::encode(event, ack, payload),
        CodecKind::Bincode => BincodeCodec::encode(event, ack, payload),
        other => panic!("no encoder for {other:?}"),
    }
    .expect("the message encodes")
    .to_vec()
}

/// One message from the server, still in its codec: read its parts with
/// [`event`](Msg::event), [`payload`](Msg::payload), [`ack`](Msg::ack) and
/// [`error`](Msg::error), or all of it as JSON with [`json`](Msg::json).
#[derive(Clone)]
pub struct Msg {
    codec: CodecKind,
    bytes: Vec<u8>,
}

impl fmt::Debug for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Msg");
        debug.field("codec", &self.codec);
        match self.codec {
            CodecKind::Bincode => debug.field("event", &self.event()),
            // Not `json()`: a message that does not convert (MessagePack
            // bytes, say) must still print, also inside a failing assert.
            CodecKind::Json => debug.field("message", &String::from_utf8_lossy(&self.bytes)),
            _ => match rmp_serde::from_slice::<Value>(&self.bytes) {
                Ok(message) => debug.field("message", &message),
                Err(_) => debug
                    .field("event", &self.event())
                    .field("bytes", &self.bytes),
            },
        };
        debug.finish_non_exhaustive()
    }
}

impl Msg {
    fn parts<T: DeserializeOwned>(&self, payload: bool) -> Parts<T> {
        let input = match self.codec {
            CodecKind::Json => {
                Input::Text(std::str::from_utf8(&self.bytes).expect("JSON is UTF-8"))
            }
            _ => Input::Binary(&self.bytes),
        };
        match self.codec {
            CodecKind::Json => Parts::read::<JsonCodec>(input, payload),
            CodecKind::MessagePack => Parts::read::<MsgPackCodec>(input, payload),
            CodecKind::Bincode => Parts::read::<BincodeCodec>(input, payload),
            other => panic!("no decoder for {other:?}"),
        }
    }

    /// The message's bytes as the server sent them.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The event's wire name (`__ack` for a reply).
    pub fn event(&self) -> String {
        self.parts::<()>(false).event
    }

    /// The acknowledgement id: on a request, the id to reply with; on a
    /// reply, the id of the request it answers.
    pub fn ack(&self) -> Option<u64> {
        self.parts::<()>(false).ack
    }

    /// The error of an error reply.
    pub fn error(&self) -> Option<ErrorPayload> {
        self.parts::<()>(false).error
    }

    /// The payload decoded as `T`, failing the test when it does not decode.
    pub fn payload<T: DeserializeOwned>(&self) -> T {
        self.try_payload()
            .unwrap_or_else(|err| panic!("payload of {self:?}: {err}"))
    }

    /// The payload decoded as `T`.
    pub fn try_payload<T: DeserializeOwned>(&self) -> Result<T, DecodeError> {
        self.parts::<T>(true)
            .payload
            .expect("the payload was asked for")
    }

    /// The whole message as JSON: `{"event", "payload", "ack", "error"}` as
    /// the JSON codec writes it. Only for self-describing codecs (JSON and
    /// MessagePack, whose envelope is a map with the same keys); a bincode
    /// payload cannot be read without its type: use [`payload`](Msg::payload).
    pub fn json(&self) -> Value {
        match self.codec {
            CodecKind::Json => serde_json::from_slice(&self.bytes).expect("the server sends JSON"),
            CodecKind::MessagePack => {
                rmp_serde::from_slice(&self.bytes).expect("the server sends MessagePack")
            }
            other => {
                panic!("a {other:?} message cannot be read as JSON; decode its payload by type")
            }
        }
    }
}

/// A message's envelope, and its payload when asked for.
struct Parts<T> {
    event: String,
    ack: Option<u64>,
    payload: Option<Result<T, DecodeError>>,
    error: Option<ErrorPayload>,
}

impl<T: DeserializeOwned> Parts<T> {
    fn read<C: Codec>(input: Input<'_>, payload: bool) -> Self {
        let decoded = C::decode_frame(input).expect("the server sends well-formed envelopes");
        Self {
            event: decoded.event.into_owned(),
            ack: decoded.ack,
            payload: payload.then(|| decoded.payload.decode::<T>()),
            error: decoded.error.map(|error| {
                error
                    .decode::<ErrorPayload>()
                    .expect("an error reply's error decodes")
            }),
        }
    }
}

/// One thing a [`Peer`] heard from the server, heartbeats included.
#[derive(Debug)]
pub enum Heard {
    /// A heartbeat ping.
    Ping,
    /// A message.
    Message(Msg),
    /// The server's close, with its code and reason.
    Close(u16, String),
    /// The end of the connection.
    End,
}
