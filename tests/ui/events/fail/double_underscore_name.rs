use liweb::prelude::*;

#[derive(Events)]
enum ChatIn {
    #[event(name = "__ping")]
    Ping,
}

fn main() {}
