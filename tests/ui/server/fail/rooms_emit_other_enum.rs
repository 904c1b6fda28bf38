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
    let lobby = server.channel("chat").room("lobby");
    let _ = server.to([&lobby]).emit(GameOut::Tick);
}

fn main() {}
