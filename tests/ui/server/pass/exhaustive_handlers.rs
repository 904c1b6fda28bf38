use liweb::prelude::*;

#[derive(Events)]
enum ChatIn {
    Ping,
    Message(String),
    Leave { reason: String },
}

#[derive(Events)]
enum ChatOut {
    Pong,
    Message(String),
}

#[liweb::handler(ChatIn::Ping)]
async fn ping(conn: Conn<ChatOut>) {
    let _ = conn.emit(ChatOut::Pong);
}

#[liweb::handler(ChatIn::Message)]
async fn message(server: Server<ChatIn, ChatOut>, text: String) {
    let _ = server.broadcast(ChatOut::Message(text));
}

#[liweb::handler(ChatIn::Message)]
async fn log_message(_text: String) {}

#[liweb::handler(ChatIn::Leave)]
async fn leave(_leave: chat_in::Leave) {}

mod more {
    use super::*;

    #[liweb::handler(ChatIn::Leave)]
    pub(crate) async fn audit_leave(_id: ConnId) {}
}

fn main() {
    // Every event has a handler; an event may have several; order is free;
    // handlers may be named by path.
    let _server = Server::<ChatIn, ChatOut>::builder()
        .handlers(liweb::handlers![exhaustive ChatIn => leave, message, ping, log_message, more::audit_leave])
        .build();
    // The non-exhaustive form takes any handlers of the server.
    let _server = Server::<ChatIn, ChatOut>::builder()
        .handlers(liweb::handlers![ping])
        .build();
}
