use liweb::prelude::*;

#[derive(Events)]
enum ChatIn {
    Message(String),
}

#[liweb::handler(ChatIn::Message)]
async fn on_message(text: String) -> usize {
    text.len()
}

fn main() {}
