use liweb::auth::Auth;
use liweb::prelude::*;
use serde::Deserialize;

#[derive(Events)]
enum In {
    Ping,
}

#[derive(Events)]
enum Out {
    Pong,
}

#[derive(Deserialize)]
struct Login {
    name: String,
}

/// Not `AuthUser`: the server could not key presence by it or send it in `auth:success`.
#[derive(Clone)]
struct Member {
    name: String,
}

fn main() {
    let auth = Auth::credentials(|login: Login, _meta: ConnMeta| async move {
        Ok::<_, String>(Member { name: login.name })
    });
    let _server = Server::<In, Out>::builder().auth(auth).build();
}
