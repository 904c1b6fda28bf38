//! The client's WebSocket transport: a tungstenite socket read as the
//! [`Outbound`] items a server sends and written as the [`Inbound`] items a
//! server reads.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use futures_util::{Sink, Stream};
use tokio_tungstenite::tungstenite::{
    self, Message,
    protocol::{CloseFrame, frame::coding::CloseCode as WsCloseCode},
};

use super::task::NO_STATUS;
use crate::{
    codec::Frame,
    protocol::CloseCode,
    transport::item::{Inbound, Outbound},
};

/// A WebSocket connection as the client's task sees it.
pub(super) struct Socket<S>(S);

impl<S> Socket<S> {
    pub(super) fn new(socket: S) -> Self {
        Self(socket)
    }
}

impl<S> Stream for Socket<S>
where
    S: Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    type Item = Outbound;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Outbound>> {
        loop {
            let message = match Pin::new(&mut self.0).poll_next(cx) {
                Poll::Ready(Some(Ok(message))) => message,
                // A broken connection ends the stream, as a closed one does.
                Poll::Ready(Some(Err(_)) | None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            };
            let item = match message {
                Message::Text(text) => match Frame::text_from_bytes(text.into()) {
                    Some(frame) => Outbound::Frame(frame),
                    None => continue,
                },
                Message::Binary(bytes) => Outbound::Frame(Frame::binary(bytes)),
                Message::Ping(_) => Outbound::Ping,
                Message::Close(frame) => match frame {
                    Some(frame) => Outbound::Close(
                        CloseCode::from(u16::from(frame.code)),
                        frame.reason.as_str().to_owned(),
                    ),
                    None => Outbound::Close(CloseCode::from(NO_STATUS), String::new()),
                },
                Message::Pong(_) | Message::Frame(_) => continue,
            };
            return Poll::Ready(Some(item));
        }
    }
}

impl<S> Sink<Inbound> for Socket<S>
where
    S: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    type Error = tungstenite::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.0).poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Inbound) -> Result<(), Self::Error> {
        let message = match item {
            Inbound::Frame(frame) => match frame.into_frame() {
                frame if frame.is_text() => {
                    // Encoded as UTF-8 text, so the conversion cannot fail.
                    match tungstenite::Utf8Bytes::try_from(frame.into_bytes()) {
                        Ok(text) => Message::Text(text),
                        Err(_) => return Ok(()),
                    }
                }
                frame => Message::Binary(frame.into_bytes()),
            },
            Inbound::Close(close) => Message::Close(close.map(|(code, reason)| CloseFrame {
                code: WsCloseCode::from(code.as_u16()),
                reason: reason.into(),
            })),
            // tungstenite answers pings itself; nothing else goes to a server.
            Inbound::Pong | Inbound::Error(..) | Inbound::Reset(_) => return Ok(()),
        };
        Pin::new(&mut self.0).start_send(message)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}
