use liweb::auth::{Auth, AuthUser};
use liweb::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Events)]
enum In {
    Kick(String),
    Ask(String),
}

#[derive(Events)]
enum Out {
    Kicked(String),
}

#[derive(Deserialize)]
struct Login {
    name: String,
}

#[derive(Clone, Serialize)]
struct Member {
    name: String,
    admin: bool,
}

impl AuthUser for Member {
    fn user_id(&self) -> String {
        self.name.clone()
    }
}

async fn admin_only(User(member): User<Member>) -> Result<(), &'static str> {
    if member.admin { Ok(()) } else { Err("admins only") }
}

async fn open_connection(conn: Conn<Out>) -> Result<(), String> {
    if conn.is_closed() { Err("closed".into()) } else { Ok(()) }
}

#[liweb::handler(In::Kick, guard = admin_only, guard = open_connection)]
async fn kick(conn: Conn<Out>, User(member): User<Member>, who: String) {
    let _ = conn.emit(Out::Kicked(format!("{who} by {}", member.name)));
}

/// Replies to a request with its return value.
#[liweb::handler(In::Ask, out = Out)]
async fn ask(question: String) -> Result<usize, std::convert::Infallible> {
    Ok(question.len())
}

fn main() {
    let auth = Auth::credentials(|login: Login, _meta: ConnMeta| async move {
        Ok::<_, String>(Member { name: login.name, admin: false })
    });
    let _server = Server::<In, Out>::builder()
        .auth(auth)
        .handler(kick)
        .handler(ask)
        .build();
}
