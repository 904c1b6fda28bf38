use liweb::prelude::*;

// `Error` becomes `error`, the name of liweb's own error event.
#[derive(Events)]
enum ChatOut {
    Message(String),
    Error(String),
}

fn main() {}
