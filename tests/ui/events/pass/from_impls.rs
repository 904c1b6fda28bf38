use liweb::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Say {
    text: String,
}

#[derive(Events)]
enum ChatOut {
    Message(Say),
    Joined { name: String },
    // Two newtype variants share `String`, so neither gets a `From<String>`.
    Notice(String),
    Warning(String),
    Pong,
}

fn wants_out(event: impl Into<ChatOut>) -> ChatOut {
    event.into()
}

fn main() {
    let _ = wants_out(Say { text: "hi".into() });
    let _ = wants_out(chat_out::Joined { name: "ada".into() });
    let _ = ChatOut::Notice(String::new());
    let _ = ChatOut::Warning(String::new());
    let _ = ChatOut::Pong;
}
