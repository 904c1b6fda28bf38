//! Conformance M13 and M14 (acknowledgements): replies to client requests,
//! and server requests to one connection, a room, or every connection.
//! Each test is written once and runs on every transport × codec
//! combination (`m13_...::ws_json`, `m13_...::tcp_bincode`, ...).

use std::time::Duration;

use futures_util::StreamExt;
use liweb::{
    BincodeCodec, Codec, CodecKind, ErrorCode, ErrorPayload, JsonCodec, MsgPackCodec, RequestError,
    client::ClientError,
};
use liweb_tests::{
    JoinOutcome, Msg, Peer, Record, RoomRef, Running, TestIn, TestOut, WAIT, conformance, test_out,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

fn handled(running: &Running) -> Vec<Record> {
    running
        .recorder
        .matching(|r| matches!(r, Record::Handled(..)))
}

/// The `divide` payload.
#[derive(Serialize)]
struct Divide {
    num: i64,
    den: i64,
}

/// A `divide` payload of the wrong shape.
#[derive(Serialize)]
struct BadDivide {
    num: &'static str,
    den: i64,
}

/// A reply of the room request test.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Okay {
    ok: bool,
}

/// Asserts that `msg` is the reply to request `ack` with `payload`, and
/// nothing else.
fn assert_reply(peer: &Peer, msg: &Msg, ack: u64, payload: i64) {
    assert_eq!(msg.event(), "__ack", "{msg:?}");
    assert_eq!(msg.ack(), Some(ack));
    assert_eq!(msg.error(), None);
    assert_eq!(msg.payload::<i64>(), payload);
    if peer.combo().self_describing() {
        assert_eq!(
            msg.json(),
            json!({ "event": "__ack", "ack": ack, "payload": payload })
        );
    }
}

/// The error of the error reply `msg` to request `ack`.
fn error_reply(msg: &Msg, ack: u64) -> ErrorPayload {
    assert_eq!(msg.event(), "__ack", "{msg:?}");
    assert_eq!(msg.ack(), Some(ack));
    msg.error().expect("an error reply")
}

/// A client's error reply to request `ack`, in `codec`.
fn encode_error_reply(codec: CodecKind, ack: u64, error: &ErrorPayload) -> Vec<u8> {
    match codec {
        CodecKind::Json => JsonCodec::encode_error_reply(ack, error),
        CodecKind::MessagePack => MsgPackCodec::encode_error_reply(ack, error),
        CodecKind::Bincode => BincodeCodec::encode_error_reply(ack, error),
        other => panic!("no encoder for {other:?}"),
    }
    .unwrap()
    .to_vec()
}

/// The id of the server request `msg` asking `question`.
fn question_id(msg: &Msg, question: &str) -> u64 {
    assert_eq!(msg.event(), "question", "{msg:?}");
    assert_eq!(msg.payload::<String>(), question);
    msg.ack().expect("a request carries an ack id")
}

conformance! {
    /// Conformance M13.
    async fn m13_a_request_gets_the_handlers_reply_with_its_ack_id(combo) {
        let running = Running::start().await;
        let (mut peer, _) = running.peer_on(combo).await;
        peer.request("divide", &Divide { num: 7, den: 2 }, 7).await;
        let msg = peer.next().await;
        assert_reply(&peer, &msg, 7, 3);
        // Ids are the client's: any number, answered as given, in order.
        peer.request("divide", &Divide { num: -9, den: 3 }, u64::MAX)
            .await;
        peer.request("divide", &Divide { num: 0, den: 5 }, 0).await;
        let msg = peer.next().await;
        assert_reply(&peer, &msg, u64::MAX, -3);
        let msg = peer.next().await;
        assert_reply(&peer, &msg, 0, 0);
        assert_eq!(
            handled(&running),
            vec![
                Record::Handled("divide", "7/2".into()),
                Record::Handled("divide", "-9/3".into()),
                Record::Handled("divide", "0/5".into()),
            ]
        );
    }

    /// Conformance M13.
    async fn m13_a_handler_error_becomes_an_error_reply_with_the_ack_id(combo) {
        let running = Running::start().await;
        let (mut peer, id) = running.peer_on(combo).await;
        peer.request("divide", &Divide { num: 1, den: 0 }, 8).await;
        let msg = peer.next().await;
        assert_eq!(
            error_reply(&msg, 8),
            ErrorPayload {
                code: ErrorCode::HandlerFailed,
                message: "boom".into(),
                event: Some("divide".into()),
            }
        );
        if combo.self_describing() {
            assert_eq!(
                msg.json(),
                json!({
                    "event": "__ack",
                    "ack": 8,
                    "error": { "code": "handler_failed", "message": "boom", "event": "divide" },
                })
            );
        }
        peer.fence("still open").await;
        assert_eq!(
            running
                .recorder
                .matching(|r| matches!(r, Record::Error { .. })),
            vec![Record::Error {
                conn: id,
                event: Some("divide"),
                // The handler's own error ("boom") is the source.
                error: "handler failed".into(),
            }],
            "the error hook heard of it too"
        );
    }

    /// Conformance M13.
    async fn m13_requests_that_cannot_be_handled_get_error_replies(combo) {
        let running = Running::start().await;
        let (mut peer, _) = running.peer_on(combo).await;

        peer.request("no_such_event", &1, 1).await;
        let msg = peer.next().await;
        let error = error_reply(&msg, 1);
        assert_eq!(error.code, ErrorCode::UnknownEvent);
        assert_eq!(error.event.as_deref(), Some("no_such_event"));
        if combo.self_describing() {
            assert_eq!(msg.json().get("payload"), None, "{msg:?}");
        }

        peer.request("divide", &BadDivide { num: "seven", den: 1 }, 2)
            .await;
        let msg = peer.next().await;
        let error = error_reply(&msg, 2);
        assert_eq!(error.code, ErrorCode::BadPayload);
        assert_eq!(error.event.as_deref(), Some("divide"));
        if combo.self_describing() {
            assert!(error.message.contains("num"), "{error:?}");
        }

        peer.fence("still open").await;
        assert_eq!(handled(&running), vec![]);
    }

    /// Conformance M13.
    async fn m13_a_handler_without_a_value_answers_null_after_it_ran(combo) {
        let running = Running::start().await;
        let (mut peer, _) = running.peer_on(combo).await;
        peer.request("echo", "hi", 5).await;
        // The handler's emit is queued before the request's answer.
        let msg = peer.next().await;
        assert_eq!(msg.event(), "echoed");
        assert_eq!(msg.payload::<String>(), "hi");
        let msg = peer.next().await;
        assert_eq!(msg.event(), "__ack", "{msg:?}");
        assert_eq!(msg.ack(), Some(5));
        assert_eq!(msg.error(), None);
        msg.payload::<()>();
        if combo.self_describing() {
            assert_eq!(
                msg.json(),
                json!({ "event": "__ack", "ack": 5, "payload": null })
            );
        }
    }

    /// Conformance M13.
    async fn m13_the_ack_extractor_answers_once_and_first(combo) {
        let running = Running::start().await;
        let (mut peer, _) = running.peer_on(combo).await;
        peer.request("ack_early", "x", 11).await;
        let msg = peer.next().await;
        assert_eq!(msg.event(), "__ack", "{msg:?}");
        assert_eq!(msg.ack(), Some(11));
        assert_eq!(msg.payload::<String>(), "early x");
        if combo.self_describing() {
            assert_eq!(
                msg.json(),
                json!({ "event": "__ack", "ack": 11, "payload": "early x" })
            );
        }
        // The handler's own return value is not a second answer.
        peer.fence("one answer only").await;
        // Without an ack id there is nothing to answer, and nothing is sent.
        peer.emit("ack_early", "y").await;
        peer.fence("no answer").await;
        assert_eq!(
            handled(&running),
            vec![
                Record::Handled("ack_early", "x sent=true".into()),
                Record::Handled("ack_early", "y sent=false".into()),
            ]
        );
    }

    /// Conformance M13, through the Rust client.
    async fn m13_the_client_gets_replies_and_error_replies(combo) {
        let running = Running::start().await;
        let (client, _) = running.client_on(combo).await;
        let quotient: i64 = client
            .request(TestIn::Divide { num: 7, den: -2 })
            .timeout(WAIT)
            .await
            .unwrap();
        assert_eq!(quotient, -3);
        match client
            .request::<i64>(TestIn::Divide { num: 1, den: 0 })
            .timeout(WAIT)
            .await
        {
            Err(ClientError::Rejected(error)) => {
                assert_eq!(error.code, ErrorCode::HandlerFailed);
                assert_eq!(error.message, "boom");
                assert_eq!(error.event.as_deref(), Some("divide"));
            }
            other => panic!("expected an error reply, got {other:?}"),
        }
        let early: String = client
            .request(TestIn::AckEarly("x".into()))
            .timeout(WAIT)
            .await
            .unwrap();
        assert_eq!(early, "early x");
    }

    /// Conformance M14.
    async fn m14_a_server_request_resolves_with_the_clients_reply(combo) {
        let running = Running::start().await;
        let (mut peer, id) = running.peer_on(combo).await;
        let conn = running.conn(id);
        let asking = tokio::spawn(async move {
            conn.request::<Vec<u32>>(TestOut::Question("which?".into()))
                .timeout(WAIT)
                .await
        });

        let question = peer.next().await;
        let ack = question_id(&question, "which?");
        if combo.self_describing() {
            assert_eq!(
                question.json(),
                json!({ "event": "question", "payload": "which?", "ack": ack })
            );
        }
        // A `Vec`: bincode writes an array as a tuple, without the length a `Vec` reads.
        peer.request("__ack", &vec![1u32, 2], ack).await;
        let answer = tokio::time::timeout(WAIT, asking).await.unwrap().unwrap();
        assert_eq!(answer.unwrap(), vec![1, 2]);
        peer.fence("after the reply").await;
    }

    /// Conformance M14.
    async fn m14_a_server_request_without_a_reply_times_out_and_a_late_reply_is_dropped(combo) {
        const TIMEOUT: Duration = Duration::from_millis(50);
        let running = Running::start().await;
        let (mut peer, id) = running.peer_on(combo).await;
        let conn = running.conn(id);
        let asked = tokio::time::Instant::now();
        let answer = conn
            .request::<String>(TestOut::Question("anyone?".into()))
            .timeout(TIMEOUT)
            .await;
        assert!(
            matches!(answer, Err(RequestError::Timeout(t)) if t == TIMEOUT),
            "{answer:?}"
        );
        assert!(asked.elapsed() >= TIMEOUT);

        let ack = question_id(&peer.next().await, "anyone?");
        peer.request("__ack", "too late", ack).await;
        // Nothing answers a reply nobody waits for; the connection stays open.
        peer.fence("after the late reply").await;
        assert!(running.server.get(id).is_some());
    }

    /// Conformance M14.
    async fn m14_a_server_request_fails_on_an_error_reply_a_wrong_type_or_a_close(combo) {
        let running = Running::start().await;
        let (mut peer, id) = running.peer_on(combo).await;
        let conn = running.conn(id);

        let asking = tokio::spawn({
            let conn = conn.clone();
            async move {
                conn.request::<String>(TestOut::Question("a".into()))
                    .timeout(WAIT)
                    .await
            }
        });
        let ack = question_id(&peer.next().await, "a");
        let refusal = ErrorPayload {
            code: ErrorCode::HandlerFailed,
            message: "no way".into(),
            event: None,
        };
        peer.send_message(encode_error_reply(combo.codec, ack, &refusal))
            .await;
        match tokio::time::timeout(WAIT, asking).await.unwrap().unwrap() {
            Err(RequestError::Rejected(error)) => {
                assert_eq!(error.code, ErrorCode::HandlerFailed);
                assert_eq!(error.message, "no way");
            }
            other => panic!("expected a rejection, got {other:?}"),
        }

        let asking = tokio::spawn({
            let conn = conn.clone();
            async move {
                conn.request::<String>(TestOut::Question("b".into()))
                    .timeout(WAIT)
                    .await
            }
        });
        let ack = question_id(&peer.next().await, "b");
        peer.request("__ack", &42, ack).await;
        let answer = tokio::time::timeout(WAIT, asking).await.unwrap().unwrap();
        assert!(matches!(answer, Err(RequestError::Decode(_))), "{answer:?}");

        let asking = tokio::spawn({
            let conn = conn.clone();
            async move {
                conn.request::<String>(TestOut::Question("c".into()))
                    .timeout(WAIT)
                    .await
            }
        });
        question_id(&peer.next().await, "c");
        peer.close().await;
        let answer = tokio::time::timeout(WAIT, asking).await.unwrap().unwrap();
        assert!(matches!(answer, Err(RequestError::Closed)), "{answer:?}");
        // A request to the closed connection fails at once.
        let answer = conn
            .request::<String>(TestOut::Question("d".into()))
            .timeout(WAIT)
            .await;
        assert!(matches!(answer, Err(RequestError::Emit(_))), "{answer:?}");
    }

    /// Conformance M14.
    async fn m14_a_request_to_every_connection_yields_each_reply_or_timeout(combo) {
        const TIMEOUT: Duration = Duration::from_millis(100);
        let running = Running::start().await;
        let (mut answering, answering_id) = running.peer_on(combo).await;
        let (mut silent, silent_id) = running.peer_on(combo).await;
        let replies = running
            .server
            .request_all::<String>(TestOut::Question("all?".into()))
            .timeout(TIMEOUT)
            .send()
            .unwrap();
        let collecting = tokio::spawn(replies.collect::<Vec<_>>());

        let question = answering.next().await;
        let ack = question_id(&question, "all?");
        assert_eq!(
            silent.next().await.bytes(),
            question.bytes(),
            "one message, one id for all"
        );
        answering.request("__ack", "me", ack).await;
        let mut replies = tokio::time::timeout(WAIT, collecting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(replies.len(), 2);
        let (first_id, first) = replies.remove(0);
        assert_eq!(first_id, answering_id);
        assert_eq!(first.unwrap(), "me");
        let (second_id, second) = replies.remove(0);
        assert_eq!(second_id, silent_id);
        assert!(
            matches!(second, Err(RequestError::Timeout(t)) if t == TIMEOUT),
            "{second:?}"
        );
    }

    /// Conformance M14.
    async fn m14_a_room_request_reaches_members_only(combo) {
        let running = Running::start().await;
        let (mut member, member_id) = running.peer_on(combo).await;
        let (mut outsider, _) = running.peer_on(combo).await;
        member.emit("join", &RoomRef::new("c", "r")).await;
        let joined = member.next().await;
        assert_eq!(joined.event(), "join_outcome");
        assert_eq!(joined.payload::<JoinOutcome>(), JoinOutcome::Added);
        let room = running.server.channel("c").room("r");
        let replies = room
            .request::<Okay>(TestOut::Question("members?".into()))
            .timeout(WAIT)
            .send()
            .unwrap();
        let collecting = tokio::spawn(replies.collect::<Vec<_>>());
        let ack = question_id(&member.next().await, "members?");
        member.request("__ack", &Okay { ok: true }, ack).await;
        let replies = tokio::time::timeout(WAIT, collecting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].0, member_id);
        assert_eq!(replies[0].1.as_ref().unwrap(), &Okay { ok: true });
        outsider.fence("no request reached the outsider").await;
    }

    /// Conformance M14, through the Rust client.
    async fn m14_the_client_answers_server_requests(combo) {
        let running = Running::start().await;
        let (client, id) = running.client_on(combo).await;
        client.on_request::<test_out::Question, _, _>(|question: String| format!("re: {question}"));
        let reply: String = running
            .conn(id)
            .request(TestOut::Question("ready?".into()))
            .timeout(WAIT)
            .await
            .unwrap();
        assert_eq!(reply, "re: ready?");
    }
}
