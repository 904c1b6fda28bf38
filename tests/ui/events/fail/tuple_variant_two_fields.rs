use liweb::prelude::*;

#[derive(Events)]
enum ChatIn {
    Move(i32, i32),
}

fn main() {}
