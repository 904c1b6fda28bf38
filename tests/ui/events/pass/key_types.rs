use liweb::EventKey;
use liweb::prelude::*;

#[derive(Events)]
enum ChatIn {
    Ping,
    Message(String),
    Dm { to: String, text: String },
}

// Keys name events in types.
fn name_of<K: EventKey>() -> &'static str {
    K::NAME
}

fn payload_of<K: EventKey<Events = ChatIn>>(payload: K::Payload) -> ChatIn {
    K::into_event(payload)
}

fn main() {
    assert_eq!(name_of::<chat_in::Ping>(), "ping");
    assert_eq!(name_of::<chat_in::Message>(), "message");
    assert_eq!(<chat_in::Dm as EventKey>::INDEX, 2);

    // A struct variant's key is also its payload struct.
    let dm = chat_in::Dm {
        to: "ada".into(),
        text: "hi".into(),
    };
    let ChatIn::Dm { text, .. } = payload_of::<chat_in::Dm>(dm) else {
        panic!("not a dm");
    };
    assert_eq!(text, "hi");

    let _: ChatIn = payload_of::<chat_in::Message>(String::from("hello"));
    let _: ChatIn = payload_of::<chat_in::Ping>(());
}
