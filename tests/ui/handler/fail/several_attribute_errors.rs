use liweb::prelude::*;

#[derive(Events)]
enum ChatIn {
    Message(String),
}

#[derive(Events)]
enum ChatOut {
    Message(String),
}

// Every attribute mistake is reported in one go, and the handler still
// registers.
#[liweb::handler(ChatIn::Message, ot = ChatOut, out = ChatOut, out = ChatIn)]
async fn on_message(_text: String) {}

fn main() {
    let _server = Server::<ChatIn, ChatOut>::builder()
        .handler(on_message)
        .build();
}
