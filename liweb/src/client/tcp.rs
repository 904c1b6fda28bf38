//! The client's side of the TCP transport (feature `tcp`):
//! `tcp://host:port`, the same frames as the server's, read as the
//! [`Outbound`] items a server sends and written as the [`Inbound`] items a
//! server reads.

use std::{io, time::Duration};

use bytes::BytesMut;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::net::TcpStream;
use tokio_util::codec::{Encoder, Framed};

use super::{ClientError, task::NO_STATUS};
use crate::{
    codec::{CodecKind, Frame},
    protocol::CloseCode,
    transport::{
        item::{Inbound, Outbound},
        tcp::wire::{FrameError, WireCodec, WireFrame, WireOut},
    },
};

/// The largest message the client reads.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;
/// How long the server may take to answer `HELLO`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl Encoder<Inbound> for WireCodec {
    type Error = io::Error;

    fn encode(&mut self, item: Inbound, dst: &mut BytesMut) -> io::Result<()> {
        match item {
            Inbound::Frame(frame) => {
                self.write(WireOut::Message(frame.into_frame().as_bytes()), dst)
            }
            Inbound::Pong => self.write(WireOut::Pong, dst),
            Inbound::Close(Some((code, reason))) => {
                self.write(WireOut::Close(code.as_u16(), &reason), dst)
            }
            Inbound::Close(None) => self.write(WireOut::Close(CloseCode::Normal.as_u16(), ""), dst),
            // Nothing else goes to a server.
            Inbound::Error(..) | Inbound::Reset(_) => Ok(()),
        }
    }
}

/// Connects, sends `HELLO` naming `codec` and waits for the server's
/// answer; the connection then reads [`Outbound`] and writes [`Inbound`]
/// items, so the client's task runs the same over both transports.
pub(super) async fn connect(
    uri: &http::Uri,
    codec: CodecKind,
) -> Result<impl Stream<Item = Outbound> + Sink<Inbound> + Unpin + Send + 'static, ClientError> {
    let authority = uri
        .authority()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no host in the URL"))?;
    let stream = TcpStream::connect(authority.as_str()).await?;
    stream.set_nodelay(true)?;
    let mut framed = Framed::new(stream, WireCodec::new(MAX_MESSAGE));
    let mut hello = BytesMut::new();
    framed
        .codec()
        .write(WireOut::Hello(codec.subprotocol()), &mut hello)?;
    framed.write_buffer_mut().extend_from_slice(&hello);
    SinkExt::<Inbound>::flush(&mut framed).await?;
    let answer = tokio::time::timeout(HANDSHAKE_TIMEOUT, framed.next())
        .await
        .map_err(|_| ClientError::Timeout(HANDSHAKE_TIMEOUT))?;
    match answer {
        Some(Ok(WireFrame::Hello(_))) => {}
        Some(Ok(WireFrame::Close(close))) => {
            let (code, reason) = close.unwrap_or((CloseCode::Normal.as_u16(), String::new()));
            return Err(ClientError::Refused(CloseCode::from(code), reason));
        }
        Some(Err(FrameError::Io(err))) => return Err(err.into()),
        None => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
        Some(other) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected answer to HELLO: {other:?}"),
            )
            .into());
        }
    }
    let text = codec.is_text();
    // A broken connection ends the stream, as a closed one does.
    Ok(framed
        .take_while(|frame| std::future::ready(frame.is_ok()))
        .filter_map(move |frame| {
            std::future::ready(frame.ok().and_then(|frame| outbound(frame, text)))
        }))
}

/// What a server's frame means to the client; `None` for frames it skips.
fn outbound(frame: WireFrame, text: bool) -> Option<Outbound> {
    Some(match frame {
        WireFrame::Message(bytes) if text => match Frame::text_from_bytes(bytes.clone()) {
            Some(frame) => Outbound::Frame(frame),
            // Not UTF-8: the task reports a binary frame on a JSON connection.
            None => Outbound::Frame(Frame::binary(bytes)),
        },
        WireFrame::Message(bytes) => Outbound::Frame(Frame::binary(bytes)),
        WireFrame::Ping => Outbound::Ping,
        WireFrame::Close(close) => {
            let (code, reason) = close.unwrap_or((NO_STATUS, String::new()));
            Outbound::Close(CloseCode::from(code), reason)
        }
        // Only the handshake has a HELLO; a second one is ignored.
        WireFrame::Pong | WireFrame::Hello(_) => return None,
    })
}
