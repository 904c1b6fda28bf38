//! The checked-in TypeScript event maps of the chat, `static/chat-events.ts`,
//! match the Rust events. After changing `ChatIn`, `ChatOut` or a payload
//! type, regenerate them with
//! `LIWEB_UPDATE_TS=1 cargo test -p chat --test typescript`.

use chat::{ChatIn, ChatOut};

#[test]
fn chat_events_ts_is_up_to_date() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/static/chat-events.ts");
    if std::env::var_os("LIWEB_UPDATE_TS").is_some() {
        liweb::typescript::export::<ChatIn, ChatOut>(path).expect("write chat-events.ts");
        return;
    }
    let fresh = liweb::typescript::render::<ChatIn, ChatOut>();
    let on_disk = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        on_disk == fresh,
        "examples/chat/static/chat-events.ts is stale; regenerate it with \
         `LIWEB_UPDATE_TS=1 cargo test -p chat --test typescript`"
    );
}
