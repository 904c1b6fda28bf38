use liweb::prelude::*;

#[derive(Events)]
enum ChatIn {
    Ping,
}

#[derive(Events)]
enum GameIn {
    Move,
}

#[derive(Events)]
enum ChatOut {
    Pong,
}

#[liweb::handler(ChatIn::Ping)]
async fn ping() {}

#[liweb::handler(GameIn::Move)]
async fn on_move() {}

fn main() {
    let _ = Server::<ChatIn, ChatOut>::builder()
        .handlers(liweb::handlers![exhaustive ChatIn => ping, on_move])
        .build();
}
