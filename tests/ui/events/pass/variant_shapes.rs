use liweb::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Say {
    text: String,
}

// Unit, newtype and struct variants, with the default rule and overrides.
#[derive(Events)]
enum ChatIn {
    Ping,
    SendMessage(Say),
    DirectMessage {
        to: ConnId,
        text: String,
    },
    #[event(name = "chat:typing")]
    Typing,
}

#[derive(Events)]
#[event(rename_all = "camelCase")]
enum CamelOut {
    UserJoined(String),
    UserLeft {
        name: String,
    },
    #[event(name = "room:closed")]
    RoomClosed,
}

#[derive(Events)]
#[event(rename_all = "kebab-case")]
enum KebabOut {
    RoomOpened,
}

#[derive(Events)]
#[event(rename_all = "SCREAMING_SNAKE_CASE")]
enum ShoutyOut {
    RoomOpened,
}

fn main() {
    use liweb::Events as _;

    assert_eq!(
        ChatIn::NAMES,
        ["ping", "send_message", "direct_message", "chat:typing"]
    );
    assert_eq!(CamelOut::NAMES, ["userJoined", "userLeft", "room:closed"]);
    assert_eq!(KebabOut::NAMES, ["room-opened"]);
    assert_eq!(ShoutyOut::NAMES, ["ROOM_OPENED"]);
}
