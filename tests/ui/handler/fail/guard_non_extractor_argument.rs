use liweb::prelude::*;

#[derive(Events)]
enum In {
    Kick(String),
}

#[derive(Events)]
enum Out {
    Kicked,
}

/// Takes a `u64`, which is not an extractor.
async fn admin_only(_level: u64) -> Result<(), String> {
    Ok(())
}

#[liweb::handler(In::Kick, guard = admin_only)]
async fn kick(_conn: Conn<Out>, _who: String) {}

fn main() {}
