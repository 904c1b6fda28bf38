use liweb::prelude::*;

#[derive(Events)]
#[event(rename_all = "camel_case")]
enum ChatIn {
    SendMessage(String),
}

fn main() {}
