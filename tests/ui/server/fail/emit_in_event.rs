use liweb::prelude::*;

#[derive(Events)]
enum ChatIn {
    Ping,
}

#[derive(Events)]
enum ChatOut {
    Pong,
}

fn reply(conn: &Conn<ChatOut>) {
    let _ = conn.emit(ChatIn::Ping);
}

fn main() {}
