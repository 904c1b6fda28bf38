//! The malformed-input catalogue: every class of bad input a WebSocket
//! client can send, over real sockets, each with its documented answer (an
//! `error` event, an `auth:error`, or a close code; see docs/PROTOCOL.md),
//! while a well-behaved client on the same server goes on undisturbed.

use futures_util::{SinkExt, StreamExt};
use liweb::auth::Auth;
use liweb_tests::{RawClient, Running, WAIT, eventually};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{
    Message,
    protocol::frame::{
        Frame,
        coding::{Data, OpCode},
    },
};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One bad input, as it goes on the wire.
enum Input {
    /// A text frame with this text.
    Text(String),
    /// A binary frame with these bytes.
    Binary(Vec<u8>),
    /// A text frame whose bytes are not UTF-8.
    RawText(Vec<u8>),
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
}

struct Case {
    name: &'static str,
    input: Input,
    answer: Answer,
}

fn text(text: impl Into<String>) -> Input {
    Input::Text(text.into())
}

fn catalogue() -> Vec<Case> {
    // Deep enough to overflow a recursive parser's stack, small enough to
    // pass the frame limit: the envelope skips the payload without
    // recursing, and decoding it stops at serde_json's depth limit.
    let nested = format!(
        r#"{{"event":"echo","payload":{}"x"{}}}"#,
        "[".repeat(30_000),
        "]".repeat(30_000)
    );
    // Over the default 64 KiB frame limit.
    let huge = format!(
        r#"{{"event":"echo","payload":"{}"}}"#,
        "x".repeat(70 * 1024)
    );
    vec![
        Case {
            name: "not JSON",
            input: text("hello there"),
            answer: Answer::Error("bad_frame", None),
        },
        Case {
            name: "JSON, not an object",
            input: text("[1, 2, 3]"),
            answer: Answer::Error("bad_frame", None),
        },
        Case {
            name: "no event",
            input: text(r#"{"payload": "x"}"#),
            answer: Answer::Error("bad_frame", None),
        },
        Case {
            name: "event not a string",
            input: text(r#"{"event": 5, "payload": "x"}"#),
            answer: Answer::Error("bad_frame", None),
        },
        Case {
            name: "unknown event",
            input: text(r#"{"event": "launch_missiles"}"#),
            answer: Answer::Error("unknown_event", Some("launch_missiles")),
        },
        Case {
            name: "wrong payload shape",
            input: text(r#"{"event": "echo", "payload": {"text": "x"}}"#),
            answer: Answer::Error("bad_payload", Some("echo")),
        },
        Case {
            name: "deeply nested JSON",
            input: Input::Text(nested),
            answer: Answer::Error("bad_payload", Some("echo")),
        },
        Case {
            name: "a `__`-prefixed event",
            input: text(r#"{"event": "__admin", "payload": null}"#),
            answer: Answer::Error("unknown_event", Some("__admin")),
        },
        Case {
            name: "an ack id of the wrong type",
            input: text(r#"{"event": "echo", "payload": "x", "ack": "seven"}"#),
            answer: Answer::Error("bad_frame", None),
        },
        Case {
            name: "a negative ack id",
            input: text(r#"{"event": "echo", "payload": "x", "ack": -1}"#),
            answer: Answer::Error("bad_frame", None),
        },
        Case {
            name: "a reply without an ack id",
            input: text(r#"{"event": "__ack", "payload": 1}"#),
            answer: Answer::Error("bad_frame", Some("__ack")),
        },
        Case {
            name: "a binary frame on a JSON connection",
            input: Input::Binary(b"\x82\xa5event\xa4echo".to_vec()),
            answer: Answer::Error("unsupported_frame", None),
        },
        Case {
            name: "a frame over the size limit",
            input: Input::Text(huge),
            answer: Answer::Close(1009),
        },
        Case {
            name: "invalid UTF-8 in a text frame",
            input: Input::RawText(b"{\"event\":\"echo\",\"payload\":\"\xff\xfe\"}".to_vec()),
            answer: Answer::Close(1007),
        },
    ]
}

async fn connect(running: &Running) -> Socket {
    let (socket, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(running.url()))
        .await
        .expect("connect timed out")
        .expect("connect failed");
    socket
}

async fn send(socket: &mut Socket, input: Input) {
    let message = match input {
        Input::Text(text) => Message::text(text),
        Input::Binary(bytes) => Message::binary(bytes),
        Input::RawText(bytes) => {
            Message::Frame(Frame::message(bytes, OpCode::Data(Data::Text), true))
        }
    };
    // A frame over the limit may be cut off by the server's close; what
    // counts is the answer below.
    let _ = tokio::time::timeout(WAIT, socket.send(message)).await;
}

/// What the server answered: the first event or close frame.
async fn answer(socket: &mut Socket) -> Answer {
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("no answer from the server");
        match message {
            Some(Ok(Message::Text(text))) => {
                let value: Value =
                    serde_json::from_str(text.as_str()).expect("the server sends JSON");
                let payload = &value["payload"];
                return match value["event"].as_str() {
                    Some("error") => Answer::Error(
                        leak(payload["code"].as_str().expect("an error code")),
                        payload["event"].as_str().map(leak),
                    ),
                    Some("auth:error") => {
                        Answer::AuthError(leak(payload["reason"].as_str().expect("a reason")))
                    }
                    other => panic!("expected an error, got {other:?}: {value}"),
                };
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
/// works: its next event is handled.
async fn still_open(socket: &mut Socket, name: &str) {
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

/// The malformed-input catalogue over WebSocket: each bad input gets its
/// documented answer, the connection stays open unless the answer is a
/// close, and a second client sees nothing of it.
#[tokio::test]
async fn every_class_of_bad_input_gets_its_documented_answer_and_disturbs_no_one() {
    let running = Running::start().await;
    let mut bystander: RawClient = running.raw_connect().await;
    bystander.fence("before").await;
    for case in catalogue() {
        let mut socket = connect(&running).await;
        send(&mut socket, case.input).await;
        let got = answer(&mut socket).await;
        assert_eq!(got, case.answer, "{}", case.name);
        if !matches!(case.answer, Answer::Close(_)) {
            still_open(&mut socket, case.name).await;
        }
        // Nothing reached the other client: its next frame is its own echo.
        bystander.fence(case.name).await;
    }
    // Every bad client is gone once its socket is; the bystander remains.
    eventually(
        "only the well-behaved client to be left",
        || running.server.connection_count(),
        |&count| count == 1,
    )
    .await;
}

/// The catalogue's authentication entries: events before authentication,
/// and forged user claims, on a server with a shared secret.
#[tokio::test]
async fn events_before_auth_and_forged_claims_are_refused() {
    let running = Running::start_with(|builder| builder.auth(Auth::secret("s3cret"))).await;
    let mut socket = connect(&running).await;
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
