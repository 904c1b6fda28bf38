//! liweb's chat example: a WebSocket chat with a browser page.
//!
//! ```text
//! cargo run -p chat            # then open http://127.0.0.1:3001 in two tabs
//! LIWEB_ADDR=0.0.0.0:8080 cargo run -p chat
//! ```
//!
//! Wire contract (kept backward compatible; outside tools drive it):
//! - client → server `chat:message {"text"}`;
//! - server → every client, the sender included, `chat:message {"id", "text", "ts"}`;
//! - server → a client that connects `welcome {"id", "online"}`, and to the
//!   others `user:joined {"id", "online"}`;
//! - server → the others when a client leaves `user:left {"id", "online"}`.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::{Router, response::Html, routing::get};
use liweb::prelude::*;
use serde::{Deserialize, Serialize};

/// The longest chat message accepted, in characters.
const MAX_TEXT: usize = 2000;

/// What a client says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Say {
    /// The message text.
    pub text: String,
}

/// Events clients send.
#[derive(Debug, Events)]
pub enum ChatIn {
    /// A chat message to everyone.
    #[event(name = "chat:message")]
    Message(Say),
}

/// Events the server sends.
#[derive(Debug, Events)]
pub enum ChatOut {
    /// Sent to a client when it connects.
    Welcome {
        /// The client's own connection id.
        id: ConnId,
        /// How many clients are connected, this one included.
        online: usize,
    },
    /// A chat message, with its sender and time.
    #[event(name = "chat:message")]
    Message {
        /// The sender's connection id.
        id: ConnId,
        /// The message text.
        text: String,
        /// When the server received it, in Unix milliseconds.
        ts: u64,
    },
    /// Someone else connected.
    #[event(name = "user:joined")]
    UserJoined {
        /// The new client's connection id.
        id: ConnId,
        /// How many clients are connected now.
        online: usize,
    },
    /// Someone else left.
    #[event(name = "user:left")]
    UserLeft {
        /// The leaving client's connection id.
        id: ConnId,
        /// How many clients are connected now.
        online: usize,
    },
}

/// The chat server type.
pub type ChatServer = Server<ChatIn, ChatOut>;

/// Broadcasts a chat message to everyone, the sender included.
#[liweb::handler(ChatIn::Message)]
async fn on_message(
    conn: Conn<ChatOut>,
    server: ChatServer,
    say: Say,
) -> Result<(), liweb::EncodeError> {
    let text = say.text.trim();
    if text.is_empty() {
        return Ok(());
    }
    let text: String = text.chars().take(MAX_TEXT).collect();
    server.broadcast(ChatOut::Message {
        id: conn.id(),
        text,
        ts: unix_ms(),
    })?;
    Ok(())
}

async fn on_connect(conn: Conn<ChatOut>, server: ChatServer) {
    let online = server.connection_count();
    let _ = conn.emit(ChatOut::Welcome {
        id: conn.id(),
        online,
    });
    let _ = server.broadcast_except(
        conn.id(),
        ChatOut::UserJoined {
            id: conn.id(),
            online,
        },
    );
}

async fn on_disconnect(conn: Conn<ChatOut>, server: ChatServer) {
    let online = server.connection_count();
    let _ = server.broadcast(ChatOut::UserLeft {
        id: conn.id(),
        online,
    });
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or_default()
}

/// The chat application: the liweb server behind `/ws`, the page at `/`,
/// the browser client at `/liweb.js`.
pub fn app() -> Router {
    let server = ChatServer::builder()
        .handler(on_message)
        .on_connect(on_connect)
        .on_disconnect(on_disconnect)
        .build();
    Router::new()
        .route(
            "/",
            get(|| async { Html(include_str!("../static/index.html")) }),
        )
        .route("/liweb.js", liweb::browser::client_js_route())
        .route("/ws", server.ws_route())
}
