use liweb::prelude::*;

#[derive(Events)]
enum ChatIn {
    Message(String),
}

#[liweb::handler(ChatIn::Message)]
async fn on_message(_text: u64) {}

fn main() {}
