//! K4: payloads nested past the depth limit get `bad_payload` in every
//! codec, never a stack overflow, in the debug build the tests run in; a
//! payload just under the limit is accepted. Bystanders chat throughout.

use liweb::{CodecKind, ErrorCode, ErrorPayload, MAX_PAYLOAD_DEPTH};
use liweb_tests::{Peer, Record, Running, bystanders::Bystanders, conformance, encode};

/// How deep the hostile payloads nest.
const HOSTILE: usize = 10_000;

/// A `nest` message whose payload has `levels` levels, built byte by byte
/// (serializing one this deep would recurse in the test itself).
fn nest_message(codec: CodecKind, levels: usize) -> Vec<u8> {
    let inner = levels - 1;
    match codec {
        // {"d":{"d":..."e"}}: every level but the innermost is an object.
        CodecKind::Json => {
            let mut text = String::from(r#"{"event":"nest","payload":"#);
            text.push_str(&r#"{"d":"#.repeat(inner));
            text.push_str(r#""e""#);
            text.push_str(&"}".repeat(inner));
            text.push('}');
            text.into_bytes()
        }
        // {"event": "nest", "payload": {"d": {"d": ... "e"}}}
        CodecKind::MessagePack => {
            let mut bytes = vec![0x82, 0xa5];
            bytes.extend_from_slice(b"event");
            bytes.push(0xa4);
            bytes.extend_from_slice(b"nest");
            bytes.push(0xa7);
            bytes.extend_from_slice(b"payload");
            for _ in 0..inner {
                bytes.extend_from_slice(&[0x81, 0xa1, b'd']);
            }
            bytes.extend_from_slice(&[0xa1, b'e']);
            bytes
        }
        // The header of a unit payload, then a variant index per level:
        // 1 (`Deeper`) and finally 0 (`End`).
        CodecKind::Bincode => {
            let mut bytes = encode(codec, "nest", None, &());
            bytes.extend(std::iter::repeat_n(1u8, inner));
            bytes.push(0);
            bytes
        }
        other => panic!("no such codec {other:?}"),
    }
}

/// The deepest `nest` each codec accepts: JSON counts its objects (the
/// innermost `"e"` is a string), MessagePack and bincode every enum level.
fn deepest(codec: CodecKind) -> usize {
    match codec {
        CodecKind::Json => MAX_PAYLOAD_DEPTH,
        _ => MAX_PAYLOAD_DEPTH - 1,
    }
}

async fn expect_bad_payload(peer: &mut Peer, what: &str) {
    let msg = peer.next().await;
    assert_eq!(msg.event(), "error", "{what}: {msg:?}");
    let error: ErrorPayload = msg.payload();
    assert_eq!(error.code, ErrorCode::BadPayload, "{what}: {error:?}");
    assert_eq!(error.event.as_deref(), Some("nest"), "{what}: {error:?}");
}

async fn expect_depth(peer: &mut Peer, levels: usize) {
    let msg = peer.next().await;
    assert_eq!(msg.event(), "echoed", "{levels} levels: {msg:?}");
    assert_eq!(msg.payload::<String>(), levels.to_string());
}

conformance! {
    /// K4: a payload nested 10,000 levels deep gets `bad_payload`, and the
    /// connection keeps working; one just under the limit is handled, one
    /// level more is refused.
    async fn k4_a_payload_nested_past_the_limit_gets_bad_payload(combo) {
        let running = Running::start().await;
        let bystanders = Bystanders::start(&running).await;
        let (mut peer, _) = running.peer_on(combo).await;
        let codec = combo.codec;

        for _ in 0..3 {
            peer.send_message(nest_message(codec, HOSTILE)).await;
            expect_bad_payload(&mut peer, "10,000 levels").await;
        }
        peer.fence("still served").await;

        let deepest = deepest(codec);
        peer.send_message(nest_message(codec, deepest)).await;
        expect_depth(&mut peer, deepest).await;
        peer.send_message(nest_message(codec, deepest + 1)).await;
        expect_bad_payload(&mut peer, "one level past the limit").await;
        peer.fence("still served").await;

        // The bystanders and the peer: nobody was closed.
        assert_eq!(running.server.connection_count(), 3, "{combo}");
        assert_eq!(running.server.stats().live, 3, "{combo}");
        bystanders.finish().await;
    }

    /// K4: in MessagePack, arrays nested deep in a field the payload type
    /// ignores (739 bytes took a debug server's stack before the limit) get
    /// `bad_payload`; JSON skips such a field without recursing, so there it
    /// is harmless and the event is handled.
    on [ws_json, ws_msgpack, tcp_json, tcp_msgpack]
    async fn k4_deep_nesting_in_an_ignored_field_never_overflows(combo) {
        let running = Running::start().await;
        let bystanders = Bystanders::start(&running).await;
        let (mut peer, _) = running.peer_on(combo).await;
        let message = match combo.codec {
            CodecKind::Json => {
                let mut text = String::from(r#"{"event":"say","payload":{"text":"hi","junk":"#);
                text.push_str(&"[".repeat(HOSTILE));
                text.push_str(&"]".repeat(HOSTILE));
                text.push_str("}}");
                text.into_bytes()
            }
            _ => {
                // {"event": "say", "payload": {"text": "hi", "junk": [[...]]}}
                let mut bytes = vec![0x82, 0xa5];
                bytes.extend_from_slice(b"event");
                bytes.push(0xa3);
                bytes.extend_from_slice(b"say");
                bytes.push(0xa7);
                bytes.extend_from_slice(b"payload");
                bytes.extend_from_slice(&[0x82, 0xa4]);
                bytes.extend_from_slice(b"text");
                bytes.extend_from_slice(&[0xa2, b'h', b'i', 0xa4]);
                bytes.extend_from_slice(b"junk");
                bytes.extend(std::iter::repeat_n(0x91, HOSTILE - 1));
                bytes.push(0x90);
                bytes
            }
        };
        peer.send_message(message).await;
        if combo.codec == CodecKind::MessagePack {
            let msg = peer.next().await;
            assert_eq!(msg.event(), "error", "{msg:?}");
            let error: ErrorPayload = msg.payload();
            assert_eq!(error.code, ErrorCode::BadPayload, "{error:?}");
        }
        peer.fence("still served").await;
        let handled = running
            .recorder
            .matching(|record| matches!(record, Record::Handled("say_first", _)))
            .len();
        assert_eq!(handled, usize::from(combo.codec == CodecKind::Json));
        bystanders.finish().await;
    }
}
