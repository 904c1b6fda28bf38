use liweb::prelude::*;

#[derive(Events)]
enum ChatIn {
    Message(String),
    #[event(name = "message")]
    Text(String),
}

fn main() {}
