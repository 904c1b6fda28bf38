use liweb::prelude::*;

#[derive(Events)]
enum In {
    Kick(String),
}

#[derive(Events)]
enum Out {
    Kicked,
}

/// Answers `bool`; a guard answers `Result<(), E>` so a refusal has a reason.
async fn admin_only(_conn: Conn<Out>) -> bool {
    true
}

#[liweb::handler(In::Kick, guard = admin_only)]
async fn kick(_conn: Conn<Out>, _who: String) {}

fn main() {}
