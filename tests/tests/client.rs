//! The typed Rust client: listeners, the stream, errors and close.

use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use liweb::{CloseCode, ErrorCode, client::Incoming};
use liweb_tests::{Running, TestIn, TestOut, WAIT, fence, next, next_event, test_out};

#[tokio::test]
async fn typed_listeners_get_their_events_and_recv_gets_the_rest() {
    let running = Running::start().await;
    let (mut client, _) = running.client().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    {
        let seen = Arc::clone(&seen);
        client.on::<test_out::Ordered>(move |n: u32| {
            seen.lock().unwrap().push(n);
            let _ = tx.send(n);
        });
    }
    client.emit(TestIn::Order(1)).unwrap();
    client.emit(TestIn::Order(2)).unwrap();
    for expected in [1, 2] {
        let n = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, expected);
    }
    // Events with a listener are not queued for `recv`: the next item is the fence.
    fence(&mut client, "listener events skipped recv").await;
    assert_eq!(*seen.lock().unwrap(), [1, 2]);
}

#[tokio::test]
async fn the_client_is_a_stream_of_incoming_items() {
    let running = Running::start().await;
    let (mut client, _) = running.client().await;
    client.emit(TestIn::Ping).unwrap();
    client.emit_raw(r#"{"event":"nope"}"#).unwrap();
    let first = tokio::time::timeout(WAIT, client.next()).await.unwrap();
    assert!(
        matches!(first, Some(Incoming::Event(TestOut::Pong))),
        "{first:?}"
    );
    match tokio::time::timeout(WAIT, client.next()).await.unwrap() {
        Some(Incoming::Error(error)) => assert_eq!(error.code, ErrorCode::UnknownEvent),
        other => panic!("expected an error event, got {other:?}"),
    }
}

#[tokio::test]
async fn closing_from_the_client_ends_the_stream_with_closed() {
    let running = Running::start().await;
    let (mut client, _) = running.client().await;
    assert_eq!(
        {
            client.emit(TestIn::Echo("x".into())).unwrap();
            next_event(&mut client).await
        },
        TestOut::Echoed("x".into())
    );
    client.close(CloseCode::Normal, "done").unwrap();
    assert!(matches!(next(&mut client).await, Incoming::Closed(_)));
    let after = tokio::time::timeout(WAIT, client.recv()).await.unwrap();
    assert!(after.is_none(), "nothing follows `Closed`: {after:?}");
    assert!(
        client.emit(TestIn::Ping).is_err(),
        "emitting after close fails"
    );
}

/// Events of the request tests: clients ask, the server answers, and back.
#[derive(Debug, liweb::Events)]
enum AskIn {
    /// Answered with the text's length.
    Length(String),
    /// Answered with an error reply.
    Refuse,
    /// Makes the server ask the client to confirm, and report the answer.
    AskMe(String),
}

#[derive(Debug, liweb::Events)]
enum AskOut {
    /// A server request; the client answers with a `bool`.
    Confirm(String),
    /// What the client answered to `confirm`.
    Confirmed(bool),
    /// The server's request failed.
    RequestFailed(String),
}

#[liweb::handler(AskIn::Length, out = AskOut)]
async fn length(text: String) -> Result<usize, std::convert::Infallible> {
    Ok(text.chars().count())
}

#[liweb::handler(AskIn::Refuse, out = AskOut)]
async fn refuse() -> Result<(), &'static str> {
    Err("not today")
}

#[liweb::handler(AskIn::AskMe)]
async fn ask_me(conn: liweb::Conn<AskOut>, question: String) {
    let answer: Result<bool, _> = conn
        .request(AskOut::Confirm(question))
        .timeout(std::time::Duration::from_millis(500))
        .await;
    let _ = match answer {
        Ok(yes) => conn.emit(AskOut::Confirmed(yes)),
        Err(err) => conn.emit(AskOut::RequestFailed(err.to_string())),
    };
}

type AskClient = liweb::client::Client<AskOut, AskIn>;

async fn ask_server() -> String {
    let server = liweb::Server::<AskIn, AskOut>::builder()
        .handler(length)
        .handler(refuse)
        .handler(ask_me)
        .build();
    let app = axum::Router::new().route("/ws", server.ws_route());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("ws://{addr}/ws")
}

async fn ask_client(url: &str) -> AskClient {
    tokio::time::timeout(WAIT, AskClient::connect(url))
        .await
        .expect("connect timed out")
        .expect("connect failed")
}

/// Conformance M13, from the Rust client.
#[tokio::test]
async fn a_client_request_resolves_with_the_handler_return_value_or_its_error() {
    let url = ask_server().await;
    let client = ask_client(&url).await;
    let length: usize = client
        .request(AskIn::Length("grün".into()))
        .timeout(WAIT)
        .await
        .unwrap();
    assert_eq!(length, 4);
    match client.request::<()>(AskIn::Refuse).timeout(WAIT).await {
        Err(liweb::client::ClientError::Rejected(error)) => {
            assert_eq!(error.code, ErrorCode::HandlerFailed);
            assert_eq!(error.message, "not today");
        }
        other => panic!("expected an error reply, got {other:?}"),
    }
}

/// Conformance M14, from the Rust client: it answers with a function, or
/// through the responder it receives, and an unanswered request times out.
#[tokio::test]
async fn a_server_request_is_answered_by_the_client() {
    let url = ask_server().await;

    let mut answering = ask_client(&url).await;
    answering.on_request::<ask_out::Confirm, _, _>(|question: String| question.ends_with('?'));
    answering.emit(AskIn::AskMe("ready?".into())).unwrap();
    match tokio::time::timeout(WAIT, answering.recv()).await.unwrap() {
        Some(Incoming::Event(AskOut::Confirmed(yes))) => assert!(yes),
        other => panic!("expected the server to report the answer, got {other:?}"),
    }

    let mut by_hand = ask_client(&url).await;
    by_hand.emit(AskIn::AskMe("sure".into())).unwrap();
    match tokio::time::timeout(WAIT, by_hand.recv()).await.unwrap() {
        Some(Incoming::Request(AskOut::Confirm(question), responder)) => {
            assert_eq!(question, "sure");
            responder.reply(&false).unwrap();
        }
        other => panic!("expected a request, got {other:?}"),
    }
    match tokio::time::timeout(WAIT, by_hand.recv()).await.unwrap() {
        Some(Incoming::Event(AskOut::Confirmed(yes))) => assert!(!yes),
        other => panic!("expected the server to report the answer, got {other:?}"),
    }

    let mut silent = ask_client(&url).await;
    silent.emit(AskIn::AskMe("anyone?".into())).unwrap();
    assert!(matches!(
        tokio::time::timeout(WAIT, silent.recv()).await.unwrap(),
        Some(Incoming::Request(AskOut::Confirm(_), _))
    ));
    match tokio::time::timeout(WAIT, silent.recv()).await.unwrap() {
        Some(Incoming::Event(AskOut::RequestFailed(reason))) => {
            assert!(reason.contains("no reply"), "{reason}")
        }
        other => panic!("expected the server's request to time out, got {other:?}"),
    }
}
