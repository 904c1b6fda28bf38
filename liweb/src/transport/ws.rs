//! The WebSocket transport: an axum route that upgrades and runs connections.

use std::{
    future::ready,
    net::SocketAddr,
    pin::Pin,
    sync::atomic::Ordering,
    task::{Context, Poll},
};

use axum::{
    extract::{
        ConnectInfo, FromRequestParts, Request, WebSocketUpgrade,
        ws::{CloseFrame, Message, Utf8Bytes, WebSocket},
    },
    response::{IntoResponse, Response},
    routing::MethodRouter,
};
use futures_util::{Sink, StreamExt};
use http::StatusCode;
use tokio_tungstenite::tungstenite;

use crate::{
    codec::{CodecKind, Frame, FrameData, InFrame},
    conn::meta::{ConnMeta, Transport},
    event::Events,
    protocol::CloseCode,
    server::Server,
    transport::item::{Inbound, InboundFrame, Outbound},
};

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, message.to_owned()).into_response()
}

impl<In: Events, Out: Events> Server<In, Out> {
    /// An axum route that upgrades `GET` requests to WebSocket connections of
    /// this server. Mount it at any path of any router:
    ///
    /// ```no_run
    /// # use liweb::prelude::*;
    /// # #[derive(Events)] enum In { Ping }
    /// # #[derive(Events)] enum Out { Pong }
    /// # async fn run(server: Server<In, Out>) -> std::io::Result<()> {
    /// let app = axum::Router::new().route("/ws", server.ws_route());
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    /// // The remote address reaches `ConnMeta`; see `liweb::serve` for the rest.
    /// liweb::serve(listener, app).await
    /// # }
    /// ```
    ///
    /// A request that is not a WebSocket upgrade gets axum's rejection
    /// (`400`/`405`/`426`). Upgrades are refused with `403` for an `Origin`
    /// not on [`Config::allowed_origins`](crate::Config::allowed_origins),
    /// `503` at [`Config::max_connections`](crate::Config::max_connections)
    /// or during [`Server::shutdown`], and with the hook's status when
    /// [`ServerBuilder::on_upgrade`](crate::ServerBuilder::on_upgrade) refuses.
    pub fn ws_route<S: Clone + Send + Sync + 'static>(&self) -> MethodRouter<S> {
        let server = self.clone();
        axum::routing::get(move |request: Request| {
            let server = server.clone();
            async move { server.upgrade(request).await }
        })
    }

    async fn upgrade(self, request: Request) -> Response {
        let (mut parts, _body) = request.into_parts();
        let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(upgrade) => upgrade,
            Err(rejection) => return rejection.into_response(),
        };
        // The place is taken first, as TCP does, and given back when the
        // connection ends or when the upgrade never completes.
        let admission = match self.admit() {
            Ok(admission) => admission,
            Err(refused) => return refuse(StatusCode::SERVICE_UNAVAILABLE, &refused.to_string()),
        };
        let stats = &self.inner.stats;
        if let (Some(allowed), Some(origin)) = (
            &self.config().allowed_origins,
            parts.headers.get(http::header::ORIGIN),
        ) && !allowed
            .iter()
            .any(|allowed| allowed.as_bytes() == origin.as_bytes())
        {
            stats.rejected_origin.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(?origin, "upgrade refused: origin not allowed");
            return refuse(StatusCode::FORBIDDEN, "origin not allowed");
        }
        let codec = match negotiate(&parts.headers) {
            Ok(codec) => codec,
            Err(asked) => {
                stats.rejected_subprotocol.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%asked, "upgrade refused: no supported codec subprotocol");
                return refuse(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "unsupported codec subprotocol: {asked}; this server speaks {}",
                        supported()
                    ),
                );
            }
        };
        let remote_addr = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0);
        let meta = ConnMeta::new(
            &parts.headers,
            remote_addr,
            parts.uri.path().to_owned(),
            parts.uri.query().map(str::to_owned),
            Transport::WebSocket,
            codec.unwrap_or_default(),
        );
        if let Err(rejection) = self.check_upgrade(&meta).await {
            return refuse(rejection.status, &rejection.message);
        }
        let config = self.config();
        // Answering with the chosen subprotocol; a client that asked for
        // none gets none, as before codecs could be chosen.
        let upgrade = match codec {
            Some(codec) => upgrade.protocols([codec.subprotocol()]),
            None => upgrade,
        };
        upgrade
            .read_buffer_size(config.read_buffer_size)
            .max_message_size(config.max_frame_size)
            .max_frame_size(config.max_frame_size)
            .on_upgrade(move |socket| async move {
                let (sink, stream) = socket.split();
                let reader = stream.filter_map(|item| ready(inbound(item)));
                admission.run(meta, reader, Writer(sink)).await;
            })
    }
}

/// The codec the `Sec-WebSocket-Protocol` header asks for: the first
/// `liweb.*` subprotocol of the client's list this server supports, `None`
/// when the list names no `liweb.*` subprotocol (JSON), and `Err` with the
/// list when it names only `liweb.*` subprotocols this server lacks.
fn negotiate(headers: &http::HeaderMap) -> Result<Option<CodecKind>, String> {
    let asked = headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|name| name.starts_with("liweb."));
    let mut unsupported = Vec::new();
    for name in asked {
        match CodecKind::from_subprotocol(name) {
            Some(codec) => return Ok(Some(codec)),
            None => unsupported.push(name),
        }
    }
    if unsupported.is_empty() {
        Ok(None)
    } else {
        Err(unsupported.join(", "))
    }
}

fn supported() -> String {
    CodecKind::ALL
        .iter()
        .map(|codec| codec.subprotocol())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The socket's sending half, taking liweb's outbound items. A plain
/// mapping in `start_send`: `SinkExt::with` would build and poll a future
/// for every frame of every recipient.
struct Writer(futures_util::stream::SplitSink<WebSocket, Message>);

impl Sink<Outbound> for Writer {
    type Error = axum::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.0).poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Outbound) -> Result<(), Self::Error> {
        Pin::new(&mut self.0).start_send(message(item))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}

fn inbound(item: Result<Message, axum::Error>) -> Option<Inbound> {
    match item {
        Ok(Message::Text(text)) => Some(Inbound::Frame(InboundFrame(InFrame::Text(text)))),
        Ok(Message::Binary(bytes)) => Some(Inbound::Frame(InboundFrame(InFrame::Binary(bytes)))),
        // tungstenite answers pings itself.
        Ok(Message::Ping(_)) => None,
        Ok(Message::Pong(_)) => Some(Inbound::Pong),
        Ok(Message::Close(frame)) => Some(Inbound::Close(frame.map(|frame| {
            (
                CloseCode::from(frame.code),
                frame.reason.as_str().to_owned(),
            )
        }))),
        Err(err) => Some(classify(err)),
    }
}

fn classify(err: axum::Error) -> Inbound {
    let err = err.into_inner();
    match err.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(reason)) => {
            Inbound::Error(CloseCode::TooLarge, format!("frame too large: {reason}"))
        }
        Some(tungstenite::Error::Utf8(_)) => Inbound::Error(
            CloseCode::BadFrame,
            "text frame is not valid UTF-8".to_owned(),
        ),
        // The peer vanished; there is no one left to close with.
        Some(tungstenite::Error::Protocol(
            tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        )) => Inbound::Reset("connection reset without a closing handshake".to_owned()),
        Some(tungstenite::Error::Protocol(reason)) => {
            Inbound::Error(CloseCode::ProtocolError, reason.to_string())
        }
        _ => Inbound::Reset(err.to_string()),
    }
}

fn message(out: Outbound) -> Message {
    match out {
        Outbound::Frame(Frame {
            data: FrameData::Text(text),
        }) => Message::Text(text),
        Outbound::Frame(Frame {
            data: FrameData::Binary(bytes),
        }) => Message::Binary(bytes),
        Outbound::Ping => Message::Ping(bytes::Bytes::new()),
        Outbound::Close(code, reason) => Message::Close(Some(CloseFrame {
            code: code.as_u16(),
            reason: Utf8Bytes::from(reason),
        })),
    }
}
