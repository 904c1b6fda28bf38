//! Conformance, section C (connection): each test is written once and runs
//! on every transport × codec combination it applies to (`c1_...::ws_json`,
//! `c1_...::tcp_bincode`, ...). Origins, paths, headers and upgrade hooks are
//! HTTP matters: those tests run on the WebSocket combinations only.

use liweb::{CloseCode, DisconnectReason, client::Incoming};
use liweb_tests::{
    Link, Record, RoomRef, Running, TestIn, TestOut, WAIT, conformance, eventually, fence, next,
    next_event, test_in,
};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

conformance! {
    /// Conformance C1.
    async fn c1_connect_fires_on_connect_once_with_a_uuid_id(combo) {
        let running = Running::start().await;
        let (mut client, id) = running.client_on(combo).await;

        assert_eq!(id.as_uuid().get_version_num(), 4, "the id is a v4 UUID");
        assert_eq!(running.server.connection_count(), 1);
        assert!(running.server.get(id).is_some());
        // A round trip proves the connection is live; only then count the hooks.
        fence(&mut client, "after connect").await;
        let connects = running
            .recorder
            .matching(|r| matches!(r, Record::Connected(_)));
        assert_eq!(connects, vec![Record::Connected(id)]);
        let meta = running.conn(id).meta().clone();
        assert_eq!(meta.codec(), combo.codec);
        assert_eq!(
            meta.transport(),
            match combo.link {
                Link::WebSocket => liweb::Transport::WebSocket,
                Link::Tcp => liweb::Transport::Tcp,
            }
        );
    }

    /// Conformance C2 (and R4: the connection is in no room afterwards).
    async fn c2_close_fires_on_disconnect_exactly_once_and_leaves_no_trace(combo) {
        let running = Running::start().await;
        let (mut client, id) = running.client_on(combo).await;
        let room = RoomRef::new("c2", "room");
        client.emit(TestIn::Join(room.clone())).unwrap();
        assert_eq!(
            next_event(&mut client).await,
            TestOut::JoinOutcome(liweb_tests::JoinOutcome::Added)
        );
        assert_eq!(running.conn(id).room_count(), 1);

        client.close(CloseCode::Normal, "bye").unwrap();
        assert!(matches!(next(&mut client).await, Incoming::Closed(_)));
        assert_eq!(
            running.recorder.disconnected(id).await,
            DisconnectReason::ClientClosed(Some((CloseCode::Normal, "bye".to_owned())))
        );
        let disconnects = running
            .recorder
            .matching(|r| matches!(r, Record::Disconnected(..)));
        assert_eq!(disconnects.len(), 1, "{disconnects:?}");
        assert_eq!(running.server.connection_count(), 0);
        assert!(running.server.get(id).is_none());
        assert_eq!(running.conn(id).room_count(), 0);
        assert_eq!(room.on(&running.server).size(), 0);

        // A peer that just goes away, without a close, is reported once too.
        let (peer, peer_id) = running.peer_on(combo).await;
        drop(peer);
        assert!(matches!(
            running.recorder.disconnected(peer_id).await,
            DisconnectReason::TransportError(_) | DisconnectReason::ClientClosed(None)
        ));
        let disconnects = running
            .recorder
            .matching(|r| matches!(r, Record::Disconnected(..)));
        assert_eq!(disconnects.len(), 2, "{disconnects:?}");
        eventually(
            "no live connection",
            || running.server.stats().live,
            |live| *live == 0,
        )
        .await;
        assert_eq!(running.server.connection_count(), 0);
    }

    /// Conformance C5: paths are an HTTP matter.
    on [ws_json, ws_msgpack, ws_bincode]
    async fn c5_other_paths_are_not_upgraded(combo) {
        let running = Running::start().await;
        let mut request = format!("ws://{}/elsewhere", running.addr)
            .into_client_request()
            .unwrap();
        request.headers_mut().insert(
            "sec-websocket-protocol",
            combo.codec.subprotocol().parse().unwrap(),
        );
        let result = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
            .await
            .unwrap();
        match result {
            Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 404),
            other => panic!("expected an HTTP 404, got {other:?}"),
        }
        assert!(running.recorder.records().is_empty());
        // The configured path does upgrade.
        let (_client, _) = running.client_on(combo).await;
        assert_eq!(
            running
                .recorder
                .matching(|r| matches!(r, Record::Connected(_)))
                .len(),
            1
        );
    }

    /// Conformance C6: headers, path and query are read from the upgrade
    /// request, so they exist on WebSocket only; the remote address is
    /// checked on every combination by the next test.
    on [ws_json, ws_msgpack, ws_bincode]
    async fn c6_metadata_has_headers_remote_address_and_query_as_sent(combo) {
        let running = Running::start().await;
        let mut request = format!("ws://{}/ws?token=abc&room=a%20b&flag", running.addr)
            .into_client_request()
            .unwrap();
        let headers = request.headers_mut();
        headers.insert("x-test", "Value 1".parse().unwrap());
        headers.append("x-multi", "one".parse().unwrap());
        headers.append("x-multi", "two".parse().unwrap());
        headers.insert(
            "sec-websocket-protocol",
            combo.codec.subprotocol().parse().unwrap(),
        );
        let (socket, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
            .await
            .unwrap()
            .unwrap();
        let local = match socket.get_ref() {
            tokio_tungstenite::MaybeTlsStream::Plain(stream) => stream.local_addr().unwrap(),
            _ => unreachable!("plain ws"),
        };
        running
            .recorder
            .wait_until("on_connect", |records| {
                records.iter().any(|r| matches!(r, Record::Connected(_)))
            })
            .await;
        let conn = running.recorder.conns().pop().unwrap();
        let meta = conn.meta();
        assert_eq!(meta.headers()["x-test"], "Value 1");
        let multi: Vec<_> = meta.headers().get_all("x-multi").iter().collect();
        assert_eq!(multi, ["one", "two"]);
        assert_eq!(meta.remote_addr(), Some(local));
        assert_eq!(meta.path(), "/ws");
        assert_eq!(meta.query(), Some("token=abc&room=a%20b&flag"));
        assert_eq!(meta.query_param("token").as_deref(), Some("abc"));
        assert_eq!(meta.query_param("room").as_deref(), Some("a b"));
        assert_eq!(meta.query_param("flag").as_deref(), Some(""));
        assert_eq!(meta.query_param("missing"), None);
        assert_eq!(meta.transport(), liweb::Transport::WebSocket);
        assert_eq!(meta.codec(), combo.codec);
        drop(socket);
    }

    /// Conformance C6: the remote address, on every transport.
    async fn c6_metadata_has_the_remote_address(combo) {
        let running = Running::start().await;
        let (peer, id) = running.peer_on(combo).await;
        let meta = running.conn(id).meta().clone();
        assert_eq!(meta.remote_addr(), Some(peer.local_addr()));
        assert_eq!(meta.codec(), combo.codec);
        if combo.link == Link::Tcp {
            assert!(meta.headers().is_empty(), "TCP carries no headers");
            assert_eq!(meta.query(), None);
        }
    }

    /// Conformance C7.
    async fn c7_server_close_code_and_reason_reach_the_client(combo) {
        let running = Running::start().await;
        let (mut client, id) = running.client_on(combo).await;
        client
            .emit(TestIn::CloseMe {
                code: 4321,
                reason: "see you".into(),
            })
            .unwrap();
        match next(&mut client).await {
            Incoming::Closed(Some((code, reason))) => {
                assert_eq!(code, CloseCode::Other(4321));
                assert_eq!(code.as_u16(), 4321);
                assert_eq!(reason, "see you");
            }
            other => panic!("expected a close frame, got {other:?}"),
        }
        assert_eq!(
            running.recorder.disconnected(id).await,
            DisconnectReason::ServerClosed(CloseCode::Other(4321))
        );
    }

    /// Conformance C7: the same promise checked below the Rust client, on
    /// the raw close frame, with a standard code.
    async fn c7_close_with_a_standard_code_over_a_raw_peer(combo) {
        let running = Running::start().await;
        let (mut peer, _) = running.peer_on(combo).await;
        let close = test_in::CloseMe {
            code: 1008,
            reason: "policy".into(),
        };
        peer.emit("close_me", &close).await;
        assert_eq!(peer.closed().await, (1008, "policy".to_owned()));
    }
}
