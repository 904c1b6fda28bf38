use liweb::prelude::*;

// A value of the wrong form is reported, and the keys after it still are.
#[derive(Events)]
#[event(rename_all = camelCase, typescript = true, bogus)]
enum ChatIn {
    #[event(name = 5, room = "lobby")]
    Message(String),
    #[event(name)]
    Join,
}

fn main() {}
