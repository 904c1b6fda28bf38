use liweb::prelude::*;

#[derive(Events)]
enum ChatOut {
    #[event(name = "auth:success")]
    LoggedIn,
}

fn main() {}
