use liweb::prelude::*;

#[derive(Events)]
enum In {
    Kick(String),
}

#[liweb::handler(In::Kick, guard = 42)]
async fn kick(_who: String) {}

fn main() {}
