use liweb::prelude::*;

#[derive(Events)]
enum ChatIn {
    Message(String),
}

#[derive(Events)]
enum ChatOut {
    Message(String),
}

// Both arguments are reported in one go, and the handler still registers.
#[liweb::handler(ChatIn::Message)]
async fn on_message(_text: &String, _conn: impl Sized) {}

fn main() {
    let _server = Server::<ChatIn, ChatOut>::builder()
        .handler(on_message)
        .build();
}
