use liweb::prelude::*;

#[derive(Events)]
struct ChatIn {
    text: String,
}

fn main() {}
