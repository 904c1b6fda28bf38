use liweb::prelude::*;

#[derive(Events)]
enum ChatIn {
    Message(String),
    Shout(String),
}

#[derive(Events)]
enum ChatOut {
    Message(String),
}

#[liweb::handler(ChatIn::Message)]
async fn message(conn: Conn<ChatOut>, text: String) -> Result<(), liweb::EmitError> {
    conn.emit(ChatOut::Message(text))
}

#[derive(Debug)]
struct TooLoud;

impl std::fmt::Display for TooLoud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("too loud")
    }
}

impl std::error::Error for TooLoud {}

#[liweb::handler(ChatIn::Shout)]
async fn shout(
    server: Server<ChatIn, ChatOut>,
    text: String,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    if text.len() > 100 {
        return Err(TooLoud.into());
    }
    server.broadcast(ChatOut::Message(text.to_uppercase()))?;
    Ok(())
}

fn main() {
    let _server = Server::<ChatIn, ChatOut>::builder()
        .handler(message)
        .handler(shout)
        .build();
}
