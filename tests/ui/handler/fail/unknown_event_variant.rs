use liweb::prelude::*;

#[derive(Events)]
enum ChatIn {
    Message(String),
}

#[liweb::handler(ChatIn::Mesage)]
async fn on_message(_text: String) {}

fn main() {}
