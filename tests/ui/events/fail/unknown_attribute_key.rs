use liweb::prelude::*;

#[derive(Events)]
enum ChatIn {
    #[event(nme = "chat:message")]
    Message(String),
}

fn main() {}
