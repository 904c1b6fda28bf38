use liweb::prelude::*;

#[derive(Events)]
enum ChatIn {
    Message(String),
}

#[derive(Events)]
enum ChatOut {
    Message(String),
}

mod handlers {
    use super::*;

    // One mistake gives one error: the handler still exists, so neither the
    // import above nor the registration below adds an error or a warning.
    #[liweb::handler(ChatIn::Message)]
    pub(crate) async fn on_message(_conn: Conn<ChatOut>, text: &str) {
        let _ = text.len();
    }
}

fn main() {
    let _server = Server::<ChatIn, ChatOut>::builder()
        .handler(handlers::on_message)
        .build();
}
