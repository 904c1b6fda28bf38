//! The binary codecs (MessagePack, bincode) next to JSON, over real
//! WebSocket sockets: subprotocol negotiation and one room with members of
//! every codec (M12). Dispatch, bad input, requests and authentication in
//! each codec run as combinations of the conformance suite.

use liweb::CodecKind;
use liweb_tests::{RoomRef, Running, Target, TestIn, TestOut, WAIT, next_event};
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
