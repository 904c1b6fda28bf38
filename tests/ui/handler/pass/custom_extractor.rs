use liweb::prelude::*;
use liweb::{ConnParts, ExtractError};

#[derive(Events)]
enum ChatIn {
    Hello(String),
}

#[derive(Events)]
enum ChatOut {
    Welcome(String),
}

/// The `x-user` header of the opening request.
struct UserHeader(String);

impl<In: Events, Out: Events> FromConnParts<In, Out> for UserHeader {
    fn from_conn_parts(parts: &ConnParts<'_, In, Out>) -> Result<Self, ExtractError> {
        let value = parts
            .conn()
            .meta()
            .headers()
            .get("x-user")
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| ExtractError::custom("no `x-user` header"))?;
        Ok(UserHeader(value.to_owned()))
    }
}

#[liweb::handler(ChatIn::Hello)]
async fn hello(conn: Conn<ChatOut>, UserHeader(user): UserHeader, greeting: String) {
    let _ = conn.emit(ChatOut::Welcome(format!("{greeting}, {user}")));
}

fn main() {
    let _server = Server::<ChatIn, ChatOut>::builder().handler(hello).build();
}
