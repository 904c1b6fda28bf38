use liweb::prelude::*;

#[derive(Events)]
enum ChatIn {
    Ping,
    Message(String),
}

#[derive(Events)]
enum ChatOut {
    Pong,
}

#[liweb::handler(ChatIn::Ping)]
async fn ping(conn: Conn<ChatOut>) {
    let _ = conn.emit(ChatOut::Pong);
}

fn main() {
    let _ = Server::<ChatIn, ChatOut>::builder()
        .handlers(liweb::handlers![exhaustive ChatIn => ping])
        .build();
}
