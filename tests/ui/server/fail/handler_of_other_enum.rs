use liweb::prelude::*;

#[derive(Events)]
enum ChatIn {
    Message(String),
}

#[derive(Events)]
enum GameIn {
    Move(u32),
}

#[derive(Events)]
enum ChatOut {
    Message(String),
}

#[liweb::handler(GameIn::Move)]
async fn on_move(_to: u32) {}

fn main() {
    let _ = Server::<ChatIn, ChatOut>::builder()
        .handler(on_move)
        .build();
}
