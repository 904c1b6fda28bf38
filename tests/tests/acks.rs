//! Conformance M13 and M14 (acknowledgements), over real WebSocket
//! sockets: replies to client requests, and server requests to one
//! connection, a room, or every connection.

use std::time::Duration;

use futures_util::StreamExt;
use liweb::{ErrorCode, RequestError};
use liweb_tests::{Record, Running, TestOut, WAIT};
use serde_json::{Value, json};

fn handled(running: &Running) -> Vec<Record> {
    running
        .recorder
        .matching(|r| matches!(r, Record::Handled(..)))
}

/// Conformance M13.
#[tokio::test]
async fn m13_a_request_gets_the_handlers_reply_with_its_ack_id() {
    let running = Running::start().await;
    let (mut client, _) = running.raw_client().await;
    client
        .request("divide", json!({ "num": 7, "den": 2 }), 7)
        .await;
    assert_eq!(
        client.next().await,
        json!({ "event": "__ack", "ack": 7, "payload": 3 })
    );
    // Ids are the client's: any number, answered as given, in order.
    client
        .request("divide", json!({ "num": -9, "den": 3 }), u64::MAX)
        .await;
    client
        .request("divide", json!({ "num": 0, "den": 5 }), 0)
        .await;
    assert_eq!(
        client.next().await,
        json!({ "event": "__ack", "ack": u64::MAX, "payload": -3 })
    );
    assert_eq!(
        client.next().await,
        json!({ "event": "__ack", "ack": 0, "payload": 0 })
    );
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
#[tokio::test]
async fn m13_a_handler_error_becomes_an_error_reply_with_the_ack_id() {
    let running = Running::start().await;
    let (mut client, id) = running.raw_client().await;
    client
        .request("divide", json!({ "num": 1, "den": 0 }), 8)
        .await;
    assert_eq!(
        client.next().await,
        json!({
            "event": "__ack",
            "ack": 8,
            "error": { "code": "handler_failed", "message": "boom", "event": "divide" },
        })
    );
    client.fence("still open").await;
    assert_eq!(
        running
            .recorder
            .matching(|r| matches!(r, Record::Error { .. })),
        vec![Record::Error {
            conn: id,
            event: Some("divide"),
            error: "handler failed: boom".into(),
        }],
        "the error hook heard of it too"
    );
}

/// Conformance M13.
#[tokio::test]
async fn m13_requests_that_cannot_be_handled_get_error_replies() {
    let running = Running::start().await;
    let (mut client, _) = running.raw_client().await;

    client.request("no_such_event", json!(1), 1).await;
    let reply = client.next().await;
    assert_eq!(
        (&reply["event"], &reply["ack"]),
        (&json!("__ack"), &json!(1))
    );
    assert_eq!(reply["error"]["code"], "unknown_event");
    assert_eq!(reply["error"]["event"], "no_such_event");
    assert_eq!(reply.get("payload"), None);

    client
        .request("divide", json!({ "num": "seven", "den": 1 }), 2)
        .await;
    let reply = client.next().await;
    assert_eq!(reply["ack"], 2);
    assert_eq!(reply["error"]["code"], "bad_payload");
    assert!(
        reply["error"]["message"].as_str().unwrap().contains("num"),
        "{reply}"
    );

    client.fence("still open").await;
    assert_eq!(handled(&running), vec![]);
}

/// Conformance M13.
#[tokio::test]
async fn m13_a_handler_without_a_value_answers_null_after_it_ran() {
    let running = Running::start().await;
    let (mut client, _) = running.raw_client().await;
    client.request("echo", json!("hi"), 5).await;
    // The handler's emit is queued before the request's answer.
    assert_eq!(
        client.next().await,
        json!({ "event": "echoed", "payload": "hi" })
    );
    assert_eq!(
        client.next().await,
        json!({ "event": "__ack", "ack": 5, "payload": null })
    );
}

/// Conformance M13.
#[tokio::test]
async fn m13_the_ack_extractor_answers_once_and_first() {
    let running = Running::start().await;
    let (mut client, _) = running.raw_client().await;
    client.request("ack_early", json!("x"), 11).await;
    assert_eq!(
        client.next().await,
        json!({ "event": "__ack", "ack": 11, "payload": "early x" })
    );
    // The handler's own return value is not a second answer.
    client.fence("one answer only").await;
    // Without an ack id there is nothing to answer, and nothing is sent.
    client.emit("ack_early", json!("y")).await;
    client.fence("no answer").await;
    assert_eq!(
        handled(&running),
        vec![
            Record::Handled("ack_early", "x sent=true".into()),
            Record::Handled("ack_early", "y sent=false".into()),
        ]
    );
}

/// Conformance M14.
#[tokio::test]
async fn m14_a_server_request_resolves_with_the_clients_reply() {
    let running = Running::start().await;
    let (mut client, id) = running.raw_client().await;
    let conn = running.conn(id);
    let asking = tokio::spawn(async move {
        conn.request::<Vec<u32>>(TestOut::Question("which?".into()))
            .timeout(WAIT)
            .await
    });

    let question = client.next().await;
    assert_eq!(question["event"], "question");
    assert_eq!(question["payload"], "which?");
    let ack = question["ack"]
        .as_u64()
        .expect("a request carries an ack id");
    client
        .send_text(&json!({ "event": "__ack", "ack": ack, "payload": [1, 2] }).to_string())
        .await;
    let answer = tokio::time::timeout(WAIT, asking).await.unwrap().unwrap();
    assert_eq!(answer.unwrap(), vec![1, 2]);
    client.fence("after the reply").await;
}

/// Conformance M14.
#[tokio::test]
async fn m14_a_server_request_without_a_reply_times_out_and_a_late_reply_is_dropped() {
    const TIMEOUT: Duration = Duration::from_millis(50);
    let running = Running::start().await;
    let (mut client, id) = running.raw_client().await;
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

    let question = client.next().await;
    let ack = question["ack"].as_u64().unwrap();
    client
        .send_text(&json!({ "event": "__ack", "ack": ack, "payload": "too late" }).to_string())
        .await;
    // Nothing answers a reply nobody waits for; the connection stays open.
    client.fence("after the late reply").await;
    assert!(running.server.get(id).is_some());
}

/// Conformance M14.
#[tokio::test]
async fn m14_a_server_request_fails_on_an_error_reply_a_wrong_type_or_a_close() {
    let running = Running::start().await;
    let (mut client, id) = running.raw_client().await;
    let conn = running.conn(id);

    let asking = tokio::spawn({
        let conn = conn.clone();
        async move {
            conn.request::<String>(TestOut::Question("a".into()))
                .timeout(WAIT)
                .await
        }
    });
    let ack = client.next().await["ack"].as_u64().unwrap();
    client
        .send_text(
            &json!({
                "event": "__ack",
                "ack": ack,
                "error": { "code": "handler_failed", "message": "no way" },
            })
            .to_string(),
        )
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
    let ack = client.next().await["ack"].as_u64().unwrap();
    client
        .send_text(&json!({ "event": "__ack", "ack": ack, "payload": 42 }).to_string())
        .await;
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
    assert_eq!(client.next().await["payload"], "c");
    client.close().await;
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
#[tokio::test]
async fn m14_a_request_to_every_connection_yields_each_reply_or_timeout() {
    const TIMEOUT: Duration = Duration::from_millis(100);
    let running = Running::start().await;
    let (mut answering, answering_id) = running.raw_client().await;
    let (mut silent, silent_id) = running.raw_client().await;
    let replies = running
        .server
        .request_all::<String>(TestOut::Question("all?".into()))
        .timeout(TIMEOUT)
        .send()
        .unwrap();
    let collecting = tokio::spawn(replies.collect::<Vec<_>>());

    let question = answering.next().await;
    let ack = question["ack"].as_u64().unwrap();
    assert_eq!(silent.next().await, question, "one frame, one id for all");
    answering
        .send_text(&json!({ "event": "__ack", "ack": ack, "payload": "me" }).to_string())
        .await;
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
#[tokio::test]
async fn m14_a_room_request_reaches_members_only() {
    let running = Running::start().await;
    let (mut member, member_id) = running.raw_client().await;
    let (mut outsider, _) = running.raw_client().await;
    member
        .emit("join", json!({ "channel": "c", "room": "r" }))
        .await;
    assert_eq!(member.next().await["payload"], "added");
    let room = running.server.channel("c").room("r");
    let replies = room
        .request::<Value>(TestOut::Question("members?".into()))
        .timeout(WAIT)
        .send()
        .unwrap();
    let collecting = tokio::spawn(replies.collect::<Vec<_>>());
    let question = member.next().await;
    member
        .send_text(
            &json!({ "event": "__ack", "ack": question["ack"], "payload": { "ok": true } })
                .to_string(),
        )
        .await;
    let replies = tokio::time::timeout(WAIT, collecting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].0, member_id);
    assert_eq!(replies[0].1.as_ref().unwrap(), &json!({ "ok": true }));
    outsider.fence("no request reached the outsider").await;
}
