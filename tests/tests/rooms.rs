//! Conformance, section R (rooms and channels): clients send events whose
//! handlers call the room API. Each test is written once and runs on every
//! transport × codec combination (`r1_...::ws_json`, `r1_...::tcp_bincode`,
//! ...).

use std::time::Duration;

use liweb::{
    CloseCode, DisconnectReason, ErrorCode, JoinRejected, client::Incoming, state::RoomKey,
};
use liweb_tests::{
    JoinOutcome, Record, Role, RoomRef, Running, Target, TestClient, TestIn, TestOut, conformance,
    fence, next, next_event,
};

/// Sends `event` and returns the next event, failing on anything else.
async fn call(client: &mut TestClient, event: TestIn) -> TestOut {
    client.emit(event).unwrap();
    next_event(client).await
}

async fn join(client: &mut TestClient, room: &RoomRef) -> JoinOutcome {
    match call(client, TestIn::Join(room.clone())).await {
        TestOut::JoinOutcome(outcome) => outcome,
        other => panic!("expected a join outcome, got {other:?}"),
    }
}

async fn room_emit(client: &mut TestClient, room: &RoomRef, text: &str, target: Target) {
    client
        .emit(TestIn::RoomEmit {
            room: room.clone(),
            text: text.to_owned(),
            target,
        })
        .unwrap();
}

fn message(text: &str) -> TestOut {
    TestOut::RoomMessage(text.to_owned())
}

fn key(room: &RoomRef) -> RoomKey {
    RoomKey::new(room.channel.as_str(), room.room.as_str())
}

/// A server whose channel `vip` admits admins only, whose channel `slow` has
/// a guard that never answers in time, and whose channel `broken` has a guard
/// that panics.
async fn guarded() -> Running {
    Running::start_with(|builder| {
        builder
            .join_guard("vip", |conn, _room| async move {
                if conn.data::<Role>() == Some(Role::Admin) {
                    Ok(())
                } else {
                    Err(JoinRejected::new("admins only"))
                }
            })
            .join_guard("slow", |_conn, _room| async move {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(())
            })
            .join_guard("broken", |_conn, _room| async move {
                panic!("the guard panicked on purpose")
            })
            .join_guard_timeout(Duration::from_millis(50))
    })
    .await
}

conformance! {
    /// Conformance R1.
    async fn r1_rooms_are_created_lazily_listed_and_deleted(combo) {
        let running = Running::start().await;
        let chat = running.server.channel("chat");
        assert_eq!(chat.name(), "chat");
        assert!(!chat.has_room("general"));
        assert!(chat.rooms().is_empty());
        // `has_room` only looks.
        assert!(!chat.has_room("general"));
        assert!(chat.rooms().is_empty());

        // `room` creates, without members.
        let lobby = chat.room("lobby");
        assert!(chat.has_room("lobby"));
        assert_eq!(lobby.size(), 0);
        assert_eq!(chat.rooms(), ["lobby"]);

        let (mut a, a_id) = running.client_on(combo).await;
        let general = RoomRef::new("chat", "general");
        assert_eq!(join(&mut a, &general).await, JoinOutcome::Added);
        assert_eq!(
            join(&mut a, &RoomRef::new("games", "chess")).await,
            JoinOutcome::Added
        );
        assert!(chat.has_room("general"));
        // Sorted, and only this channel's rooms.
        assert_eq!(chat.rooms(), ["general", "lobby"]);
        assert_eq!(running.server.channel("games").rooms(), ["chess"]);
        assert!(!running.server.channel("games").has_room("general"));
        assert_eq!(chat.room("general").members(), [a_id]);

        // Delete through a handler: the member leaves it, its emits reach no one.
        let before_delete = chat.room("general");
        assert_eq!(
            call(&mut a, TestIn::DeleteRoom(general.clone())).await,
            TestOut::Deleted(true)
        );
        assert!(!chat.has_room("general"));
        assert_eq!(chat.rooms(), ["lobby"]);
        assert_eq!(
            running.conn(a_id).rooms(),
            [RoomKey::new("games", "chess")],
            "the connection no longer lists the deleted room"
        );
        assert_eq!(
            before_delete.emit(message("into the void")).unwrap(),
            0,
            "a handle taken before the delete reaches no one"
        );
        room_emit(&mut a, &general, "after delete", Target::Everyone).await;
        assert_eq!(next_event(&mut a).await, TestOut::Sent(0));
        fence(&mut a, "no room message").await;

        // A second delete finds nothing.
        assert_eq!(
            call(&mut a, TestIn::DeleteRoom(RoomRef::new("chat", "nope"))).await,
            TestOut::Deleted(false)
        );
        assert!(!chat.has_room("nope"));
    }

    /// Conformance R1.
    async fn r1_deleting_a_room_drops_its_state_and_a_new_room_of_that_name_starts_empty(combo) {
        let running = Running::start().await;
        let (mut a, a_id) = running.client_on(combo).await;
        let board = RoomRef::new("board", "b1");
        assert_eq!(join(&mut a, &board).await, JoinOutcome::Added);
        let room = board.on(&running.server);
        room.state().set("title", "plans").await.unwrap();

        assert!(running.server.channel("board").delete_room("b1").await);
        let fresh = board.on(&running.server);
        assert_eq!(fresh.size(), 0);
        assert!(!fresh.has(a_id));
        assert!(fresh.state().snapshot().await.unwrap().is_empty());
        assert!(fresh.presence().is_empty());

        // Joining again works on the new room.
        assert_eq!(join(&mut a, &board).await, JoinOutcome::Added);
        assert_eq!(fresh.members(), [a_id]);
        assert_eq!(running.conn(a_id).rooms(), [key(&board)]);
    }

    /// Conformance R2.
    async fn r2_join_is_idempotent_and_leave_of_a_non_member_is_a_no_op(combo) {
        let running = Running::start().await;
        let (mut a, a_id) = running.client_on(combo).await;
        let (mut b, b_id) = running.client_on(combo).await;
        let lobby = RoomRef::new("chat", "lobby");
        let room = lobby.on(&running.server);

        assert_eq!(join(&mut a, &lobby).await, JoinOutcome::Added);
        assert_eq!(join(&mut a, &lobby).await, JoinOutcome::AlreadyMember);
        assert_eq!(room.size(), 1);
        assert_eq!(room.members(), [a_id]);
        assert_eq!(running.conn(a_id).rooms(), [key(&lobby)], "listed once");
        assert_eq!(running.conn(a_id).room_count(), 1);
        assert_eq!(room.online_count(), 1);

        // `b` is not a member: its leave changes nothing.
        assert_eq!(
            call(&mut b, TestIn::Leave(lobby.clone())).await,
            TestOut::Left(false)
        );
        assert_eq!(room.size(), 1);
        assert_eq!(room.members(), [a_id]);
        assert!(!room.has(b_id));
        assert_eq!(running.conn(b_id).room_count(), 0);

        assert_eq!(join(&mut b, &lobby).await, JoinOutcome::Added);
        let mut members = room.members();
        members.sort();
        let mut expected = vec![a_id, b_id];
        expected.sort();
        assert_eq!(members, expected);
        assert_eq!(room.size(), 2);

        assert_eq!(
            call(&mut a, TestIn::Leave(lobby.clone())).await,
            TestOut::Left(true)
        );
        assert_eq!(
            call(&mut a, TestIn::Leave(lobby.clone())).await,
            TestOut::Left(false),
            "a second leave is a no-op"
        );
        assert_eq!(room.size(), 1);
        assert_eq!(room.members(), [b_id]);
        assert!(!room.has(a_id));
        assert!(running.conn(a_id).rooms().is_empty());
        assert_eq!(running.conn(b_id).rooms(), [key(&lobby)]);
    }

    /// Conformance R3.
    async fn r3_room_emit_reaches_members_only(combo) {
        let running = Running::start().await;
        let (mut a, _) = running.client_on(combo).await;
        let (mut b, _) = running.client_on(combo).await;
        let (mut outsider, _) = running.client_on(combo).await;
        let lobby = RoomRef::new("chat", "lobby");
        join(&mut a, &lobby).await;
        join(&mut b, &lobby).await;
        // The outsider is in another room of the same channel.
        join(&mut outsider, &RoomRef::new("chat", "kitchen")).await;

        room_emit(&mut a, &lobby, "hello lobby", Target::Everyone).await;
        // The sender is a member: the room message is queued before the answer.
        assert_eq!(next_event(&mut a).await, message("hello lobby"));
        assert_eq!(next_event(&mut a).await, TestOut::Sent(2));
        assert_eq!(next_event(&mut b).await, message("hello lobby"));
        fence(&mut outsider, "not a member").await;

        // A non-member may emit into the room; it does not receive it.
        room_emit(&mut outsider, &lobby, "from outside", Target::Everyone).await;
        assert_eq!(next_event(&mut outsider).await, TestOut::Sent(2));
        assert_eq!(next_event(&mut a).await, message("from outside"));
        assert_eq!(next_event(&mut b).await, message("from outside"));
        for client in [&mut a, &mut b, &mut outsider] {
            fence(client, "exactly once").await;
        }
    }

    /// Conformance R3.
    async fn r3_emit_except_skips_that_member(combo) {
        let running = Running::start().await;
        let (mut a, a_id) = running.client_on(combo).await;
        let (mut b, b_id) = running.client_on(combo).await;
        let (mut c, _) = running.client_on(combo).await;
        let (mut outsider, outsider_id) = running.client_on(combo).await;
        let lobby = RoomRef::new("chat", "lobby");
        for client in [&mut a, &mut b, &mut c] {
            join(client, &lobby).await;
        }

        // Except the sender.
        room_emit(&mut a, &lobby, "not a", Target::Except(a_id)).await;
        assert_eq!(next_event(&mut a).await, TestOut::Sent(2));
        assert_eq!(next_event(&mut b).await, message("not a"));
        assert_eq!(next_event(&mut c).await, message("not a"));
        fence(&mut a, "sender skipped").await;

        // Except another member.
        room_emit(&mut a, &lobby, "not b", Target::Except(b_id)).await;
        assert_eq!(next_event(&mut a).await, message("not b"));
        assert_eq!(next_event(&mut a).await, TestOut::Sent(2));
        assert_eq!(next_event(&mut c).await, message("not b"));
        fence(&mut b, "b skipped").await;

        // Except a non-member: every member gets it.
        room_emit(&mut c, &lobby, "all three", Target::Except(outsider_id)).await;
        assert_eq!(next_event(&mut c).await, message("all three"));
        assert_eq!(next_event(&mut c).await, TestOut::Sent(3));
        assert_eq!(next_event(&mut a).await, message("all three"));
        assert_eq!(next_event(&mut b).await, message("all three"));
        for client in [&mut a, &mut b, &mut c, &mut outsider] {
            fence(client, "nothing more").await;
        }
    }

    /// Conformance R3.
    async fn r3_emit_to_reaches_one_member_and_nothing_for_non_members(combo) {
        let running = Running::start().await;
        let (mut a, _) = running.client_on(combo).await;
        let (mut b, b_id) = running.client_on(combo).await;
        let (mut outsider, outsider_id) = running.client_on(combo).await;
        let lobby = RoomRef::new("chat", "lobby");
        join(&mut a, &lobby).await;
        join(&mut b, &lobby).await;

        room_emit(&mut a, &lobby, "just b", Target::To(b_id)).await;
        assert_eq!(next_event(&mut a).await, TestOut::Sent(1));
        assert_eq!(next_event(&mut b).await, message("just b"));

        room_emit(&mut a, &lobby, "nobody", Target::To(outsider_id)).await;
        assert_eq!(next_event(&mut a).await, TestOut::Sent(0));
        // The direct API says the same.
        assert!(
            !lobby
                .on(&running.server)
                .emit_to(outsider_id, message("nobody"))
                .unwrap()
        );
        for client in [&mut a, &mut b, &mut outsider] {
            fence(client, "nothing else").await;
        }
    }

    /// Conformance R4.
    async fn r4_a_disconnecting_connection_is_removed_from_every_room(combo) {
        let running = Running::start().await;
        let (mut stays, stays_id) = running.client_on(combo).await;
        let (mut closes, closes_id) = running.client_on(combo).await;
        let (mut closed_by_server, server_closed_id) = running.client_on(combo).await;
        let (mut dropped, dropped_id) = running.client_on(combo).await;
        let rooms = [
            RoomRef::new("chat", "r1"),
            RoomRef::new("chat", "r2"),
            RoomRef::new("games", "r3"),
        ];
        for client in [&mut closes, &mut closed_by_server, &mut dropped] {
            for room in &rooms {
                assert_eq!(join(client, room).await, JoinOutcome::Added);
            }
        }
        assert_eq!(join(&mut stays, &rooms[0]).await, JoinOutcome::Added);
        for room in &rooms {
            assert_eq!(
                room.on(&running.server).size(),
                3 + usize::from(room == &rooms[0])
            );
        }

        // Three ways to go: the client closes, the server closes, the client vanishes.
        closes.close(CloseCode::Normal, "bye").unwrap();
        closed_by_server
            .emit(TestIn::CloseMe {
                code: 4000,
                reason: "out".into(),
            })
            .unwrap();
        drop(dropped);
        assert!(matches!(next(&mut closes).await, Incoming::Closed(_)));
        assert!(matches!(
            next(&mut closed_by_server).await,
            Incoming::Closed(_)
        ));
        assert_eq!(
            running.recorder.disconnected(closes_id).await,
            DisconnectReason::ClientClosed(Some((CloseCode::Normal, "bye".into())))
        );
        assert_eq!(
            running.recorder.disconnected(server_closed_id).await,
            DisconnectReason::ServerClosed(CloseCode::Other(4000))
        );
        running.recorder.disconnected(dropped_id).await;

        // `on_disconnect` runs after the connection left its rooms.
        for gone in [closes_id, server_closed_id, dropped_id] {
            let conn = running.conn(gone);
            assert!(
                conn.rooms().is_empty(),
                "{gone} still lists {:?}",
                conn.rooms()
            );
            assert_eq!(conn.room_count(), 0);
            for room in &rooms {
                let room = room.on(&running.server);
                assert!(!room.has(gone), "{gone} is still in {}", room.key());
                assert!(!room.members().contains(&gone));
                let record = room
                    .presence()
                    .into_iter()
                    .find(|record| record.key.to_string() == gone.to_string())
                    .expect("an offline record stays until the ttl");
                assert!(!record.online);
                assert_eq!(record.connections, 0);
            }
        }
        assert_eq!(rooms[0].on(&running.server).members(), [stays_id]);
        assert_eq!(rooms[1].on(&running.server).size(), 0);
        assert_eq!(rooms[2].on(&running.server).size(), 0);
        assert_eq!(rooms[0].on(&running.server).online_count(), 1);
        assert_eq!(running.conn(stays_id).rooms(), [key(&rooms[0])]);
        assert_eq!(running.server.connection_count(), 1);

        room_emit(&mut stays, &rooms[0], "alone", Target::Everyone).await;
        assert_eq!(next_event(&mut stays).await, message("alone"));
        assert_eq!(next_event(&mut stays).await, TestOut::Sent(1));
    }

    /// Conformance R5.
    async fn r5_a_join_guard_that_rejects_leaves_the_connection_out_with_an_error(combo) {
        let running = guarded().await;
        let (mut member, member_id) = running.client_on(combo).await;
        let (mut admin, admin_id) = running.client_on(combo).await;
        admin.emit(TestIn::SetRole(Role::Admin)).unwrap();
        fence(&mut admin, "role set").await;
        let vip = RoomRef::new("vip", "lounge");

        member.emit(TestIn::Join(vip.clone())).unwrap();
        match next(&mut member).await {
            Incoming::Error(error) => {
                assert_eq!(error.code, ErrorCode::JoinRejected);
                assert_eq!(error.event, None);
                assert!(error.message.contains("vip/lounge"), "{}", error.message);
                assert!(error.message.contains("admins only"), "{}", error.message);
            }
            other => panic!("expected a join_rejected error, got {other:?}"),
        }
        assert_eq!(
            next_event(&mut member).await,
            TestOut::JoinOutcome(JoinOutcome::Rejected("admins only".into()))
        );
        let room = vip.on(&running.server);
        assert!(!room.has(member_id));
        assert_eq!(room.size(), 0);
        assert!(room.presence().is_empty(), "no presence for a refused join");
        assert!(running.conn(member_id).rooms().is_empty());

        // The guard admits others, and the refused connection stays open.
        assert_eq!(join(&mut admin, &vip).await, JoinOutcome::Added);
        assert_eq!(room.members(), [admin_id]);
        fence(&mut member, "still open").await;
        assert_eq!(running.server.connection_count(), 2);
        // Channels without a guard are open to everyone.
        assert_eq!(
            join(&mut member, &RoomRef::new("chat", "lobby")).await,
            JoinOutcome::Added
        );
    }

    /// Conformance R5.
    async fn r5_a_join_guard_that_times_out_behaves_as_a_rejection(combo) {
        let running = guarded().await;
        let (mut client, id) = running.client_on(combo).await;
        let slow = RoomRef::new("slow", "r");

        let started = tokio::time::Instant::now();
        client.emit(TestIn::Join(slow.clone())).unwrap();
        match next(&mut client).await {
            Incoming::Error(error) => {
                assert_eq!(error.code, ErrorCode::JoinRejected);
                assert!(error.message.contains("slow/r"), "{}", error.message);
                assert!(error.message.contains("timed out"), "{}", error.message);
            }
            other => panic!("expected a join_rejected error, got {other:?}"),
        }
        assert_eq!(
            next_event(&mut client).await,
            TestOut::JoinOutcome(JoinOutcome::TimedOut)
        );
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(50) && waited < Duration::from_secs(5),
            "answered after the 50 ms guard timeout, not the guard's 30 s: {waited:?}"
        );
        let room = slow.on(&running.server);
        assert!(!room.has(id));
        assert_eq!(room.size(), 0);
        assert!(running.conn(id).rooms().is_empty());
        fence(&mut client, "still open").await;
        assert_eq!(running.server.connection_count(), 1);
        assert!(
            running
                .recorder
                .matching(|r| matches!(r, Record::Error { .. } | Record::Disconnected(..)))
                .is_empty()
        );
    }

    /// Conformance R5.
    async fn r5_a_join_guard_that_panics_refuses_and_the_server_keeps_serving(combo) {
        let running = guarded().await;
        let (mut client, id) = running.client_on(combo).await;
        let broken = RoomRef::new("broken", "r");
        client.emit(TestIn::Join(broken.clone())).unwrap();
        match next(&mut client).await {
            Incoming::Error(error) => {
                assert_eq!(error.code, ErrorCode::JoinRejected);
                assert!(error.message.contains("broken/r"), "{}", error.message);
                assert!(
                    error.message.contains("the join guard failed"),
                    "{}",
                    error.message
                );
            }
            other => panic!("expected a join_rejected error, got {other:?}"),
        }
        assert_eq!(
            next_event(&mut client).await,
            TestOut::JoinOutcome(JoinOutcome::Rejected("the join guard failed".into()))
        );
        assert!(!broken.on(&running.server).has(id));
        assert!(running.conn(id).rooms().is_empty());
        fence(&mut client, "still open").await;
        let (mut other, _) = running.client_on(combo).await;
        fence(&mut other, "the server still serves").await;
    }

    /// Conformance R6.
    async fn r6_a_member_of_several_rooms_receives_a_multi_room_emit_once(combo) {
        let running = Running::start().await;
        let (mut both, _) = running.client_on(combo).await;
        let (mut only_x, _) = running.client_on(combo).await;
        let (mut only_y, _) = running.client_on(combo).await;
        let (mut neither, _) = running.client_on(combo).await;
        let x = RoomRef::new("chat", "x");
        let y = RoomRef::new("games", "y");
        join(&mut both, &x).await;
        join(&mut both, &y).await;
        join(&mut only_x, &x).await;
        join(&mut only_y, &y).await;

        // A room named twice still counts once.
        neither
            .emit(TestIn::MultiEmit {
                rooms: vec![x.clone(), y.clone(), x.clone()],
                text: "to x and y".into(),
                except: None,
            })
            .unwrap();
        assert_eq!(next_event(&mut neither).await, TestOut::Sent(3));
        for client in [&mut both, &mut only_x, &mut only_y] {
            assert_eq!(next_event(client).await, message("to x and y"));
        }
        for client in [&mut both, &mut only_x, &mut only_y, &mut neither] {
            fence(client, "once").await;
        }

        // The direct API: the same count.
        let (rx, ry) = (x.on(&running.server), y.on(&running.server));
        assert_eq!(
            running
                .server
                .to([&rx, &ry])
                .emit(message("direct"))
                .unwrap(),
            3
        );
        for client in [&mut both, &mut only_x, &mut only_y] {
            assert_eq!(next_event(client).await, message("direct"));
            fence(client, "direct once").await;
        }
    }

    /// Conformance R6.
    async fn r6_multi_room_emit_except_skips_that_connection_in_every_room(combo) {
        let running = Running::start().await;
        let (mut both, both_id) = running.client_on(combo).await;
        let (mut only_x, _) = running.client_on(combo).await;
        let (mut only_y, only_y_id) = running.client_on(combo).await;
        let x = RoomRef::new("chat", "x");
        let y = RoomRef::new("chat", "y");
        join(&mut both, &x).await;
        join(&mut both, &y).await;
        join(&mut only_x, &x).await;
        join(&mut only_y, &y).await;

        both.emit(TestIn::MultiEmit {
            rooms: vec![x.clone(), y.clone()],
            text: "not both".into(),
            except: Some(both_id),
        })
        .unwrap();
        assert_eq!(next_event(&mut both).await, TestOut::Sent(2));
        assert_eq!(next_event(&mut only_x).await, message("not both"));
        assert_eq!(next_event(&mut only_y).await, message("not both"));

        only_x
            .emit(TestIn::MultiEmit {
                rooms: vec![x.clone(), y.clone()],
                text: "not only_y".into(),
                except: Some(only_y_id),
            })
            .unwrap();
        assert_eq!(next_event(&mut only_x).await, message("not only_y"));
        assert_eq!(next_event(&mut only_x).await, TestOut::Sent(2));
        assert_eq!(next_event(&mut both).await, message("not only_y"));
        for client in [&mut both, &mut only_x, &mut only_y] {
            fence(client, "nothing more").await;
        }
    }

    /// Conformance R7.
    async fn r7_emits_to_an_empty_room_are_no_ops(combo) {
        let running = Running::start().await;
        let (mut a, _) = running.client_on(combo).await;
        let (mut b, b_id) = running.client_on(combo).await;
        let busy = RoomRef::new("chat", "busy");
        let empty = RoomRef::new("chat", "empty");
        join(&mut b, &busy).await;
        // `a` was a member once: an empty room is also one everybody left.
        join(&mut a, &empty).await;
        assert_eq!(
            call(&mut a, TestIn::Leave(empty.clone())).await,
            TestOut::Left(true)
        );

        for target in [Target::Everyone, Target::Except(b_id)] {
            room_emit(&mut a, &empty, "echo chamber", target).await;
            assert_eq!(next_event(&mut a).await, TestOut::Sent(0));
        }
        a.emit(TestIn::MultiEmit {
            rooms: vec![empty.clone()],
            text: "still nobody".into(),
            except: None,
        })
        .unwrap();
        assert_eq!(next_event(&mut a).await, TestOut::Sent(0));
        let room = empty.on(&running.server);
        assert_eq!(room.emit(message("direct")).unwrap(), 0);
        assert_eq!(
            running.server.to([&room]).emit(message("direct")).unwrap(),
            0
        );
        for client in [&mut a, &mut b] {
            fence(client, "nothing arrived").await;
        }
    }

    /// Conformance R7.
    async fn r7_emits_to_a_deleted_room_are_no_ops(combo) {
        let running = Running::start().await;
        let (mut a, a_id) = running.client_on(combo).await;
        let (mut b, _) = running.client_on(combo).await;
        let doomed = RoomRef::new("chat", "doomed");
        join(&mut a, &doomed).await;
        join(&mut b, &doomed).await;
        let stale = doomed.on(&running.server);
        assert_eq!(stale.size(), 2);

        assert!(running.server.channel("chat").delete_room("doomed").await);
        assert_eq!(stale.emit(message("stale")).unwrap(), 0);
        assert_eq!(stale.emit_except(a_id, message("stale")).unwrap(), 0);
        assert!(!stale.emit_to(a_id, message("stale")).unwrap());
        assert_eq!(
            running.server.to([&stale]).emit(message("stale")).unwrap(),
            0
        );
        // Through a handler, by name.
        room_emit(&mut b, &doomed, "by name", Target::Everyone).await;
        assert_eq!(next_event(&mut b).await, TestOut::Sent(0));
        for client in [&mut a, &mut b] {
            fence(client, "nothing arrived").await;
        }
    }

    /// Conformance R7.
    async fn r7_a_stale_handle_does_not_bring_a_deleted_room_back(combo) {
        let running = Running::start().await;
        let (mut a, a_id) = running.client_on(combo).await;
        let doomed = RoomRef::new("chat", "doomed");
        join(&mut a, &doomed).await;
        let stale = doomed.on(&running.server);
        let chat = running.server.channel("chat");
        assert!(chat.delete_room("doomed").await);
        assert!(!chat.has_room("doomed"));

        assert_eq!(stale.emit(message("stale")).unwrap(), 0);
        assert_eq!(stale.size(), 0);
        assert!(!stale.has(a_id));
        assert!(stale.members().is_empty());
        assert!(
            !chat.has_room("doomed"),
            "an emit or a read through a stale handle re-created the deleted room"
        );
        assert!(chat.rooms().is_empty(), "{:?}", chat.rooms());
        fence(&mut a, "nothing arrived").await;
    }
}
