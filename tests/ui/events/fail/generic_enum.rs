use liweb::prelude::*;

#[derive(Events)]
enum ChatIn<T> {
    Message(T),
}

fn main() {}
