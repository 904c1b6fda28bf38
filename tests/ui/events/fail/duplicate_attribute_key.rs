use liweb::prelude::*;

#[derive(Events)]
enum ChatIn {
    #[event(name = "chat:message", name = "chat:text")]
    Message(String),
}

fn main() {}
