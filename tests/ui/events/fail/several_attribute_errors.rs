use liweb::prelude::*;

// Every mistake is reported in one go, not one per build.
#[derive(Events)]
#[event(rename_al = "camelCase", rename_all = "snake-case")]
enum ChatIn {
    #[event(nme = "chat:message")]
    Message(String),
    #[event(name = "chat:join")]
    #[event(name = "chat:enter")]
    Join,
    #[event(name = "chat:leave", room = "lobby")]
    Leave,
}

fn main() {}
