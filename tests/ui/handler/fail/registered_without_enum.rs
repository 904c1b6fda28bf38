use liweb::prelude::*;

#[derive(Events)]
enum ChatIn {
    Message(String),
}

#[derive(Events)]
enum ChatOut {
    Message(String),
}

// Without the enum the event is unknown, yet the handler still registers
// and this is the only error.
#[liweb::handler(Message)]
async fn on_message(_conn: Conn<ChatOut>, _text: String) {}

fn main() {
    let _server = Server::<ChatIn, ChatOut>::builder()
        .handler(on_message)
        .build();
}
