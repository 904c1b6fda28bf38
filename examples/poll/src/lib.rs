//! liweb's live poll example: browser tabs vote on one question and watch the
//! tallies move, through room state sync, and see who is there, through
//! presence events.
//!
//! ```text
//! cargo run -p poll            # then open http://127.0.0.1:3002 in two tabs
//! LIWEB_ADDR=0.0.0.0:8080 cargo run -p poll
//! ```
//!
//! Every connection joins the room `poll/main`; the channel's room defaults
//! turn state sync and presence events on for it from its first join. The
//! tallies live in the room's state, one number per option under the key
//! `votes:<option>` (an option without a key has 0 votes), changed only with
//! the atomic `increment` / `decrement` / `set`; each connection's own vote
//! lives in its connection data. Clients never ask for tallies or for who is
//! there: they apply the `presence:snapshot` and `state:snapshot` they get on
//! joining and every `presence:*` and `state:patch` event after them.
//!
//! Wire contract (see `docs/PROTOCOL.md` for the reserved events):
//! - on connect the client gets, in this order, `welcome {"id", "question",
//!   "options"}`, the room's `presence:snapshot` (a record per presence key,
//!   itself included: `key` is the connection id, `activity` the display
//!   name or `null`; recent leavers are listed with `online: false`), and
//!   its `state:snapshot` (the `votes:<option>` keys set so far; a missing
//!   one is 0); the others get `presence:join`;
//! - client → server `vote {"option"}`: one vote per connection; voting for
//!   another option moves the vote (the members get a `state:patch` for each
//!   changed tally) and voting again for the same option changes nothing; the
//!   voter then gets `voted {"option"}`;
//! - client → server `name {"name"}` (1 to 32 characters after trimming, no
//!   control characters): the display name becomes the activity of the
//!   connection's presence record, the others get `presence:update`, the
//!   client gets `named {"name"}`;
//! - client → server `reset`: every tally goes back to 0 (a `state:patch`
//!   each) and every member gets `reset {"by"}`: nobody's vote counts any more;
//! - input the poll cannot use (an unknown option, a bad name) gets
//!   `invalid {"event", "message"}` and changes nothing; input liweb cannot
//!   decode gets liweb's `error` event;
//! - when a client disconnects, its vote is taken back (a `state:patch`) and
//!   the others get `presence:leave`.

use std::sync::Arc;

use axum::{Router, response::Html, routing::get};
use liweb::{Room, RoomDefaults, prelude::*};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

/// The question the page asks.
pub const QUESTION: &str = "Which color should the liweb logo be?";
/// The options, in the order the page shows them.
pub const OPTIONS: [&str; 4] = ["red", "green", "blue", "yellow"];
/// The channel of the poll room.
pub const CHANNEL: &str = "poll";
/// The poll room, in [`CHANNEL`].
pub const ROOM: &str = "main";
/// The longest display name accepted, in characters.
pub const MAX_NAME: usize = 32;
/// The prefix of the state keys holding the tallies: `votes:red`, ...
pub const VOTES_PREFIX: &str = "votes:";

/// A vote for one option.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Vote {
    /// The option's name, one of [`OPTIONS`].
    pub option: String,
}

/// A display name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Name {
    /// The name.
    pub name: String,
}

/// Events clients send.
#[derive(Debug, Events)]
pub enum PollIn {
    /// Vote for an option, or move the vote to it.
    Vote(Vote),
    /// Set the display name.
    Name(Name),
    /// Put every tally back to 0.
    Reset,
}

/// Events the server sends (besides liweb's `state:*` and `presence:*`).
#[derive(Debug, Events)]
pub enum PollOut {
    /// Sent to a client when it connects, before anything else.
    Welcome {
        /// The client's own connection id (its presence key).
        id: ConnId,
        /// The question.
        question: String,
        /// The options, in display order.
        options: Vec<String>,
    },
    /// The client's vote after its `vote` was applied.
    Voted {
        /// The option the client's vote counts for.
        option: Option<String>,
    },
    /// The client's display name after its `name` was applied.
    Named {
        /// The name.
        name: String,
    },
    /// Someone reset the poll: no vote counts any more.
    Reset {
        /// Who reset it.
        by: ConnId,
    },
    /// The poll could not use something the client sent; nothing changed.
    Invalid {
        /// The event that was refused.
        event: String,
        /// Why.
        message: String,
    },
}

/// The poll server type.
pub type PollServer = Server<PollIn, PollOut>;

/// What the poll itself keeps besides the room state.
#[derive(Debug, Clone)]
struct Poll {
    inner: Arc<PollInner>,
}

#[derive(Debug)]
struct PollInner {
    options: Vec<String>,
    /// Bumped by every reset. A vote counts only in the round it was cast in.
    ///
    /// Votes and disconnects hold the read lock while they change tallies, so
    /// they run concurrently with each other (the state's atomic increments
    /// keep the counts exact); a reset holds the write lock, so no vote is
    /// half applied across it.
    round: RwLock<u64>,
}

/// A connection's vote, kept in its connection data (private, so no other
/// code can set data of this type).
#[derive(Debug, Clone, Copy)]
struct Ballot {
    /// The index of the option in [`OPTIONS`].
    option: usize,
    /// The round it was cast in.
    round: u64,
}

impl Poll {
    fn new(options: &[&str]) -> Self {
        Self {
            inner: Arc::new(PollInner {
                options: options.iter().map(|&option| option.to_owned()).collect(),
                round: RwLock::new(0),
            }),
        }
    }

    fn option_index(&self, option: &str) -> Option<usize> {
        self.inner.options.iter().position(|known| known == option)
    }

    fn key(&self, option: usize) -> String {
        format!("{VOTES_PREFIX}{}", self.inner.options[option])
    }
}

/// The poll room if `conn` is in it. Handlers only look the room up: it is
/// made (with the channel's defaults) when the first connection joins.
fn member_room(server: &PollServer, conn: &Conn<PollOut>) -> Option<Room<PollOut>> {
    server
        .channel(CHANNEL)
        .get(ROOM)
        .filter(|room| room.has(conn.id()))
}

/// The connection's vote if it counts in `round`.
fn current_ballot(conn: &Conn<PollOut>, round: u64) -> Option<Ballot> {
    conn.data::<Ballot>().filter(|ballot| ballot.round == round)
}

/// Tells the client the poll refused its event.
fn invalid(conn: &Conn<PollOut>, event: &str, message: String) {
    let _ = conn.emit(PollOut::Invalid {
        event: event.to_owned(),
        message,
    });
}

/// A display name trimmed, or why it is not acceptable.
fn clean_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("the name is empty".to_owned());
    }
    if name.chars().count() > MAX_NAME {
        return Err(format!("the name is longer than {MAX_NAME} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err("the name has control characters".to_owned());
    }
    Ok(name.to_owned())
}

/// At most `max` characters of `text`, for echoing client input in messages.
fn excerpt(text: &str, max: usize) -> String {
    let mut cut: String = text.chars().take(max).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    cut
}

/// Counts the connection's vote for an option, moving it from the option it
/// counted for before.
#[liweb::handler(PollIn::Vote)]
async fn on_vote(
    conn: Conn<PollOut>,
    server: PollServer,
    State(poll): State<Poll>,
    vote: Vote,
) -> Result<(), liweb::EmitError> {
    let Some(option) = poll.option_index(&vote.option) else {
        invalid(
            &conn,
            "vote",
            format!(
                "unknown option `{}`; the options are {}",
                excerpt(&vote.option, 40),
                poll.inner.options.join(", ")
            ),
        );
        return Ok(());
    };
    let Some(room) = member_room(&server, &conn) else {
        return Ok(());
    };
    let round = poll.inner.round.read().await;
    let previous = current_ballot(&conn, *round);
    if previous.map(|ballot| ballot.option) != Some(option) {
        let state = room.state();
        // Count the new vote first: a failure leaves the old vote in place.
        if let Err(err) = state.increment(&poll.key(option), 1).await {
            tracing::error!(%err, "cannot count a vote");
            invalid(&conn, "vote", "the vote could not be counted".to_owned());
            return Ok(());
        }
        conn.set_data(Ballot {
            option,
            round: *round,
        });
        if let Some(previous) = previous
            && let Err(err) = state.decrement(&poll.key(previous.option), 1).await
        {
            tracing::error!(%err, "cannot take back a moved vote");
        }
    }
    // Still under the round's lock: a reset's `reset` event cannot slip
    // between this vote and its confirmation.
    conn.emit(PollOut::Voted {
        option: Some(poll.inner.options[option].clone()),
    })
}

/// Sets the connection's display name, as the activity of its presence.
#[liweb::handler(PollIn::Name)]
async fn on_name(
    conn: Conn<PollOut>,
    server: PollServer,
    name: Name,
) -> Result<(), liweb::EmitError> {
    let name = match clean_name(&name.name) {
        Ok(name) => name,
        Err(message) => {
            invalid(&conn, "name", message);
            return Ok(());
        }
    };
    // `false` when the connection is not in the room (it never got in).
    let in_room = server
        .channel(CHANNEL)
        .get(ROOM)
        .is_some_and(|room| room.set_activity(&conn, Some(name.clone())));
    if !in_room {
        return Ok(());
    }
    conn.emit(PollOut::Named { name })
}

/// Puts every tally back to 0; no earlier vote counts any more.
#[liweb::handler(PollIn::Reset)]
async fn on_reset(
    conn: Conn<PollOut>,
    server: PollServer,
    State(poll): State<Poll>,
) -> Result<(), liweb::EncodeError> {
    let Some(room) = member_room(&server, &conn) else {
        return Ok(());
    };
    let mut round = poll.inner.round.write().await;
    let state = room.state();
    for option in 0..poll.inner.options.len() {
        if let Err(err) = state.set(&poll.key(option), &0).await {
            tracing::error!(%err, "cannot reset a tally");
        }
    }
    *round += 1;
    room.emit(PollOut::Reset { by: conn.id() })?;
    Ok(())
}

/// Welcomes the client, then puts it in the poll room, which tells the
/// others (`presence:join`) and sends the client `presence:snapshot` and
/// `state:snapshot`.
async fn on_connect(conn: Conn<PollOut>, server: PollServer, State(poll): State<Poll>) {
    let _ = conn.emit(PollOut::Welcome {
        id: conn.id(),
        question: QUESTION.to_owned(),
        options: poll.inner.options.clone(),
    });
    // No join guard: `Ok(false)` only for a connection that already ended.
    let _ = server.channel(CHANNEL).room(ROOM).join(&conn).await;
}

/// Takes back the vote of a client that left. liweb has already taken it out
/// of the room (the others got `presence:leave`).
async fn on_disconnect(conn: Conn<PollOut>, server: PollServer, State(poll): State<Poll>) {
    let round = poll.inner.round.read().await;
    // Taken out of the connection data, so it can be taken back only once.
    let Some(ballot) = conn
        .remove_data::<Ballot>()
        .filter(|ballot| ballot.round == *round)
    else {
        return;
    };
    let Some(room) = server.channel(CHANNEL).get(ROOM) else {
        return;
    };
    if let Err(err) = room.state().decrement(&poll.key(ballot.option), 1).await {
        tracing::error!(%err, "cannot take back the vote of a client that left");
    }
}

/// The poll application: the liweb server behind `/ws`, the page at `/`,
/// the browser client at `/liweb.js`.
pub fn app() -> Router {
    let server = PollServer::builder()
        .channel_defaults(
            CHANNEL,
            RoomDefaults::new().sync(true).presence_events(true),
        )
        .state(Poll::new(&OPTIONS))
        .handlers(liweb::handlers![exhaustive PollIn => on_vote, on_name, on_reset])
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
