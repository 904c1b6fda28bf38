use liweb::prelude::*;

#[derive(Events)]
enum ChatIn {
    Ping,
}

#[derive(Events)]
enum ChatOut {
    Pong,
}

#[derive(Events)]
enum GameOut {
    Tick,
}

fn tick(server: &Server<ChatIn, ChatOut>) {
    let _ = server.broadcast(GameOut::Tick);
}

fn main() {}
