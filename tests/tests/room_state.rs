//! Conformance, section S (room state): clients send `room_state` events
//! whose handler runs one operation and answers with its result or its typed
//! error; synced members read the `state:*` reserved events.
//!
//! The operations' values are `serde_json::Value`s and `StateOp` is an
//! internally tagged enum: neither can be read from bincode, which is not
//! self-describing (docs/PROTOCOL.md, "bincode"). So the S tests run on the
//! self-describing combinations of both transports (`ws_json`, `ws_msgpack`,
//! `tcp_json`, `tcp_msgpack`), and the bincode combinations are pinned by
//! tests of what the server does instead: it refuses the payload with
//! `bad_payload` and stays up, sends a synced bincode member the snapshot
//! (which a client that knows the value types can read) but no patches, and
//! keeps patching the room's other members.

use std::collections::BTreeMap;

use liweb::{ErrorCode, client::Incoming};
use liweb_tests::{
    Combo, JoinOutcome, Peer, RoomRef, Running, StateFailure, StateOp, TestClient, TestIn, TestOut,
    conformance, fence, next, next_event,
};
use serde_json::{Value, json};

/// Runs one state operation on `room` and returns its answer.
async fn op(client: &mut TestClient, room: &RoomRef, op: StateOp) -> Result<Value, StateFailure> {
    client
        .emit(TestIn::RoomState {
            room: room.clone(),
            op,
        })
        .unwrap();
    match next_event(client).await {
        TestOut::StateResult(result) => result,
        other => panic!("expected a state result, got {other:?}"),
    }
}

async fn snapshot(client: &mut TestClient, room: &RoomRef) -> Value {
    op(client, room, StateOp::Snapshot).await.unwrap()
}

fn set(key: &str, value: Value) -> StateOp {
    StateOp::Set {
        key: key.into(),
        value,
    }
}

fn get(key: &str) -> StateOp {
    StateOp::Get { key: key.into() }
}

fn get_int(key: &str) -> StateOp {
    StateOp::GetInt { key: key.into() }
}

fn has(key: &str) -> StateOp {
    StateOp::Has { key: key.into() }
}

fn delete(key: &str) -> StateOp {
    StateOp::Delete { key: key.into() }
}

fn increment(key: &str, by: i64) -> StateOp {
    StateOp::Increment {
        key: key.into(),
        by,
    }
}

fn decrement(key: &str, by: i64) -> StateOp {
    StateOp::Decrement {
        key: key.into(),
        by,
    }
}

fn push(key: &str, item: Value) -> StateOp {
    StateOp::Push {
        key: key.into(),
        item,
    }
}

fn remove(key: &str, equal_to: Value) -> StateOp {
    StateOp::Remove {
        key: key.into(),
        equal_to,
    }
}

fn patch(key: &str, fields: Value) -> StateOp {
    StateOp::Patch {
        key: key.into(),
        fields,
    }
}

fn update(key: &str, value: Value) -> StateOp {
    StateOp::Update {
        key: key.into(),
        value,
    }
}

fn board() -> RoomRef {
    RoomRef::new("board", "b1")
}

const CHANNEL: &str = "game";
const ROOM: &str = "r1";

fn r1() -> Value {
    json!({"channel": CHANNEL, "room": ROOM})
}

/// `{"event": "state:patch", ...}` with the room and `fields` (`op`, `key`, `value`).
fn state_patch(fields: Value) -> Value {
    let mut payload = r1();
    payload
        .as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    json!({"event": "state:patch", "payload": payload})
}

fn state_snapshot(state: Value) -> Value {
    json!({"event": "state:snapshot", "payload": {"channel": CHANNEL, "room": ROOM, "state": state}})
}

fn ok(value: Value) -> Value {
    json!({"event": "state_result", "payload": {"Ok": value}})
}

async fn raw_join(raw: &mut Peer) {
    raw.emit("join", &r1()).await;
}

async fn raw_op(raw: &mut Peer, op: Value) {
    raw.emit("room_state", &json!({"room": r1(), "op": op}))
        .await;
}

conformance! {
    /// Conformance S1.
    on [ws_json, ws_msgpack, tcp_json, tcp_msgpack]
    async fn s1_set_get_has_delete_clear_and_snapshot_behave_as_a_map(combo) {
        let running = Running::start().await;
        let (mut c, _) = running.client_on(combo).await;
        let room = board();

        assert_eq!(snapshot(&mut c, &room).await, json!({}));
        assert_eq!(op(&mut c, &room, get("topic")).await, Ok(Value::Null));
        assert_eq!(op(&mut c, &room, has("topic")).await, Ok(json!(false)));

        assert_eq!(
            op(&mut c, &room, set("topic", json!("rust"))).await,
            Ok(Value::Null)
        );
        assert_eq!(
            op(&mut c, &room, set("count", json!(3))).await,
            Ok(Value::Null)
        );
        assert_eq!(
            op(&mut c, &room, set("card", json!({"id": 1, "tags": ["a"]}))).await,
            Ok(Value::Null)
        );
        assert_eq!(op(&mut c, &room, get("topic")).await, Ok(json!("rust")));
        assert_eq!(
            op(&mut c, &room, get("card")).await,
            Ok(json!({"id": 1, "tags": ["a"]}))
        );
        assert_eq!(op(&mut c, &room, has("topic")).await, Ok(json!(true)));
        // Typed reads decode, or say which key did not fit the type.
        assert_eq!(op(&mut c, &room, get_int("count")).await, Ok(json!(3)));
        assert_eq!(
            op(&mut c, &room, get_int("topic")).await,
            Err(StateFailure::Decode("topic".into()))
        );
        // `set` replaces.
        assert_eq!(
            op(&mut c, &room, set("topic", json!("go"))).await,
            Ok(Value::Null)
        );
        assert_eq!(
            snapshot(&mut c, &room).await,
            json!({"topic": "go", "count": 3, "card": {"id": 1, "tags": ["a"]}})
        );
        // The direct API sees what the handlers wrote.
        let state = room.on(&running.server).state();
        assert_eq!(
            state.get::<String>("topic").await.unwrap().as_deref(),
            Some("go")
        );

        assert_eq!(op(&mut c, &room, delete("topic")).await, Ok(json!(true)));
        assert_eq!(op(&mut c, &room, delete("topic")).await, Ok(json!(false)));
        assert_eq!(op(&mut c, &room, has("topic")).await, Ok(json!(false)));
        assert_eq!(
            snapshot(&mut c, &room).await,
            json!({"count": 3, "card": {"id": 1, "tags": ["a"]}})
        );

        assert_eq!(op(&mut c, &room, StateOp::Clear).await, Ok(Value::Null));
        assert_eq!(snapshot(&mut c, &room).await, json!({}));
        assert_eq!(op(&mut c, &room, has("count")).await, Ok(json!(false)));

        // Rooms do not share state, across rooms or channels.
        let other = RoomRef::new("board", "b2");
        let other_channel = RoomRef::new("other", "b1");
        op(&mut c, &room, set("k", json!(1))).await.unwrap();
        op(&mut c, &other, set("k", json!(2))).await.unwrap();
        assert_eq!(snapshot(&mut c, &room).await, json!({"k": 1}));
        assert_eq!(snapshot(&mut c, &other).await, json!({"k": 2}));
        assert_eq!(snapshot(&mut c, &other_channel).await, json!({}));
    }

    /// Conformance S2.
    on [ws_json, ws_msgpack, tcp_json, tcp_msgpack]
    async fn s2_update_of_a_missing_key_is_key_missing_and_changes_nothing(combo) {
        let running = Running::start().await;
        let (mut c, _) = running.client_on(combo).await;
        let room = board();
        op(&mut c, &room, set("title", json!("plans")))
            .await
            .unwrap();

        assert_eq!(
            op(&mut c, &room, update("ghost", json!(1))).await,
            Err(StateFailure::KeyMissing("ghost".into()))
        );
        assert_eq!(snapshot(&mut c, &room).await, json!({"title": "plans"}));
        assert_eq!(op(&mut c, &room, has("ghost")).await, Ok(json!(false)));

        // On an empty room too.
        let empty = RoomRef::new("board", "empty");
        assert_eq!(
            op(&mut c, &empty, update("ghost", json!(1))).await,
            Err(StateFailure::KeyMissing("ghost".into()))
        );
        assert_eq!(snapshot(&mut c, &empty).await, json!({}));

        // A set key updates, whatever the new value's type.
        assert_eq!(
            op(&mut c, &room, update("title", json!(["a", "list"]))).await,
            Ok(Value::Null)
        );
        assert_eq!(
            snapshot(&mut c, &room).await,
            json!({"title": ["a", "list"]})
        );
    }

    /// Conformance S3.
    on [ws_json, ws_msgpack, tcp_json, tcp_msgpack]
    async fn s3_push_creates_the_array_and_refuses_non_arrays(combo) {
        let running = Running::start().await;
        let (mut c, _) = running.client_on(combo).await;
        let room = board();

        assert_eq!(
            op(&mut c, &room, push("log", json!("a"))).await,
            Ok(Value::Null)
        );
        assert_eq!(op(&mut c, &room, get("log")).await, Ok(json!(["a"])));
        assert_eq!(
            op(&mut c, &room, push("log", json!({"n": 2}))).await,
            Ok(Value::Null)
        );
        assert_eq!(
            op(&mut c, &room, get("log")).await,
            Ok(json!(["a", {"n": 2}]))
        );

        op(&mut c, &room, set("name", json!("not a list")))
            .await
            .unwrap();
        op(&mut c, &room, set("obj", json!({"a": 1})))
            .await
            .unwrap();
        let before = snapshot(&mut c, &room).await;
        assert_eq!(
            op(&mut c, &room, push("name", json!("x"))).await,
            Err(StateFailure::NotAnArray("name".into()))
        );
        assert_eq!(
            op(&mut c, &room, push("obj", json!("x"))).await,
            Err(StateFailure::NotAnArray("obj".into()))
        );
        assert_eq!(snapshot(&mut c, &room).await, before);
        assert_eq!(
            before,
            json!({"log": ["a", {"n": 2}], "name": "not a list", "obj": {"a": 1}})
        );
    }

    /// Conformance S4.
    on [ws_json, ws_msgpack, tcp_json, tcp_msgpack]
    async fn s4_remove_on_a_missing_key_is_a_no_op_and_on_a_non_array_is_not_an_array(combo) {
        let running = Running::start().await;
        let (mut c, _) = running.client_on(combo).await;
        let room = board();

        assert_eq!(
            op(&mut c, &room, remove("ghost", json!(1))).await,
            Ok(json!(0))
        );
        assert_eq!(op(&mut c, &room, has("ghost")).await, Ok(json!(false)));
        assert_eq!(snapshot(&mut c, &room).await, json!({}));

        op(&mut c, &room, set("count", json!(7))).await.unwrap();
        assert_eq!(
            op(&mut c, &room, remove("count", json!(7))).await,
            Err(StateFailure::NotAnArray("count".into()))
        );
        assert_eq!(snapshot(&mut c, &room).await, json!({"count": 7}));

        for item in [json!(1), json!(2), json!(1), json!(3)] {
            op(&mut c, &room, push("list", item)).await.unwrap();
        }
        assert_eq!(
            op(&mut c, &room, remove("list", json!(1))).await,
            Ok(json!(2))
        );
        assert_eq!(
            op(&mut c, &room, remove("list", json!(9))).await,
            Ok(json!(0))
        );
        assert_eq!(
            snapshot(&mut c, &room).await,
            json!({"count": 7, "list": [2, 3]})
        );
    }

    /// Conformance S5.
    on [ws_json, ws_msgpack, tcp_json, tcp_msgpack]
    async fn s5_increment_and_decrement_start_from_zero_and_refuse_non_numbers(combo) {
        let running = Running::start().await;
        let (mut c, _) = running.client_on(combo).await;
        let room = board();

        assert_eq!(op(&mut c, &room, increment("up", 5)).await, Ok(json!(5)));
        assert_eq!(op(&mut c, &room, increment("up", 2)).await, Ok(json!(7)));
        assert_eq!(op(&mut c, &room, decrement("down", 3)).await, Ok(json!(-3)));
        assert_eq!(op(&mut c, &room, decrement("up", 10)).await, Ok(json!(-3)));
        op(&mut c, &room, set("ratio", json!(0.5))).await.unwrap();
        assert_eq!(
            op(&mut c, &room, increment("ratio", 1)).await,
            Ok(json!(1.5))
        );

        op(&mut c, &room, set("name", json!("seven")))
            .await
            .unwrap();
        op(&mut c, &room, set("list", json!([1]))).await.unwrap();
        let before = snapshot(&mut c, &room).await;
        assert_eq!(
            op(&mut c, &room, increment("name", 1)).await,
            Err(StateFailure::NotANumber("name".into()))
        );
        assert_eq!(
            op(&mut c, &room, decrement("list", 1)).await,
            Err(StateFailure::NotANumber("list".into()))
        );
        assert_eq!(snapshot(&mut c, &room).await, before);
        assert_eq!(
            before,
            json!({"up": -3, "down": -3, "ratio": 1.5, "name": "seven", "list": [1]})
        );
    }

    /// Conformance S6.
    on [ws_json, ws_msgpack, tcp_json, tcp_msgpack]
    async fn s6_patch_creates_merges_shallowly_and_refuses_non_objects(combo) {
        let running = Running::start().await;
        let (mut c, _) = running.client_on(combo).await;
        let room = board();

        assert_eq!(
            op(
                &mut c,
                &room,
                patch("cfg", json!({"theme": "dark", "nested": {"a": 1}}))
            )
            .await,
            Ok(Value::Null)
        );
        assert_eq!(
            op(&mut c, &room, get("cfg")).await,
            Ok(json!({"theme": "dark", "nested": {"a": 1}}))
        );
        // One level deep: `nested` is replaced, not merged.
        assert_eq!(
            op(
                &mut c,
                &room,
                patch("cfg", json!({"lang": "en", "nested": {"b": 2}}))
            )
            .await,
            Ok(Value::Null)
        );
        assert_eq!(
            op(&mut c, &room, get("cfg")).await,
            Ok(json!({"theme": "dark", "lang": "en", "nested": {"b": 2}}))
        );

        op(&mut c, &room, set("name", json!("x"))).await.unwrap();
        let before = snapshot(&mut c, &room).await;
        assert_eq!(
            op(&mut c, &room, patch("name", json!({"a": 1}))).await,
            Err(StateFailure::NotAnObject("name".into()))
        );
        // A patch that is not an object is refused too, also on a missing key.
        assert_eq!(
            op(&mut c, &room, patch("cfg", json!(5))).await,
            Err(StateFailure::NotAnObject("cfg".into()))
        );
        assert_eq!(
            op(&mut c, &room, patch("fresh", json!([1, 2]))).await,
            Err(StateFailure::NotAnObject("fresh".into()))
        );
        assert_eq!(snapshot(&mut c, &room).await, before);
        assert_eq!(
            before,
            json!({"cfg": {"theme": "dark", "lang": "en", "nested": {"b": 2}}, "name": "x"})
        );
    }

    /// Conformance S7.
    on [ws_json, ws_msgpack, tcp_json, tcp_msgpack]
    async fn s7_concurrent_increments_from_many_connections_lose_no_update(combo) {
        let running = Running::start().await;
        const CLIENTS: usize = 8;
        const EACH: usize = 50;
        let room = board();
        let mut clients = Vec::new();
        for _ in 0..CLIENTS {
            clients.push(running.client_on(combo).await.0);
        }
        // Every client sends all its increments before anyone reads an answer.
        for client in &clients {
            for _ in 0..EACH {
                client
                    .emit(TestIn::RoomState {
                        room: room.clone(),
                        op: increment("hits", 1),
                    })
                    .unwrap();
            }
        }
        let mut seen = Vec::new();
        for client in &mut clients {
            for _ in 0..EACH {
                match next_event(client).await {
                    TestOut::StateResult(Ok(n)) => seen.push(n.as_u64().unwrap()),
                    other => panic!("expected a number, got {other:?}"),
                }
            }
        }
        seen.sort_unstable();
        let total = (CLIENTS * EACH) as u64;
        assert_eq!(
            seen,
            (1..=total).collect::<Vec<_>>(),
            "each increment saw its own value"
        );
        assert_eq!(
            op(&mut clients[0], &room, get_int("hits")).await,
            Ok(json!(total))
        );
    }

    /// Conformance S8.
    on [ws_json, ws_msgpack, tcp_json, tcp_msgpack]
    async fn s8_synced_members_receive_every_change_as_a_patch(combo) {
        let running = Running::start().await;
        let room = RoomRef::new(CHANNEL, ROOM).on(&running.server);
        room.set_sync(true);
        room.state().set("score", &1).await.unwrap();

        let (mut a, _) = running.peer_on(combo).await;
        let (mut b, _) = running.peer_on(combo).await;
        let (mut outsider, _) = running.client_on(combo).await;
        for member in [&mut a, &mut b] {
            raw_join(member).await;
            assert_eq!(member.next().await.json(), state_snapshot(json!({"score": 1})));
            assert_eq!(
                member.next().await.json(),
                json!({"event": "join_outcome", "payload": "added"})
            );
        }

        // Each successful operation: every member gets the key's new value as
        // `set`, the sender before its answer.
        let steps = [
            (
                json!({"op": "set", "key": "score", "value": 3}),
                json!({"op": "set", "key": "score", "value": 3}),
                Value::Null,
            ),
            (
                json!({"op": "increment", "key": "score", "by": 2}),
                json!({"op": "set", "key": "score", "value": 5}),
                json!(5),
            ),
            (
                json!({"op": "decrement", "key": "score", "by": 1}),
                json!({"op": "set", "key": "score", "value": 4}),
                json!(4),
            ),
            (
                json!({"op": "update", "key": "score", "value": 10}),
                json!({"op": "set", "key": "score", "value": 10}),
                Value::Null,
            ),
            (
                json!({"op": "push", "key": "log", "item": "a"}),
                json!({"op": "set", "key": "log", "value": ["a"]}),
                Value::Null,
            ),
            (
                json!({"op": "push", "key": "log", "item": "b"}),
                json!({"op": "set", "key": "log", "value": ["a", "b"]}),
                Value::Null,
            ),
            (
                json!({"op": "remove", "key": "log", "equal_to": "a"}),
                json!({"op": "set", "key": "log", "value": ["b"]}),
                json!(1),
            ),
            (
                json!({"op": "patch", "key": "cfg", "fields": {"x": 1}}),
                json!({"op": "set", "key": "cfg", "value": {"x": 1}}),
                Value::Null,
            ),
            (
                json!({"op": "patch", "key": "cfg", "fields": {"y": 2}}),
                json!({"op": "set", "key": "cfg", "value": {"x": 1, "y": 2}}),
                Value::Null,
            ),
            (
                json!({"op": "delete", "key": "score"}),
                json!({"op": "delete", "key": "score"}),
                json!(true),
            ),
        ];
        for (op, change, answer) in steps {
            raw_op(&mut a, op.clone()).await;
            assert_eq!(a.next().await.json(), state_patch(change.clone()), "after {op}");
            assert_eq!(a.next().await.json(), ok(answer), "after {op}");
            assert_eq!(b.next().await.json(), state_patch(change), "after {op}");
        }

        // Failed operations and ones that change nothing send no patch.
        for (op, answer) in [
            (
                json!({"op": "increment", "key": "log", "by": 1}),
                json!({"event": "state_result", "payload": {"Err": {"not_a_number": "log"}}}),
            ),
            (
                json!({"op": "update", "key": "ghost", "value": 1}),
                json!({"event": "state_result", "payload": {"Err": {"key_missing": "ghost"}}}),
            ),
            (json!({"op": "delete", "key": "ghost"}), ok(json!(false))),
            (
                json!({"op": "remove", "key": "log", "equal_to": "zzz"}),
                ok(json!(0)),
            ),
            (
                json!({"op": "remove", "key": "ghost", "equal_to": 1}),
                ok(json!(0)),
            ),
            (json!({"op": "get", "key": "log"}), ok(json!(["b"]))),
        ] {
            raw_op(&mut a, op.clone()).await;
            assert_eq!(a.next().await.json(), answer, "after {op}");
        }
        b.fence("no patch for failures").await;
        // The state is what the patches said.
        assert_eq!(
            room.state().snapshot().await.unwrap(),
            *json!({"log": ["b"], "cfg": {"x": 1, "y": 2}})
                .as_object()
                .unwrap()
        );

        // `clear` is one patch.
        raw_op(&mut a, json!({"op": "clear"})).await;
        assert_eq!(a.next().await.json(), state_patch(json!({"op": "clear"})));
        assert_eq!(a.next().await.json(), ok(Value::Null));
        assert_eq!(b.next().await.json(), state_patch(json!({"op": "clear"})));

        // Non-members get nothing, and the typed client saw no reserved event.
        fence(&mut outsider, "not a member").await;
        a.fence("nothing more").await;
        b.fence("nothing more").await;
    }

    /// Conformance S8.
    on [ws_json, ws_msgpack, tcp_json, tcp_msgpack]
    async fn s8_a_late_joiner_gets_a_snapshot_and_a_leaver_stops_getting_patches(combo) {
        let running = Running::start().await;
        let room = RoomRef::new(CHANNEL, ROOM).on(&running.server);
        room.set_sync(true);
        let (mut a, _) = running.peer_on(combo).await;
        raw_join(&mut a).await;
        assert_eq!(a.next().await.json(), state_snapshot(json!({})));
        assert_eq!(
            a.next().await.json(),
            json!({"event": "join_outcome", "payload": "added"})
        );
        raw_op(&mut a, json!({"op": "set", "key": "score", "value": 3})).await;
        assert_eq!(
            a.next().await.json(),
            state_patch(json!({"op": "set", "key": "score", "value": 3}))
        );
        assert_eq!(a.next().await.json(), ok(Value::Null));
        raw_op(
            &mut a,
            json!({"op": "push", "key": "log", "item": {"who": "a"}}),
        )
        .await;
        assert_eq!(
            a.next().await.json(),
            state_patch(json!({"op": "set", "key": "log", "value": [{"who": "a"}]}))
        );
        assert_eq!(a.next().await.json(), ok(Value::Null));

        let (mut late, _) = running.peer_on(combo).await;
        raw_join(&mut late).await;
        assert_eq!(
            late.next().await.json(),
            state_snapshot(json!({"score": 3, "log": [{"who": "a"}]}))
        );
        assert_eq!(
            late.next().await.json(),
            json!({"event": "join_outcome", "payload": "added"})
        );
        // Joining again is no join: no second snapshot.
        raw_join(&mut late).await;
        assert_eq!(
            late.next().await.json(),
            json!({"event": "join_outcome", "payload": "already_member"})
        );
        a.fence("a joiner's snapshot goes to the joiner only").await;

        // After leaving, no more patches.
        late.emit("leave", &r1()).await;
        assert_eq!(late.next().await.json(), json!({"event": "left", "payload": true}));
        raw_op(&mut a, json!({"op": "increment", "key": "score", "by": 1})).await;
        assert_eq!(
            a.next().await.json(),
            state_patch(json!({"op": "set", "key": "score", "value": 4}))
        );
        assert_eq!(a.next().await.json(), ok(json!(4)));
        late.fence("left the room").await;

        // With sync off, members get no patch and joiners no snapshot.
        room.set_sync(false);
        raw_op(&mut a, json!({"op": "set", "key": "score", "value": 0})).await;
        assert_eq!(a.next().await.json(), ok(Value::Null));
        raw_join(&mut late).await;
        assert_eq!(
            late.next().await.json(),
            json!({"event": "join_outcome", "payload": "added"})
        );
        late.fence("no snapshot").await;
        a.fence("no patch").await;
    }

    /// Conformance S8.
    on [ws_json, ws_msgpack, tcp_json, tcp_msgpack]
    async fn s8_channel_defaults_sync_a_room_from_its_first_join(combo) {
        let running = Running::start_with(|builder| {
            builder.channel_defaults(CHANNEL, liweb::RoomDefaults::new().sync(true))
        })
        .await;
        // No room exists yet: the first joiner creates it, synced.
        assert!(!running.server.channel(CHANNEL).has_room(ROOM));
        let (mut first, _) = running.peer_on(combo).await;
        raw_join(&mut first).await;
        assert_eq!(first.next().await.json(), state_snapshot(json!({})));
        assert_eq!(
            first.next().await.json(),
            json!({"event": "join_outcome", "payload": "added"})
        );
        raw_op(&mut first, json!({"op": "set", "key": "votes", "value": 1})).await;
        assert_eq!(
            first.next().await.json(),
            state_patch(json!({"op": "set", "key": "votes", "value": 1}))
        );
        assert_eq!(first.next().await.json(), ok(Value::Null));

        // Rooms of other channels are not synced.
        let (mut elsewhere, _) = running.client_on(combo).await;
        elsewhere
            .emit(TestIn::Join(RoomRef::new("other", ROOM)))
            .unwrap();
        assert_eq!(
            next_event(&mut elsewhere).await,
            TestOut::JoinOutcome(liweb_tests::JoinOutcome::Added)
        );
        assert_eq!(
            op(
                &mut elsewhere,
                &RoomRef::new("other", ROOM),
                set("votes", json!(1))
            )
            .await,
            Ok(Value::Null)
        );
        fence(&mut elsewhere, "no snapshot or patch").await;
        first.fence("nothing from the other channel").await;
    }

    /// Conformance S1: bincode cannot carry a `room_state` call (its
    /// `StateOp` is internally tagged, its values are `serde_json::Value`s),
    /// so the server answers `bad_payload`, runs no operation and stays up.
    on [ws_bincode, tcp_bincode]
    async fn s1_on_bincode_a_state_call_is_a_bad_payload_and_changes_nothing(combo) {
        let running = Running::start().await;
        let (mut c, _) = running.client_on(combo).await;
        let room = board();
        c.emit(TestIn::RoomState {
            room: room.clone(),
            op: set("topic", json!("rust")),
        })
        .unwrap();
        match next(&mut c).await {
            Incoming::Error(error) => {
                assert_eq!(error.code, ErrorCode::BadPayload);
                assert_eq!(error.event.as_deref(), Some("room_state"));
            }
            other => panic!("expected a bad_payload error, got {other:?}"),
        }
        fence(&mut c, "still open").await;
        assert!(room.on(&running.server).state().snapshot().await.unwrap().is_empty());
    }

    /// Conformance S8: a bincode member of a synced room gets the snapshot
    /// on joining (readable when the client knows the values' types) but no
    /// `state:patch`, whose internally tagged body bincode cannot encode.
    on [ws_bincode, tcp_bincode]
    async fn s8_on_bincode_a_joiner_gets_the_snapshot_and_no_patches(combo) {
        #[derive(Debug, PartialEq, serde::Deserialize)]
        struct Snapshot {
            channel: String,
            room: String,
            state: BTreeMap<String, u64>,
        }
        let running = Running::start().await;
        let room = RoomRef::new(CHANNEL, ROOM).on(&running.server);
        room.set_sync(true);
        room.state().set("score", &1).await.unwrap();

        let (mut member, _) = running.peer_on(combo).await;
        member.emit("join", &RoomRef::new(CHANNEL, ROOM)).await;
        let snapshot = member.next().await;
        assert_eq!(snapshot.event(), "state:snapshot");
        assert_eq!(
            snapshot.payload::<Snapshot>(),
            Snapshot {
                channel: CHANNEL.into(),
                room: ROOM.into(),
                state: BTreeMap::from([("score".to_owned(), 1)]),
            }
        );
        let joined = member.next().await;
        assert_eq!(joined.event(), "join_outcome");
        assert_eq!(joined.payload::<JoinOutcome>(), JoinOutcome::Added);

        room.state().set("score", &2).await.unwrap();
        member.fence("no patch on bincode").await;
        assert_eq!(room.state().get::<u64>("score").await.unwrap(), Some(2));
    }
}

/// Conformance S8: in a synced room whose members speak different codecs,
/// a patch that one codec cannot carry (bincode) still reaches every member
/// of the others.
#[tokio::test]
async fn s8_a_codec_that_cannot_carry_a_patch_does_not_stop_the_other_members_getting_it() {
    let running = Running::start().await;
    let room = RoomRef::new(CHANNEL, ROOM).on(&running.server);
    let mut readers = Vec::new();
    let mut bincode = Vec::new();
    for combo in Combo::ALL {
        let (peer, id) = running.peer_on(combo).await;
        assert!(room.join(&running.conn(id)).await.unwrap());
        if combo.self_describing() {
            readers.push(peer);
        } else {
            bincode.push(peer);
        }
    }
    room.set_sync(true);
    for value in 1..=3 {
        room.state().set("score", &value).await.unwrap();
        for reader in &mut readers {
            assert_eq!(
                reader.next().await.json(),
                state_patch(json!({"op": "set", "key": "score", "value": value})),
                "on {}",
                reader.combo()
            );
        }
    }
    for peer in readers.iter_mut().chain(&mut bincode) {
        peer.fence("nothing more").await;
    }
}
