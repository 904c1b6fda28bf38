use liweb::prelude::*;

#[derive(Events)]
enum ChatIn {
    Message(String),
}

#[derive(Events)]
enum ChatOut {
    Message(String),
}

struct Database;

#[liweb::handler(ChatIn::Message)]
async fn on_message(_conn: Conn<ChatOut>, _db: Database, _text: String) {}

fn main() {}
