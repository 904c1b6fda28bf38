use liweb::prelude::*;

#[derive(Events)]
enum ChatIn {
    #[event(name = "chat:message", name = "chat:text")]
    Message(String),
}

#[derive(Events)]
enum ChatOut {
    Message(String),
}

mod handlers {
    use super::*;

    // The derive's one error is the only one: the key `chat_in::Message`
    // still exists for this handler, and the handler registers below.
    #[liweb::handler(ChatIn::Message)]
    pub(crate) async fn on_message(conn: Conn<ChatOut>, text: String) {
        let _ = conn.emit(ChatOut::Message(text));
    }
}

fn main() {
    let _server = Server::<ChatIn, ChatOut>::builder()
        .handler(handlers::on_message)
        .build();
}
