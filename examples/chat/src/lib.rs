//! liweb's chat example: a WebSocket chat with a browser page.
//!
//! ```text
//! cargo run -p chat            # then open http://127.0.0.1:3001 in two tabs
//! LIWEB_ADDR=0.0.0.0:8080 cargo run -p chat
//! LIWEB_SECRET=let-me-in cargo run -p chat   # the page asks for the secret
//! ```
//!
//! Every client has a server-issued user name (`name`): with `LIWEB_SECRET`
//! set, the shared-secret strategy's user id (`guest-` and eight hex
//! digits); without, the same form made from the connection id. Clients
//! never choose it.
//!
//! Wire contract (kept backward compatible; outside tools drive it):
//! - with a secret, a client first sends `__auth {"secret"}` and gets
//!   `auth:success {"user": {"id"}}` or `auth:error {"reason"}` and a close
//!   (4001 `invalid secret`, 4002 `auth timeout`, 4005 `missing auth payload`);
//!   nothing below happens before `auth:success`. `GET /config.json` says
//!   whether a secret is needed: `{"auth": "secret"}` or `{"auth": "none"}`;
//! - a client that connects gets `welcome {"id", "online", "name"}` and is put in the
//!   room `general`, where the others get `user:joined {"room", "id", "online", "name"}`;
//! - client → server `join {"room"}`: the joiner gets
//!   `joined {"room", "online", "history"}` (also for a room it is already
//!   in, such as `general`) and, if it was not a member, the others get
//!   `user:joined`; `leave {"room"}`: the others there get
//!   `user:left {"room", "id", "online"}`;
//! - client → server `chat:message {"text", "room"?}` (room `general` when
//!   absent): every member of the room, the sender included, gets
//!   `chat:message {"id", "text", "ts", "room"}`, and the message joins the
//!   room's history (the last 50 are kept, in the room's state); the message
//!   also carries the sender's `name`;
//! - client → server `typing {"room"}`: the other members get `typing {"room", "id"}`;
//! - when a client disconnects, everyone gets `user:left {"id", "online", "name"}`
//!   (`user:left` after a `leave` carries `name` too).
//!
//! `online` counts the room's members, or the server's connections in
//! `welcome` and in the disconnect `user:left`. A room and its history go
//! away when its last member leaves.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::{Router, response::Html, routing::get};
use liweb::{
    Room, RoomDefaults,
    auth::{Auth, SecretUser},
    prelude::*,
};
use serde::{Deserialize, Serialize};

/// The longest chat message accepted, in characters.
const MAX_TEXT: usize = 2000;
/// The longest room name accepted, in bytes.
const MAX_ROOM: usize = 64;
/// How many rooms one connection may be in.
const MAX_ROOMS_PER_CONN: usize = 16;
/// How many messages a room's history keeps.
const HISTORY: i64 = 50;
/// The room every client joins on connect, and the default of `chat:message`.
pub const GENERAL: &str = "general";
/// The channel all chat rooms live in.
const CHANNEL: &str = "chat";

/// What a client says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Say {
    /// The message text.
    pub text: String,
    /// The room it goes to; `general` when absent.
    #[serde(default)]
    pub room: Option<String>,
}

/// A room named in a client event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoomName {
    /// The room.
    pub room: String,
}

/// One message of a room's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The sender's connection id.
    pub id: ConnId,
    /// The text.
    pub text: String,
    /// When the server received it, in Unix milliseconds.
    pub ts: u64,
    /// The room.
    pub room: String,
    /// Its number in the room, counting from 1.
    pub seq: i64,
    /// The sender's server-issued user name.
    #[serde(default)]
    pub name: String,
}

/// Events clients send.
#[derive(Debug, Events)]
pub enum ChatIn {
    /// A chat message to a room.
    #[event(name = "chat:message")]
    Message(Say),
    /// Join a room.
    Join(RoomName),
    /// Leave a room.
    Leave(RoomName),
    /// The client is typing in a room.
    Typing(RoomName),
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
        /// The client's server-issued user name.
        name: String,
    },
    /// Sent to a client that joined a room.
    Joined {
        /// The room.
        room: String,
        /// How many members the room has, this one included.
        online: usize,
        /// The room's last messages, oldest first.
        history: Vec<Message>,
    },
    /// A chat message, with its sender, time and room.
    #[event(name = "chat:message")]
    Message(Message),
    /// Someone else joined a room this client is in (or connected).
    #[event(name = "user:joined")]
    UserJoined {
        /// The room.
        room: String,
        /// The new member's connection id.
        id: ConnId,
        /// How many members the room has now.
        online: usize,
        /// The new member's user name.
        name: String,
    },
    /// Someone else left a room this client is in, or disconnected (then
    /// without `room`, and `online` counts the server's connections).
    #[event(name = "user:left")]
    UserLeft {
        /// The room, for a `leave`.
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// The leaving client's connection id.
        id: ConnId,
        /// How many members (or connections) are left.
        online: usize,
        /// The leaving client's user name.
        name: String,
    },
    /// Someone else is typing in a room this client is in.
    Typing {
        /// The room.
        room: String,
        /// Who is typing.
        id: ConnId,
    },
}

/// The chat server type.
pub type ChatServer = Server<ChatIn, ChatOut>;

/// A connection's server-issued user name, kept in its data.
#[derive(Debug, Clone)]
struct UserName(String);

/// The user name of `conn`: the authenticated user's id, or one made from
/// the connection id when the server has no secret.
fn user_name(conn: &Conn<ChatOut>) -> String {
    if let Some(UserName(name)) = conn.data::<UserName>() {
        return name;
    }
    let name = match conn.user::<SecretUser>() {
        Some(user) => user.id,
        None => format!("guest-{}", &conn.id().as_uuid().simple().to_string()[..8]),
    };
    conn.set_data(UserName(name.clone()));
    name
}

/// A chat room by name, created if needed, if the name is acceptable.
fn room(server: &ChatServer, name: &str) -> Option<Room<ChatOut>> {
    let name = name.trim();
    (!name.is_empty() && name.len() <= MAX_ROOM).then(|| server.channel(CHANNEL).room(name))
}

/// An existing chat room by name: events other than `join` never create a
/// room, so a client cannot make the server keep rooms nobody is in.
fn existing_room(server: &ChatServer, name: &str) -> Option<Room<ChatOut>> {
    server.channel(CHANNEL).get(name.trim())
}

/// Puts `conn` in `room` and tells the others with `user:joined`; with
/// `reply`, also sends the joiner `joined` with the room's history (also when
/// it was already a member, so a client can ask for the history again).
async fn join_room(
    conn: &Conn<ChatOut>,
    room: &Room<ChatOut>,
    reply: bool,
) -> Result<(), liweb::EncodeError> {
    let name = room.key().room().to_owned();
    if room.join(conn).await == Ok(true) {
        room.emit_except(
            conn.id(),
            ChatOut::UserJoined {
                room: name.clone(),
                id: conn.id(),
                online: room.size(),
                name: user_name(conn),
            },
        )?;
    } else if !room.has(conn.id()) {
        return Ok(());
    }
    if reply {
        let history = room
            .state()
            .get::<Vec<Message>>("history")
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        let _ = conn.emit(ChatOut::Joined {
            room: name,
            online: room.size(),
            history,
        });
    }
    Ok(())
}

/// Sends a chat message to its room, the sender included, and keeps it in
/// the room's history. The sender must be a member.
#[liweb::handler(ChatIn::Message)]
async fn on_message(
    conn: Conn<ChatOut>,
    server: ChatServer,
    say: Say,
) -> Result<(), liweb::EncodeError> {
    let text = say.text.trim();
    let Some(room) = existing_room(&server, say.room.as_deref().unwrap_or(GENERAL)) else {
        return Ok(());
    };
    if text.is_empty() || !room.has(conn.id()) {
        return Ok(());
    }
    let state = room.state();
    // The sequence number orders the history and says which messages fall
    // out of it, without a read-modify-write of the whole list.
    let seq = match state.increment("seq", 1).await {
        Ok(seq) => seq.as_i64().unwrap_or_default(),
        Err(err) => {
            tracing::error!(%err, "cannot number a chat message");
            0
        }
    };
    let message = Message {
        id: conn.id(),
        text: text.chars().take(MAX_TEXT).collect(),
        ts: unix_ms(),
        room: room.key().room().to_owned(),
        seq,
        name: user_name(&conn),
    };
    if let Err(err) = state.push("history", &message).await {
        tracing::error!(%err, "cannot keep a chat message");
    }
    let _ = state
        .remove_where::<Message>("history", move |old| old.seq <= seq - HISTORY)
        .await;
    room.emit(ChatOut::Message(message))?;
    Ok(())
}

/// Joins a room: `joined` to the joiner, `user:joined` to the others.
#[liweb::handler(ChatIn::Join)]
async fn on_join(
    conn: Conn<ChatOut>,
    server: ChatServer,
    join: RoomName,
) -> Result<(), liweb::EncodeError> {
    let Some(room) = room(&server, &join.room) else {
        return Ok(());
    };
    if conn.room_count() >= MAX_ROOMS_PER_CONN && !room.has(conn.id()) {
        return Ok(());
    }
    join_room(&conn, &room, true).await
}

/// Leaves a room: `user:left` to the members still there.
#[liweb::handler(ChatIn::Leave)]
async fn on_leave(
    conn: Conn<ChatOut>,
    server: ChatServer,
    leave: RoomName,
) -> Result<(), liweb::EncodeError> {
    let Some(room) = existing_room(&server, &leave.room) else {
        return Ok(());
    };
    if room.leave(&conn).await {
        room.emit(ChatOut::UserLeft {
            room: Some(room.key().room().to_owned()),
            id: conn.id(),
            online: room.size(),
            name: user_name(&conn),
        })?;
    }
    Ok(())
}

/// Tells a room's other members that this client is typing.
#[liweb::handler(ChatIn::Typing)]
async fn on_typing(
    conn: Conn<ChatOut>,
    server: ChatServer,
    typing: RoomName,
) -> Result<(), liweb::EncodeError> {
    let Some(room) = existing_room(&server, &typing.room) else {
        return Ok(());
    };
    if room.has(conn.id()) {
        room.emit_except(
            conn.id(),
            ChatOut::Typing {
                room: room.key().room().to_owned(),
                id: conn.id(),
            },
        )?;
    }
    Ok(())
}

async fn on_connect(conn: Conn<ChatOut>, server: ChatServer) {
    let _ = conn.emit(ChatOut::Welcome {
        id: conn.id(),
        online: server.connection_count(),
        name: user_name(&conn),
    });
    if let Some(general) = room(&server, GENERAL) {
        // No `joined` here: a client that wants the history sends `join`.
        if let Err(err) = join_room(&conn, &general, false).await {
            tracing::error!(%err, "cannot join a new client to the general room");
        }
    }
}

async fn on_disconnect(conn: Conn<ChatOut>, server: ChatServer) {
    let _ = server.broadcast(ChatOut::UserLeft {
        room: None,
        id: conn.id(),
        online: server.connection_count(),
        name: user_name(&conn),
    });
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or_default()
}

/// How the chat application runs.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Options {
    /// The shared secret clients must send in `__auth`; none by default.
    pub secret: Option<String>,
}

impl Options {
    /// Options with a shared secret.
    pub fn secret(secret: impl Into<String>) -> Self {
        Self {
            secret: Some(secret.into()),
        }
    }
}

/// The chat application without a secret; see [`app_with`].
pub fn app() -> Router {
    app_with(Options::default())
}

/// The chat application: the liweb server behind `/ws`, the page at `/`,
/// the browser client at `/liweb.js`, and `/config.json` telling the page
/// whether to ask for a secret.
pub fn app_with(options: Options) -> Router {
    app_configured(options, |builder| builder)
}

/// [`app_with`], with the server builder changed by `configure` before it
/// is built: the cluster example gives it a Redis adapter there.
pub fn app_configured(
    options: Options,
    configure: impl FnOnce(
        liweb::ServerBuilder<ChatIn, ChatOut>,
    ) -> liweb::ServerBuilder<ChatIn, ChatOut>,
) -> Router {
    let mut builder = ChatServer::builder()
        .handlers(liweb::handlers![exhaustive ChatIn => on_message, on_join, on_leave, on_typing])
        .on_connect(on_connect)
        .on_disconnect(on_disconnect)
        // A room, its history included, goes away when its last member
        // leaves: room names come from clients, so rooms must not pile up.
        .channel_defaults(CHANNEL, RoomDefaults::new().delete_when_empty(true));
    let auth = match options.secret {
        Some(secret) => {
            builder = builder.auth(Auth::secret(secret));
            "secret"
        }
        None => "none",
    };
    let server = configure(builder).build();
    Router::new()
        .route(
            "/",
            get(|| async { Html(include_str!("../static/index.html")) }),
        )
        .route(
            "/config.json",
            get(move || async move { axum::Json(serde_json::json!({ "auth": auth })) }),
        )
        .route("/liweb.js", liweb::browser::client_js_route())
        .route("/ws", server.ws_route())
}
