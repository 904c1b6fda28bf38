//! The WebSocket transport: an axum route that upgrades and runs connections.

use std::{future::ready, net::SocketAddr};

use axum::{
    extract::{
        ConnectInfo, FromRequestParts, Request, WebSocketUpgrade,
        ws::{CloseFrame, Message, Utf8Bytes, WebSocket},
    },
    response::{IntoResponse, Response},
    routing::MethodRouter,
};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite;

use crate::{
    codec::{CodecKind, Frame, FrameData, InFrame},
    conn::{self, ConnMeta, Inbound, Outbound, Transport},
    event::Events,
    protocol::CloseCode,
    server::Server,
};

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
    /// // `with_connect_info` makes the remote address known to `ConnMeta`.
    /// axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await
    /// # }
    /// ```
    ///
    /// A request that is not a WebSocket upgrade gets axum's rejection
    /// (`400`/`405`/`426`).
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
        let remote_addr = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0);
        let meta = ConnMeta::new(
            owned_headers(&parts.headers),
            remote_addr,
            parts.uri.path().to_owned(),
            parts.uri.query().map(str::to_owned),
            Transport::WebSocket,
            CodecKind::Json,
        );
        let config = self.config();
        upgrade
            .read_buffer_size(config.read_buffer_size)
            .max_message_size(config.max_frame_size)
            .max_frame_size(config.max_frame_size)
            .on_upgrade(move |socket| run_socket(self, meta, socket))
    }
}

/// The request's headers in allocations of their own. hyper's header values
/// are slices of its whole read buffer: keeping them for the connection's
/// life kept that buffer too, about 9 KiB per connection.
fn owned_headers(headers: &http::HeaderMap) -> http::HeaderMap {
    let mut owned = http::HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let name =
            http::HeaderName::from_bytes(name.as_str().as_bytes()).unwrap_or_else(|_| name.clone());
        let value =
            http::HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        owned.append(name, value);
    }
    owned
}

async fn run_socket<In: Events, Out: Events>(
    server: Server<In, Out>,
    meta: ConnMeta,
    socket: WebSocket,
) {
    let (sink, stream) = socket.split();
    let reader = stream.filter_map(|item| ready(inbound(item)));
    let writer = sink.with(|out: Outbound| ready(message(out)));
    conn::run(server, meta, reader, writer).await;
}

fn inbound(item: Result<Message, axum::Error>) -> Option<Inbound> {
    match item {
        Ok(Message::Text(text)) => Some(Inbound::Frame(InFrame::Text(text))),
        Ok(Message::Binary(bytes)) => Some(Inbound::Frame(InFrame::Binary(bytes))),
        Ok(Message::Ping(_) | Message::Pong(_)) => None,
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

fn message(out: Outbound) -> Result<Message, axum::Error> {
    Ok(match out {
        Outbound::Frame(Frame {
            data: FrameData::Text(text),
        }) => Message::Text(text),
        Outbound::Frame(Frame {
            data: FrameData::Binary(bytes),
        }) => Message::Binary(bytes),
        Outbound::Close(code, reason) => Message::Close(Some(CloseFrame {
            code: code.as_u16(),
            reason: Utf8Bytes::from(reason),
        })),
    })
}
