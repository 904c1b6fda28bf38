use liweb::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Say {
    text: String,
}

#[derive(Events)]
enum ChatIn {
    Ping,
    Message(Say),
    Dm { to: ConnId, text: String },
    Whoami,
    Count,
}

#[derive(Events)]
enum ChatOut {
    Pong,
    Message { from: ConnId, text: String },
    Count(u64),
}

#[derive(Clone, Default)]
struct Hits(u64);

// No extractor at all: works with any `Out`.
#[liweb::handler(ChatIn::Ping)]
async fn ping() {}

#[liweb::handler(ChatIn::Message)]
async fn message(conn: Conn<ChatOut>, server: Server<ChatIn, ChatOut>, say: Say) {
    let _ = server.broadcast(ChatOut::Message {
        from: conn.id(),
        text: say.text,
    });
}

// The payload of a struct variant is its key type.
#[liweb::handler(ChatIn::Dm)]
async fn dm(server: Server<ChatIn, ChatOut>, from: ConnId, dm: chat_in::Dm) {
    if let Some(conn) = server.get(dm.to) {
        let _ = conn.emit(ChatOut::Message {
            from,
            text: dm.text,
        });
    }
}

#[liweb::handler(ChatIn::Whoami)]
async fn whoami(meta: ConnMeta, id: ConnId, conn: Conn<ChatOut>) {
    let _ = (meta.path(), id);
    let _ = conn.emit(ChatOut::Pong);
}

// A unit variant's payload is `()`, and may be taken as an argument.
#[liweb::handler(ChatIn::Count)]
async fn count(State(hits): State<Hits>, conn: Conn<ChatOut>, (): ()) {
    let _ = conn.emit(ChatOut::Count(hits.0));
}

fn main() {
    let _server = Server::<ChatIn, ChatOut>::builder()
        .state(Hits::default())
        .handler(ping)
        .handler(message)
        .handler(dm)
        .handler(whoami)
        .handler(count)
        .build();
}
