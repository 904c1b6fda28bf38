//! Inputs the fuzz targets in `fuzz/` found, each kept as a test so that
//! `cargo test` covers them without cargo-fuzz. Each test names the target
//! that found its input.

use futures_util::{SinkExt, StreamExt};
use liweb::{
    __fuzz::{
        self,
        tcp::{Error, Frame, FrameDecoder},
    },
    CodecKind, Input,
    prelude::*,
};
use liweb_tests::{RawTcp, Running, TcpFrame, WAIT};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Decodes `stream` whole, then at its end, as a connection reads it.
fn read_all(stream: &[u8], max: usize) -> (Vec<Frame>, Option<Error>) {
    let mut decoder = FrameDecoder::new(max);
    let mut buf = bytes::BytesMut::from(stream);
    let mut frames = Vec::new();
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => break,
            Err(error) => return (frames, Some(error)),
        }
    }
    loop {
        match decoder.decode_eof(&mut buf) {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => return (frames, None),
            Err(error) => return (frames, Some(error)),
        }
    }
}

/// Found by `tcp_frame`: a `PING` carrying the bytes of a `HELLO` was read
/// as a plain `PING`, its body silently dropped.
///
/// Conformance T2.
#[test]
fn t2_a_ping_or_pong_with_a_body_is_malformed() {
    let found = [
        0, 0, 0, 0xe, 3, b'l', b'i', b'w', b'e', b'b', b'.', b'm', b's', b'g', b'p', b'a', b'c',
        b'k', 0, 0, 0, 0, 2, b'{', b'e', b'"', b't', 0xff,
    ];
    assert_eq!(
        read_all(&found, 1020),
        (
            vec![],
            Some(Error::Malformed("a PING frame has no body".into()))
        )
    );
    assert_eq!(
        read_all(&[0, 0, 0, 2, 4, 0], 16),
        (
            vec![],
            Some(Error::Malformed("a PONG frame has no body".into()))
        )
    );
    assert_eq!(
        read_all(&[0, 0, 0, 2, 5, 3], 16),
        (
            vec![],
            Some(Error::Malformed(
                "a CLOSE body is a 2-byte code and a reason".into()
            ))
        )
    );
    // The frames liweb writes still read back.
    assert_eq!(
        read_all(&[0, 0, 0, 1, 3, 0, 0, 0, 1, 4, 0, 0, 0, 1, 5], 16),
        (vec![Frame::Ping, Frame::Pong, Frame::Close(None)], None)
    );
}

/// Found by `tcp_frame`: a stream that ended right after a length prefix
/// ended "cleanly": the prefix was consumed, nothing was left over, and the
/// cut frame went unnoticed.
///
/// Conformance T2.
#[test]
fn t2_a_stream_ending_after_a_length_prefix_is_truncated() {
    // The input as found: limit byte 0xff, piece byte 0xe9, then the stream.
    assert_eq!(
        read_all(&[0, 0, 0, 1], 1020),
        (vec![], Some(Error::Truncated))
    );
    assert_eq!(
        read_all(&[0, 0, 0, 1, 3, 0, 0, 0, 9], 1020),
        (vec![Frame::Ping], Some(Error::Truncated))
    );
    assert_eq!(read_all(&[], 1020), (vec![], None));
}

/// The same two inputs over a real socket: each closes the connection with
/// a protocol error, not as a clean end.
///
/// Conformance T2.
#[tokio::test]
async fn t2_bodies_on_pings_and_a_bare_length_prefix_close_with_protocol_error() {
    let running = Running::start().await;

    let (mut bad, _) = running.raw_tcp_client().await;
    bad.send_frame(3, b"liweb.msgpack").await;
    assert_eq!(
        bad.closed().await,
        (1002, "a PING frame has no body".into())
    );

    let (mut bad, _) = running.raw_tcp_client().await;
    bad.send_bytes(&1u32.to_be_bytes()).await;
    bad.shutdown_write().await;
    assert_eq!(
        bad.closed().await,
        (1002, "the stream ended inside a frame".into())
    );

    // Others are unaffected.
    let mut good = RawTcp::open(running.tcp_addr, "liweb.json").await;
    good.fence("still serving").await;
    good.send_frame(5, &1000u16.to_be_bytes()).await;
    assert!(matches!(
        good.next_frame().await,
        Some(TcpFrame::Close(..)) | None
    ));
}

/// Found against the `json_frame` target's reply check: a reply spelling
/// `__ack` with a `\u` escape decodes as a reply, but the connection loop
/// did not look at it as one, so it queued behind the handler waiting for
/// it.
///
/// Conformance M14.
#[test]
fn m14_an_escaped_reply_name_is_recognised_as_a_possible_reply() {
    let found = r#"{"event":"\u005f_ack","ack":1}"#;
    let decoded = __fuzz::decode_frame(CodecKind::Json, Input::Text(found)).unwrap();
    assert_eq!(decoded.event, "__ack");
    assert!(__fuzz::may_be_reply(CodecKind::Json, Input::Text(found)));
}

#[derive(Events)]
enum AskIn {
    Ask,
}

#[derive(Events)]
enum AskOut {
    Question(String),
    Answer(String),
}

/// Asks the client a question and waits for the reply inside the handler,
/// so the reply must overtake the handler's own connection queue.
#[liweb::handler(AskIn::Ask)]
async fn ask(conn: Conn<AskOut>) -> Result<(), liweb::EmitError> {
    let reply = conn
        .request::<String>(AskOut::Question("name?".into()))
        .timeout(WAIT)
        .await;
    conn.emit(AskOut::Answer(format!("{reply:?}")))
}

/// The escaped reply over a real WebSocket, to a handler that waits for it.
///
/// Conformance M14.
#[tokio::test]
async fn m14_an_escaped_reply_reaches_the_handler_waiting_for_it() {
    let server = Server::<AskIn, AskOut>::builder().handler(ask).build();
    let (addr, _tcp_addr) = liweb_tests::serve(&server).await;
    let (mut socket, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws")),
    )
    .await
    .expect("connect timed out")
    .expect("connect failed");

    socket
        .send(Message::text(json!({ "event": "ask" }).to_string()))
        .await
        .unwrap();
    let question = read_text(&mut socket).await;
    assert_eq!(question["event"], "question");
    let ack = question["ack"].as_u64().expect("a request has an ack id");
    socket
        .send(Message::text(format!(
            r#"{{"event":"\u005f_ack","ack":{ack},"payload":"ada"}}"#
        )))
        .await
        .unwrap();
    // Queued behind the handler, the reply would only be read after the
    // request timed out, and the answer would be the timeout.
    let answer = tokio::time::timeout(WAIT / 2, read_text(&mut socket))
        .await
        .expect("the reply did not reach the waiting handler");
    assert_eq!(
        answer,
        json!({ "event": "answer", "payload": r#"Ok("ada")"# })
    );
}

async fn read_text<S>(socket: &mut S) -> Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("timed out waiting for the server")
            .expect("the server closed")
            .expect("the socket failed");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}
