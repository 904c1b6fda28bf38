use liweb::prelude::*;

#[derive(Events)]
enum In {
    Join(String),
}

#[derive(Events)]
enum Out {
    Joined,
}

fn main() {
    // A join guard answers `Result<(), JoinRejected>`, with the reason the client gets.
    let _server = Server::<In, Out>::builder()
        .join_guard("chat", |_conn, _room| async { true })
        .build();
}
