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
    let room = server.channel("chat").room("general");
    let _ = room.emit(GameOut::Tick);
}

fn main() {}
