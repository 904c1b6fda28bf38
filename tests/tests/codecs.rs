//! The binary codecs (MessagePack, bincode) next to JSON, over real
//! WebSocket sockets: subprotocol negotiation, dispatch, bad input, requests
//! and authentication in each codec, and one room with members of every
//! codec.

use liweb::{
    BincodeCodec, Codec, CodecKind, ErrorCode, MsgPackCodec, auth::Auth, client::ClientError,
};
use liweb_tests::{RoomRef, Running, Target, TestIn, TestOut, TestUser, WAIT, next_event};
use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

/// Opens a raw upgrade asking for `protocols`; the server's answer.
async fn upgrade(
    running: &Running,
    protocols: &str,
) -> Result<http::Response<Option<Vec<u8>>>, tungstenite::Error> {
    let mut request = running.url().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", protocols.parse().unwrap());
    let connecting = tokio_tungstenite::connect_async(request);
    match tokio::time::timeout(WAIT, connecting)
        .await
        .expect("upgrade timed out")
    {
        Ok((_socket, response)) => Ok(response),
        Err(err) => Err(err),
    }
}

fn answered(response: &http::Response<Option<Vec<u8>>>) -> Option<&str> {
    response
        .headers()
        .get("sec-websocket-protocol")
        .map(|value| value.to_str().unwrap())
}

/// Conformance M12.
#[tokio::test]
async fn m12_json_msgpack_and_bincode_members_of_one_room_get_the_same_broadcast() {
    let running = Running::start().await;
    let room = RoomRef::new("codecs", "m12");
    let mut clients = Vec::new();
    for codec in [CodecKind::Json, CodecKind::MessagePack, CodecKind::Bincode] {
        let (mut client, id) = running.client_with(codec).await;
        assert_eq!(client.codec(), codec);
        assert_eq!(running.conn(id).meta().codec(), codec);
        client.emit(TestIn::Join(room.clone())).unwrap();
        assert_eq!(
            next_event(&mut client).await,
            TestOut::JoinOutcome(liweb_tests::JoinOutcome::Added)
        );
        clients.push(client);
    }

    let text = "héllo, every codec".to_owned();
    clients[1]
        .emit(TestIn::RoomEmit {
            room: room.clone(),
            text: text.clone(),
            target: Target::Everyone,
        })
        .unwrap();
    for (index, client) in clients.iter_mut().enumerate() {
        // A client decodes only frames of its own codec: another codec's
        // frame would arrive as `Malformed`.
        assert_eq!(
            next_event(client).await,
            TestOut::RoomMessage(text.clone()),
            "client {index}"
        );
    }
    assert_eq!(next_event(&mut clients[1]).await, TestOut::Sent(3));
    // A server-wide broadcast too.
    clients[2].emit(TestIn::BroadcastAll("all".into())).unwrap();
    for client in &mut clients {
        assert_eq!(next_event(client).await, TestOut::Broadcast("all".into()));
    }
}

#[tokio::test]
async fn the_server_answers_with_the_codec_subprotocol_it_chose() {
    let running = Running::start().await;
    for (asked, chosen) in [
        ("liweb.json", "liweb.json"),
        ("liweb.msgpack", "liweb.msgpack"),
        ("liweb.bincode", "liweb.bincode"),
        ("liweb.cbor, liweb.bincode, liweb.msgpack", "liweb.bincode"),
    ] {
        let response = upgrade(&running, asked).await.expect("upgrade accepted");
        assert_eq!(answered(&response), Some(chosen), "asked for {asked}");
    }
    // Without a header: JSON, and no subprotocol in the answer.
    let (socket, response) = tokio_tungstenite::connect_async(running.url())
        .await
        .unwrap();
    assert_eq!(answered(&response), None);
    drop(socket);
}

#[tokio::test]
async fn an_upgrade_asking_only_for_unsupported_codecs_is_refused_with_400() {
    let running = Running::start().await;
    match upgrade(&running, "liweb.cbor").await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), http::StatusCode::BAD_REQUEST);
            let body = String::from_utf8(response.into_body().unwrap_or_default()).unwrap();
            assert!(body.contains("liweb.cbor"), "{body}");
            assert!(body.contains("liweb.msgpack"), "{body}");
        }
        other => panic!("expected a 400 refusal, got {other:?}"),
    }
    assert_eq!(running.server.stats().rejected_subprotocol, 1);
    assert_eq!(running.server.stats().live, 0);
}

async fn requests_get_replies_with_their_id(codec: CodecKind) {
    let running = Running::start().await;
    let (client, _) = running.client_with(codec).await;
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

/// Conformance M13 (MessagePack).
#[tokio::test]
async fn m13_msgpack_a_request_gets_its_reply_with_its_id() {
    requests_get_replies_with_their_id(CodecKind::MessagePack).await;
}

/// Conformance M13 (bincode).
#[tokio::test]
async fn m13_bincode_a_request_gets_its_reply_with_its_id() {
    requests_get_replies_with_their_id(CodecKind::Bincode).await;
}

#[tokio::test]
async fn binary_replies_carry_the_request_id_in_the_envelope() {
    use futures_util::{SinkExt, StreamExt};
    use liweb::{Input, PayloadDecoder};

    let running = Running::start().await;
    for (codec, protocol) in [
        (CodecKind::MessagePack, "liweb.msgpack"),
        (CodecKind::Bincode, "liweb.bincode"),
    ] {
        let mut request = running.url().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("sec-websocket-protocol", protocol.parse().unwrap());
        let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        #[derive(Serialize)]
        struct Divide {
            num: i64,
            den: i64,
        }
        let frame = match codec {
            CodecKind::MessagePack => {
                MsgPackCodec::encode("divide", Some(41), &Divide { num: 9, den: 3 })
            }
            _ => BincodeCodec::encode("divide", Some(41), &Divide { num: 9, den: 3 }),
        }
        .unwrap();
        socket
            .send(tungstenite::Message::Binary(frame))
            .await
            .unwrap();
        let reply = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("no reply")
            .unwrap()
            .unwrap();
        let tungstenite::Message::Binary(bytes) = reply else {
            panic!("expected a binary reply, got {reply:?}");
        };
        let (event, ack, value) = match codec {
            CodecKind::MessagePack => {
                let raw = MsgPackCodec::decode_frame(Input::Binary(&bytes)).unwrap();
                (
                    raw.event.into_owned(),
                    raw.ack,
                    raw.payload.decode::<i64>().unwrap(),
                )
            }
            _ => {
                let raw = BincodeCodec::decode_frame(Input::Binary(&bytes)).unwrap();
                (
                    raw.event.into_owned(),
                    raw.ack,
                    raw.payload.decode::<i64>().unwrap(),
                )
            }
        };
        assert_eq!(
            (event.as_str(), ack, value),
            ("__ack", Some(41), 3),
            "{codec:?}"
        );
    }
}

/// Server requests answered by a client of each binary codec.
#[tokio::test]
async fn server_requests_are_answered_in_each_codec() {
    let running = Running::start().await;
    for codec in [CodecKind::MessagePack, CodecKind::Bincode] {
        let (client, id) = running.client_with(codec).await;
        client.on_request::<liweb_tests::test_out::Question, _, _>(|text: String| text.len());
        let asking = running
            .conn(id)
            .request::<usize>(TestOut::Question("four".into()))
            .timeout(WAIT);
        assert_eq!(asking.await.unwrap(), 4, "{codec:?}");
    }
}

#[derive(Serialize, Deserialize)]
struct Login {
    name: String,
    password: String,
}

#[tokio::test]
async fn binary_clients_authenticate_in_their_codec() {
    let running = Running::start_with(|builder| {
        builder.auth(Auth::credentials(|login: Login, _meta| async move {
            if login.password == "pw" {
                Ok(TestUser {
                    name: login.name,
                    admin: false,
                })
            } else {
                Err("wrong password")
            }
        }))
    })
    .await;
    for codec in [CodecKind::MessagePack, CodecKind::Bincode] {
        let client = running.connect_with(codec).await;
        let user: TestUser = client
            .authenticate(&Login {
                name: "ada".into(),
                password: "pw".into(),
            })
            .await
            .unwrap();
        assert_eq!(user.name, "ada", "{codec:?}");

        let refused = running.connect_with(codec).await;
        match refused
            .authenticate::<TestUser>(&Login {
                name: "eve".into(),
                password: "nope".into(),
            })
            .await
        {
            Err(ClientError::AuthRejected(reason)) => {
                assert_eq!(reason, "invalid credentials", "{codec:?}")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}
