//! The malformed-input catalogue: every class of bad input a client can
//! send, over WebSocket and TCP and in every codec, on real sockets, each
//! with its documented answer (an `error` event, an `auth:error`, or a
//! close code; see docs/PROTOCOL.md), while two well-behaved clients, one
//! on each transport and in a room with the bad one, go on undisturbed.

use futures_util::{SinkExt, StreamExt};
use liweb::{
    BincodeCodec, Codec, CodecKind, ConnId, DisconnectReason, MsgPackCodec, auth::Auth,
    client::Incoming,
};
use liweb_tests::{
    RawClient, RawTcp, Record, RoomRef, Running, TcpFrame, TestClient, TestOut, WAIT, eventually,
    fence, next,
};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::{
    Message,
    protocol::frame::{
        Frame,
        coding::{Data, OpCode},
    },
};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The server's frame limit in this file: the default.
const MAX: usize = 64 * 1024;

/// The connection a bad input arrives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// A raw WebSocket connection speaking JSON.
    Ws,
    /// The typed client over WebSocket, speaking this codec.
    WsCodec(CodecKind),
    /// A raw TCP connection after the JSON handshake.
    Tcp,
    /// The typed client over TCP, speaking this codec.
    TcpCodec(CodecKind),
    /// A raw TCP connection before any handshake.
    TcpBare,
}

/// One bad input, as it goes on the wire.
enum Input {
    /// A WebSocket text frame, or a TCP `MESSAGE`, with this text.
    Text(String),
    /// A WebSocket binary frame, or a TCP `MESSAGE`, with these bytes.
    Binary(Vec<u8>),
    /// A WebSocket text frame whose bytes are not UTF-8.
    RawText(Vec<u8>),
    /// A text message split into WebSocket frames with these payloads.
    Fragments(Vec<Vec<u8>>),
    /// Bytes written to the socket as they are, below any framing.
    Bytes(Vec<u8>),
    /// Bytes written as they are, then the end of the writing direction.
    BytesThenEnd(Vec<u8>),
}

/// The documented answer to a bad input.
#[derive(Debug, PartialEq)]
enum Answer {
    /// An `error` event with this code, naming this event (if any); the
    /// connection stays open.
    Error(&'static str, Option<&'static str>),
    /// `auth:error` with this reason; the connection stays open.
    AuthError(&'static str),
    /// The connection is closed with this code.
    Close(u16),
    /// Not bad after all: handled, `echoed` with a text of this length.
    Echoed(usize),
}

struct Case {
    name: &'static str,
    via: Via,
    input: Input,
    answer: Answer,
}

fn text(text: impl Into<String>) -> Input {
    Input::Text(text.into())
}

/// An `echo` message of exactly `len` bytes of JSON.
fn echo_of_len(len: usize) -> String {
    let frame = r#"{"event":"echo","payload":""}"#;
    format!(
        r#"{{"event":"echo","payload":"{}"}}"#,
        "x".repeat(len - frame.len())
    )
}

/// A TCP frame with this length prefix and kind, and this body.
fn tcp_frame(len: u32, kind: u8, body: &[u8]) -> Vec<u8> {
    let mut frame = len.to_be_bytes().to_vec();
    frame.push(kind);
    frame.extend_from_slice(body);
    frame
}

/// The header of a masked WebSocket text frame announcing `len` bytes of
/// payload, without the payload.
fn ws_header(len: u64) -> Vec<u8> {
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&len.to_be_bytes());
    header.extend_from_slice(&[0x11, 0x22, 0x33, 0x44]);
    header
}

fn catalogue() -> Vec<Case> {
    use Answer::{Close, Echoed, Error};
    use CodecKind::{Bincode, MessagePack};
    use Via::{Tcp, TcpBare, TcpCodec, Ws, WsCodec};
    // Deep enough to overflow a recursive parser's stack, small enough to
    // pass the frame limit: the envelope skips the payload without
    // recursing, and decoding it stops at serde_json's depth limit.
    let nested = format!(
        r#"{{"event":"echo","payload":{}"x"{}}}"#,
        "[".repeat(30_000),
        "]".repeat(30_000)
    );
    // The limit exactly, with a payload of the wrong shape.
    let numbers = r#"{"event":"echo","payload":[]}"#;
    let numbers = format!(
        r#"{{"event":"echo","payload":[{}1]}}"#,
        "1,".repeat((MAX - numbers.len() - 1) / 2)
    );
    assert_eq!(numbers.len(), MAX);
    let case = |name, via, input, answer| Case {
        name,
        via,
        input,
        answer,
    };
    vec![
        // JSON over WebSocket.
        case(
            "not JSON",
            Ws,
            text("hello there"),
            Error("bad_frame", None),
        ),
        case(
            "JSON, not an object",
            Ws,
            text("[1, 2, 3]"),
            Error("bad_frame", None),
        ),
        case(
            "no event",
            Ws,
            text(r#"{"payload": "x"}"#),
            Error("bad_frame", None),
        ),
        case(
            "event not a string",
            Ws,
            text(r#"{"event": 5, "payload": "x"}"#),
            Error("bad_frame", None),
        ),
        case(
            "unknown event",
            Ws,
            text(r#"{"event": "launch_missiles"}"#),
            Error("unknown_event", Some("launch_missiles")),
        ),
        case(
            "wrong payload shape",
            Ws,
            text(r#"{"event": "echo", "payload": {"text": "x"}}"#),
            Error("bad_payload", Some("echo")),
        ),
        case(
            "deeply nested JSON",
            Ws,
            Input::Text(nested),
            Error("bad_payload", Some("echo")),
        ),
        case(
            "a `__`-prefixed event",
            Ws,
            text(r#"{"event": "__admin", "payload": null}"#),
            Error("unknown_event", Some("__admin")),
        ),
        case(
            "an ack id of the wrong type",
            Ws,
            text(r#"{"event": "echo", "payload": "x", "ack": "seven"}"#),
            Error("bad_frame", None),
        ),
        case(
            "a negative ack id",
            Ws,
            text(r#"{"event": "echo", "payload": "x", "ack": -1}"#),
            Error("bad_frame", None),
        ),
        case(
            "a reply without an ack id",
            Ws,
            text(r#"{"event": "__ack", "payload": 1}"#),
            Error("bad_frame", Some("__ack")),
        ),
        case(
            "a binary frame on a JSON connection",
            Ws,
            Input::Binary(b"\x82\xa5event\xa4echo".to_vec()),
            Error("unsupported_frame", None),
        ),
        case(
            "a frame of exactly the size limit",
            Ws,
            Input::Text(echo_of_len(MAX)),
            Echoed(MAX - r#"{"event":"echo","payload":""}"#.len()),
        ),
        case(
            "a frame of exactly the size limit with a payload of the wrong shape",
            Ws,
            Input::Text(numbers),
            Error("bad_payload", Some("echo")),
        ),
        case(
            "a frame one byte over the size limit",
            Ws,
            Input::Text(echo_of_len(MAX + 1)),
            Close(1009),
        ),
        case(
            "a frame header announcing 1 GiB, and no payload",
            Ws,
            Input::Bytes(ws_header(1 << 30)),
            Close(1009),
        ),
        case(
            "a message in fragments under the limit that add up to more",
            Ws,
            Input::Fragments(vec![vec![b' '; 40 * 1024], vec![b' '; 40 * 1024]]),
            Close(1009),
        ),
        case(
            "an unmasked frame from the client",
            Ws,
            Input::Bytes(vec![0x81, 2, b'h', b'i']),
            Close(1002),
        ),
        case(
            "a reserved opcode",
            Ws,
            Input::Bytes(vec![0x83, 0x80, 1, 2, 3, 4]),
            Close(1002),
        ),
        case(
            "invalid UTF-8 in a text frame",
            Ws,
            Input::RawText(b"{\"event\":\"echo\",\"payload\":\"\xff\xfe\"}".to_vec()),
            Close(1007),
        ),
        // MessagePack over WebSocket.
        case(
            "MessagePack: a byte that is never MessagePack",
            WsCodec(MessagePack),
            Input::Binary(vec![0xc1]),
            Error("bad_frame", None),
        ),
        case(
            "MessagePack: an array, not a map",
            WsCodec(MessagePack),
            Input::Binary(vec![0x93, 1, 2, 3]),
            Error("bad_frame", None),
        ),
        case(
            "MessagePack: a map claiming 4 billion entries",
            WsCodec(MessagePack),
            Input::Binary(vec![0xdf, 0xff, 0xff, 0xff, 0xff]),
            Error("bad_frame", None),
        ),
        case(
            "MessagePack: JSON bytes",
            WsCodec(MessagePack),
            Input::Binary(br#"{"event":"echo","payload":"x"}"#.to_vec()),
            Error("bad_frame", None),
        ),
        case(
            "MessagePack: wrong payload shape",
            WsCodec(MessagePack),
            Input::Binary(msgpack("echo", &5u8)),
            Error("bad_payload", Some("echo")),
        ),
        case(
            "MessagePack: unknown event",
            WsCodec(MessagePack),
            Input::Binary(msgpack("launch_missiles", &())),
            Error("unknown_event", Some("launch_missiles")),
        ),
        case(
            "MessagePack: a text frame",
            WsCodec(MessagePack),
            text(r#"{"event":"echo","payload":"x"}"#),
            Error("unsupported_frame", None),
        ),
        // bincode over WebSocket.
        case(
            "bincode: an empty frame",
            WsCodec(Bincode),
            Input::Binary(Vec::new()),
            Error("bad_frame", None),
        ),
        case(
            "bincode: an event name claiming 2^63 bytes",
            WsCodec(Bincode),
            Input::Binary(vec![
                0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 1, 2,
            ]),
            Error("bad_frame", None),
        ),
        case(
            "bincode: garbage",
            WsCodec(Bincode),
            Input::Binary(vec![0xff; 64]),
            Error("bad_frame", None),
        ),
        case(
            "bincode: wrong payload shape",
            WsCodec(Bincode),
            Input::Binary(bincode("echo", &5u8)),
            Error("bad_payload", Some("echo")),
        ),
        case(
            "bincode: bytes after the payload",
            WsCodec(Bincode),
            Input::Binary([bincode("echo", &"x"), vec![0]].concat()),
            Error("bad_payload", Some("echo")),
        ),
        case(
            "bincode: unknown event",
            WsCodec(Bincode),
            Input::Binary(bincode("launch_missiles", &())),
            Error("unknown_event", Some("launch_missiles")),
        ),
        // JSON over TCP, after the handshake.
        case(
            "TCP: a message that is not JSON",
            Tcp,
            text("hello there"),
            Error("bad_frame", None),
        ),
        case(
            "TCP: unknown event",
            Tcp,
            text(r#"{"event": "launch_missiles"}"#),
            Error("unknown_event", Some("launch_missiles")),
        ),
        case(
            "TCP: a message of exactly the size limit",
            Tcp,
            Input::Text(echo_of_len(MAX)),
            Echoed(MAX - r#"{"event":"echo","payload":""}"#.len()),
        ),
        case(
            "TCP: a length prefix one over the limit, and no body",
            Tcp,
            Input::Bytes(u32::try_from(MAX + 2).unwrap().to_be_bytes().to_vec()),
            Close(1009),
        ),
        case(
            "TCP: a length prefix of 4 GiB, and no body",
            Tcp,
            Input::Bytes(u32::MAX.to_be_bytes().to_vec()),
            Close(1009),
        ),
        case(
            "TCP: a frame cut off by the end of the stream",
            Tcp,
            Input::BytesThenEnd(tcp_frame(100, 2, br#"{"event":"#)),
            Close(1002),
        ),
        case(
            "TCP: a length prefix cut off by the end of the stream",
            Tcp,
            Input::BytesThenEnd(vec![0, 0]),
            Close(1002),
        ),
        case(
            "TCP: an unknown frame kind",
            Tcp,
            Input::Bytes(tcp_frame(3, 0xff, &[0xfe, 0xfd])),
            Close(1002),
        ),
        case(
            "TCP: an empty frame",
            Tcp,
            Input::Bytes(vec![0, 0, 0, 0]),
            Close(1002),
        ),
        case(
            "TCP: a second HELLO",
            Tcp,
            Input::Bytes(tcp_frame(11, 1, b"liweb.json")),
            Close(1002),
        ),
        case(
            "TCP: a JSON message that is not UTF-8",
            Tcp,
            Input::Binary(vec![0xc3, 0x28]),
            Close(1007),
        ),
        case(
            "TCP: random bytes, read as a huge length",
            Tcp,
            Input::Bytes(vec![0xde, 0xad, 0xbe, 0xef, 0x13, 0x37]),
            Close(1009),
        ),
        // TCP before the handshake.
        case(
            "TCP: an HTTP request instead of HELLO",
            TcpBare,
            Input::Bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
            Close(1009),
        ),
        case(
            "TCP: a message instead of HELLO",
            TcpBare,
            Input::Bytes(tcp_frame(31, 2, br#"{"event":"echo","payload":"x"}"#)),
            Close(1002),
        ),
        case(
            "TCP: an unknown frame kind instead of HELLO",
            TcpBare,
            Input::Bytes(tcp_frame(1, 0x7f, &[])),
            Close(1002),
        ),
        case(
            "TCP: HELLO naming an unknown codec",
            TcpBare,
            Input::Bytes(tcp_frame(10, 1, b"liweb.xml")),
            Close(1003),
        ),
        // The binary codecs over TCP.
        case(
            "TCP, MessagePack: a byte that is never MessagePack",
            TcpCodec(MessagePack),
            Input::Binary(vec![0xc1]),
            Error("bad_frame", None),
        ),
        case(
            "TCP, MessagePack: wrong payload shape",
            TcpCodec(MessagePack),
            Input::Binary(msgpack("echo", &5u8)),
            Error("bad_payload", Some("echo")),
        ),
        case(
            "TCP, bincode: garbage",
            TcpCodec(Bincode),
            Input::Binary(vec![0xff; 64]),
            Error("bad_frame", None),
        ),
        case(
            "TCP, bincode: wrong payload shape",
            TcpCodec(Bincode),
            Input::Binary(bincode("echo", &5u8)),
            Error("bad_payload", Some("echo")),
        ),
    ]
}

fn msgpack(event: &str, payload: &impl serde::Serialize) -> Vec<u8> {
    MsgPackCodec::encode(event, None, payload).unwrap().to_vec()
}

fn bincode(event: &str, payload: &impl serde::Serialize) -> Vec<u8> {
    BincodeCodec::encode(event, None, payload).unwrap().to_vec()
}

/// A connection that sends bad input.
enum Victim {
    Ws(Box<Socket>),
    Typed(TestClient),
    Tcp(RawTcp),
}

async fn connect(running: &Running) -> Socket {
    let (socket, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(running.url()))
        .await
        .expect("connect timed out")
        .expect("connect failed");
    socket
}

/// Opens a connection of kind `via`; its id once `on_connect` ran for it
/// (a bare TCP connection never gets that far).
async fn open(running: &Running, via: Via) -> (Victim, Option<ConnId>) {
    let before = running.recorder.conns().len();
    let victim = match via {
        Via::Ws => Victim::Ws(Box::new(connect(running).await)),
        Via::WsCodec(codec) => Victim::Typed(running.connect_with(codec).await),
        Via::Tcp => Victim::Tcp(RawTcp::open(running.tcp_addr, "liweb.json").await),
        Via::TcpCodec(codec) => Victim::Typed(running.tcp_connect_with(codec).await),
        Via::TcpBare => return (Victim::Tcp(RawTcp::connect(running.tcp_addr).await), None),
    };
    (victim, Some(running.connected(before).await))
}

async fn send(victim: &mut Victim, input: Input) {
    match victim {
        Victim::Ws(socket) => {
            let messages = match input {
                Input::Text(text) => vec![Message::text(text)],
                Input::Binary(bytes) => vec![Message::binary(bytes)],
                Input::RawText(bytes) => vec![Message::Frame(Frame::message(
                    bytes,
                    OpCode::Data(Data::Text),
                    true,
                ))],
                Input::Fragments(parts) => {
                    let last = parts.len() - 1;
                    parts
                        .into_iter()
                        .enumerate()
                        .map(|(i, part)| {
                            let opcode = if i == 0 { Data::Text } else { Data::Continue };
                            Message::Frame(Frame::message(part, OpCode::Data(opcode), i == last))
                        })
                        .collect()
                }
                Input::Bytes(bytes) => {
                    let stream = socket.get_mut();
                    let _ = tokio::time::timeout(WAIT, stream.write_all(&bytes)).await;
                    return;
                }
                Input::BytesThenEnd(_) => panic!("not a WebSocket input"),
            };
            for message in messages {
                // A frame over the limit may be cut off by the server's
                // close; what counts is the answer.
                let _ = tokio::time::timeout(WAIT, socket.send(message)).await;
            }
        }
        Victim::Typed(client) => match input {
            Input::Text(text) => client.emit_raw(text).unwrap(),
            Input::Binary(bytes) => client.emit_raw_binary(bytes).unwrap(),
            _ => panic!("not an input of the typed client"),
        },
        Victim::Tcp(tcp) => match input {
            Input::Text(text) => tcp.send_frame(2, text.as_bytes()).await,
            Input::Binary(bytes) => tcp.send_frame(2, &bytes).await,
            Input::Bytes(bytes) => tcp.send_bytes(&bytes).await,
            Input::BytesThenEnd(bytes) => {
                tcp.send_bytes(&bytes).await;
                tcp.shutdown_write().await;
            }
            _ => panic!("not a TCP input"),
        },
    }
}

/// An answer read from a JSON message.
fn json_answer(value: &Value) -> Answer {
    let payload = &value["payload"];
    match value["event"].as_str() {
        Some("error") => Answer::Error(
            leak(payload["code"].as_str().expect("an error code")),
            payload["event"].as_str().map(leak),
        ),
        Some("auth:error") => {
            Answer::AuthError(leak(payload["reason"].as_str().expect("a reason")))
        }
        Some("echoed") => Answer::Echoed(payload.as_str().expect("the echoed text").len()),
        other => panic!("expected an answer, got {other:?}: {value}"),
    }
}

/// What the server answered: the first event or close.
async fn answer(victim: &mut Victim) -> Answer {
    match victim {
        Victim::Ws(socket) => ws_answer(socket).await,
        Victim::Typed(client) => match next(client).await {
            Incoming::Error(error) => Answer::Error(
                leak(serde_json::to_value(error.code).unwrap().as_str().unwrap()),
                error.event.as_deref().map(leak),
            ),
            Incoming::Event(TestOut::Echoed(text)) => Answer::Echoed(text.len()),
            Incoming::Closed(Some((code, _))) => Answer::Close(code.as_u16()),
            other => panic!("expected an answer, got {other:?}"),
        },
        Victim::Tcp(tcp) => loop {
            match tcp.next_frame().await {
                Some(TcpFrame::Message(bytes)) => {
                    let value: Value =
                        serde_json::from_slice(&bytes).expect("the server sends JSON");
                    break json_answer(&value);
                }
                Some(TcpFrame::Close(code, _)) => break Answer::Close(code),
                Some(TcpFrame::Ping) => continue,
                other => panic!("expected an answer, got {other:?}"),
            }
        },
    }
}

async fn ws_answer(socket: &mut Socket) -> Answer {
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("no answer from the server");
        match message {
            Some(Ok(Message::Text(text))) => {
                let value: Value =
                    serde_json::from_str(text.as_str()).expect("the server sends JSON");
                return json_answer(&value);
            }
            Some(Ok(Message::Close(Some(frame)))) => return Answer::Close(u16::from(frame.code)),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected an answer, got {other:?}"),
        }
    }
}

/// The strings of answers are compared against `'static` ones.
fn leak(text: &str) -> &'static str {
    Box::leak(text.to_owned().into_boxed_str())
}

/// After an answer that keeps the connection open, the connection still
/// works: its next event is handled, and nothing came before its answer.
async fn still_open(victim: &mut Victim, name: &str) {
    match victim {
        Victim::Ws(socket) => {
            socket
                .send(Message::text(
                    json!({"event": "echo", "payload": name}).to_string(),
                ))
                .await
                .expect("send");
            let message = tokio::time::timeout(WAIT, socket.next())
                .await
                .expect("no echo")
                .expect("the connection ended")
                .expect("websocket error");
            let Message::Text(text) = message else {
                panic!("expected the echo, got {message:?}");
            };
            let value: Value = serde_json::from_str(text.as_str()).unwrap();
            assert_eq!(value, json!({"event": "echoed", "payload": name}), "{name}");
        }
        Victim::Typed(client) => fence(client, name).await,
        Victim::Tcp(tcp) => tcp.fence(name).await,
    }
}

/// Conformance M4.
/// Conformance M5.
/// Conformance T2.
///
/// The malformed-input catalogue: each bad input, on its transport and in
/// its codec, gets its documented answer; the connection stays open unless
/// the answer is a close; the bad connection leaves its room and the
/// server once it is gone; and two bystanders in that room, one on each
/// transport, get the room's next message and nothing else.
#[tokio::test]
async fn every_class_of_bad_input_gets_its_documented_answer_and_disturbs_no_one() {
    let running = Running::start().await;
    assert_eq!(running.server.config().max_frame_size, MAX);
    let room = RoomRef::new("catalogue", "victims").on(&running.server);
    let (mut ws, ws_id): (RawClient, _) = running.raw_client().await;
    let (mut tcp, tcp_id) = running.raw_tcp_client().await;
    for id in [ws_id, tcp_id] {
        assert_eq!(room.join(&running.conn(id)).await, Ok(true));
    }
    let mut victims = Vec::new();
    for case in catalogue() {
        let (mut victim, id) = open(&running, case.via).await;
        if let Some(id) = id {
            assert_eq!(
                room.join(&running.conn(id)).await,
                Ok(true),
                "{}",
                case.name
            );
            victims.push(id);
        }
        send(&mut victim, case.input).await;
        let got = answer(&mut victim).await;
        assert_eq!(got, case.answer, "{}", case.name);
        match (case.answer, id) {
            (Answer::Close(code), Some(id)) => assert_eq!(
                running.recorder.disconnected(id).await,
                DisconnectReason::ServerClosed(code.into()),
                "{}",
                case.name
            ),
            (Answer::Close(_), None) => {}
            _ => still_open(&mut victim, case.name).await,
        }
        drop(victim);
        eventually(
            &format!("the connection of {:?} to be gone", case.name),
            || {
                let stats = running.server.stats();
                (room.size(), stats.connections, stats.live)
            },
            |&counts| counts == (2, 2, 2),
        )
        .await;
        // The bystanders get the room's next message, and nothing before it.
        let sent = room
            .emit(TestOut::RoomMessage(case.name.to_owned()))
            .unwrap();
        assert_eq!(sent, 2, "{}", case.name);
        let expected = json!({"event": "room_message", "payload": case.name});
        assert_eq!(ws.next().await, expected, "{}", case.name);
        assert_eq!(tcp.next().await, expected, "{}", case.name);
    }
    ws.fence("after the catalogue").await;
    tcp.fence("after the catalogue").await;
    // Each victim that the application saw was seen to go exactly once;
    // no bad input reached a handler that records.
    let disconnects = running
        .recorder
        .matching(|r| matches!(r, Record::Disconnected(..)));
    assert_eq!(disconnects.len(), victims.len());
    for id in victims {
        assert!(running.server.get(id).is_none());
        assert_eq!(running.conn(id).room_count(), 0);
    }
    assert!(
        running
            .recorder
            .matching(|r| matches!(r, Record::Handled(..) | Record::Error { .. }))
            .is_empty()
    );
}

/// The catalogue's authentication entries: events before authentication,
/// and forged user claims, on a server with a shared secret.
#[tokio::test]
async fn events_before_auth_and_forged_claims_are_refused() {
    let running = Running::start_with(|builder| builder.auth(Auth::secret("s3cret"))).await;
    let mut socket = Victim::Ws(Box::new(connect(&running).await));
    send(
        &mut socket,
        text(r#"{"event": "echo", "payload": "early"}"#),
    )
    .await;
    assert_eq!(
        answer(&mut socket).await,
        Answer::AuthError("not authenticated")
    );
    // A forged success is an event like any other: not authenticated.
    send(
        &mut socket,
        text(r#"{"event": "auth:success", "payload": {"user": {"id": "root"}}}"#),
    )
    .await;
    assert_eq!(
        answer(&mut socket).await,
        Answer::AuthError("not authenticated")
    );
    // Claims beside a wrong secret do not make a user.
    send(
        &mut socket,
        text(r#"{"event": "__auth", "payload": {"secret": "guess", "id": "root"}, "user": {"id": "root"}}"#),
    )
    .await;
    assert_eq!(
        answer(&mut socket).await,
        Answer::AuthError("invalid secret")
    );
    assert_eq!(answer(&mut socket).await, Answer::Close(4001));
    assert_eq!(running.server.stats().auth_failures, 1);
}
