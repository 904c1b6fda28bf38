//! # liweb
//!
//! Typed realtime events over WebSocket. Declare the events clients send and the
//! events the server sends as Rust enums, derive [`Events`] on them, write
//! `async fn` handlers with [`handler`], and liweb builds a dispatch table
//! indexed by event, checks at compile time that every emit and every handler
//! matches its enum, and serves it all from an [`axum`] route.
//!
//! ```no_run
//! use liweb::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Clone)]
//! struct Say {
//!     text: String,
//! }
//!
//! #[derive(Events)]
//! enum ChatIn {
//!     #[event(name = "chat:message")]
//!     Message(Say),
//! }
//!
//! #[derive(Events)]
//! enum ChatOut {
//!     #[event(name = "chat:message")]
//!     Message { id: ConnId, text: String },
//! }
//!
//! #[liweb::handler(ChatIn::Message)]
//! async fn on_message(
//!     conn: Conn<ChatOut>,
//!     server: Server<ChatIn, ChatOut>,
//!     say: Say,
//! ) -> Result<(), liweb::EncodeError> {
//!     // Only `ChatOut` values compile here.
//!     server.broadcast(ChatOut::Message { id: conn.id(), text: say.text })?;
//!     Ok(())
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     let server = Server::<ChatIn, ChatOut>::builder().handler(on_message).build();
//!     let app = axum::Router::new().route("/ws", server.ws_route());
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
//!     liweb::serve(listener, app).await
//! }
//! ```
//!
//! [`serve`] is `axum::serve` made fit for a public server: a header-read
//! timeout, header limits, `TCP_NODELAY`, a cap on open sockets, an accept
//! loop that survives running out of file descriptors, and graceful
//! shutdown. The route mounts in any axum `Router`, so `axum::serve` works
//! too (with `into_make_service_with_connect_info::<SocketAddr>()` to give
//! [`ConnMeta::remote_addr`] the peer's address).
//!
//! Declare `Events` enums at module level, as here: the companion module the
//! derive writes for struct variants imports the enum's surroundings with
//! `use super::*`, which cannot see items declared inside a function body.
//!
//! ## How a message travels
//!
//! A JSON text frame `{"event": "chat:message", "payload": {...}}` arrives. The
//! generated [`Events::index_of`] turns the wire name into a dense index with a
//! `match`, the payload is deserialized straight into the variant's payload
//! type, and the handlers registered for that index run in registration order.
//! Events of one connection are handled one after another, in arrival order.
//!
//! Bad input never panics the server: an unknown event, a payload of the wrong
//! shape or a frame that is not a JSON object gets an `error` event
//! (`{"code", "message", "event"?}`, see [`ErrorCode`]) and the connection stays
//! open; a frame over the size limit closes the connection with
//! [`CloseCode::TooLarge`]. The close codes are listed in [`CloseCode`].
//!
//! A server that only pushes has no events to receive: it is a
//! `Server<NoEvents, Out>` (see [`NoEvents`]), and its Rust clients are
//! `Client<Out, NoEvents>`.
//!
//! ## Mistakes that do not compile
//!
//! Emitting an event of the wrong enum:
//!
//! ```compile_fail
//! # use liweb::prelude::*;
//! # #[derive(Events)] enum In { Ping }
//! # #[derive(Events)] enum Out { Pong }
//! fn reply(conn: &Conn<Out>) {
//!     conn.emit(In::Ping); // expected `Out`, found `In`
//! }
//! ```
//!
//! A handler whose payload argument has the wrong type:
//!
//! ```compile_fail
//! # use liweb::prelude::*;
//! # #[derive(Events)] enum In { Say(String) }
//! #[liweb::handler(In::Say)]
//! async fn on_say(text: u64) {}
//! ```
//!
//! ## Scaling out
//!
//! One process keeps rooms, their state and presence in memory. With the
//! `redis` feature, `ServerBuilder::adapter(RedisAdapter::connect(url).await?)`
//! makes the server one node of a cluster sharing rooms, state and presence
//! through Redis, with no other change to the application; see [`cluster`].
//!
//! ## Feature flags
//!
//! | feature  | default | what it enables |
//! |----------|---------|-----------------|
//! | `ws`     | yes     | the WebSocket transport on axum ([`Server::ws_route`]) and [`serve`] |
//! | `tcp`    | no      | the TCP transport ([`Server::serve_tcp`], [`tcp`]); with `client`, the Rust client over TCP |
//! | `client` | no      | the typed Rust client ([`client::Client`]) |
//! | `jwt`    | no      | the JWT authentication strategy ([`auth::Auth::jwt_hs256`]) |
//! | `redis`  | no      | scaling out over Redis ([`cluster::RedisAdapter`]) |
//! | `typescript` | no  | TypeScript event maps for `liweb.js` ([`typescript::export`]) |
//! | `msgpack` | no     | the MessagePack codec ([`CodecKind::MessagePack`], subprotocol `liweb.msgpack`) |
//! | `bincode` | no     | the bincode codec ([`CodecKind::Bincode`], subprotocol `liweb.bincode`), Rust to Rust |
//!
//! JSON needs no feature and stays the default codec: it is what browsers
//! and liwebjs clients speak. A connection picks a binary codec through the
//! WebSocket subprotocol ([`ConnMeta::codec`] tells which); the binary
//! codecs are opt-in so that only applications that use them build their
//! dependencies.

#![cfg_attr(docsrs, feature(doc_cfg))]
// Without a transport the connection machinery has no caller yet.
#![cfg_attr(not(feature = "ws"), allow(dead_code))]

// The derive and handler macros name `::liweb`; this lets them work in the
// crate's own tests.
#[allow(unused_extern_crates)]
extern crate self as liweb;

// The layers, top to bottom (docs/ARCHITECTURE.md): a module imports only
// modules below it, but for the server ↔ handler ↔ middleware core.
pub mod auth;
pub mod cluster;
mod codec;
mod conn;
mod dispatch;
mod error;
mod event;
mod handler;
pub mod middleware;
pub mod presence;
mod protocol;
mod request;
mod room;
mod server;
mod session;
pub mod state;
pub mod transport;
mod util;

#[cfg(feature = "client")]
pub mod client;

#[cfg(feature = "tcp")]
pub use crate::transport::tcp;

pub mod browser;

#[doc(hidden)]
#[path = "fuzz.rs"]
pub mod __fuzz;

#[cfg(feature = "typescript")]
pub mod typescript;
mod typescript_gate;

#[cfg(feature = "bincode")]
pub use crate::codec::{BincodeCodec, BincodePayload};
pub use crate::codec::{
    Codec, CodecKind, Decoded, Input, JsonCodec, JsonPayload, MAX_PAYLOAD_DEPTH, RawPayload,
};
#[cfg(feature = "msgpack")]
pub use crate::codec::{MsgPackCodec, MsgPackPayload};
pub use crate::conn::{
    Conn, ConnId, DisconnectReason,
    meta::{ConnMeta, ConnMetaBuilder, Transport},
    request::{Request, RequestError},
};
#[doc(hidden)]
pub use crate::conn::{Empty, Outgoing};
pub use crate::error::{DecodeError, EmitError, EncodeError, ExtractError, HandlerError, Refused};
pub use crate::event::{EventKey, Events, NoEvents, PayloadDecoder};
pub use crate::handler::{
    Handler, HandlerFuture, HandlerList, IntoHandlerResult,
    ack::Ack,
    extract::{ConnParts, FromConnParts, FromEvent, State},
    hook::{Hook, HookFuture},
};
pub use crate::protocol::{CloseCode, ErrorCode, ErrorPayload};
pub use crate::request::{MultiRequest, Replies};
pub use crate::room::{Channel, JoinError, JoinRejected, Room, RoomDefaults, Rooms, key::RoomKey};
pub use crate::server::{
    Server,
    builder::ServerBuilder,
    config::{Config, Stats, UpgradeRejection},
    hooks::ErrorReport,
};
#[cfg(feature = "ws")]
pub use crate::transport::serve::{Serve, ServeHandle, ServeStats, serve};

/// Derives [`Events`] for an enum of events; see the [crate docs](crate).
///
/// Each variant is one event. Its wire name is the variant name in
/// `snake_case`, or `#[event(name = "...")]`; a container attribute
/// `#[event(rename_all = "camelCase")]` changes the default case. Unit
/// variants carry no payload, newtype variants carry their field, struct
/// variants carry an object with their fields.
///
/// The derive also writes a companion module named after the enum in
/// `snake_case` (`ChatIn` → `chat_in`) holding one key type per variant:
/// `chat_in::Message` names the `Message` event in a type, for
/// [`handler`] and the client's typed listeners. For a struct variant the key
/// is also its payload struct, with the variant's fields.
///
/// The enum must be declared at module level (not inside a function body),
/// because the companion module imports the enum's surroundings with
/// `use super::*`.
pub use liweb_macros::Events;

/// Turns an `async fn` into a handler of one event: `#[liweb::handler(ChatIn::Message)]`.
///
/// Every argument is an extractor: the event's payload (its type must be the
/// variant's payload type), [`Conn<Out>`](Conn), [`State<T>`](State),
/// [`Server<In, Out>`](Server), [`ConnMeta`], [`ConnId`] or any type
/// implementing [`FromConnParts`] — [`Ack`] and [`User<U>`](auth::User)
/// among them. The function returns `()` or `Result<T, E>`: when the event
/// is a request (it carries an ack id), `Ok(value)` is the reply and `Err(e)`
/// an error reply; every `Err` is also reported through the server's error
/// hook.
///
/// Guards run before the handler and can refuse the event:
/// `#[liweb::handler(In::Kick, guard = admin_only)]`, where `admin_only` is
/// an `async fn` of extractors returning `Result<(), E>` with `E: Display`.
/// A refusal skips the handler and answers the client with an `error` event
/// (code `forbidden`, message `E`'s text), or an error reply to a request.
/// Several `guard = ..` run in order; the first refusal wins.
///
/// Pass the function by name to [`ServerBuilder::handler`]; the macro gives
/// that name a handler type, and the original function stays callable as
/// `name::handle(..)` (for unit tests).
///
/// The server's `Out` type is taken from a `Conn<Out>` or
/// `Server<In, Out>` argument; a handler with neither works with any `Out`.
/// When `Conn` is behind a type alias, name it: `#[liweb::handler(ChatIn::Message, out = ChatOut)]`.
pub use liweb_macros::handler;

/// Registers handlers as a list, optionally checking at compile time that
/// every event of the `In` enum has one.
///
/// ```
/// # use liweb::prelude::*;
/// # #[derive(Events)] enum In { Ping, Hello(String) }
/// # #[derive(Events)] enum Out { Pong }
/// #[liweb::handler(In::Ping)]
/// async fn ping(conn: Conn<Out>) { let _ = conn.emit(Out::Pong); }
/// #[liweb::handler(In::Hello)]
/// async fn hello(_name: String) {}
///
/// let server = Server::<In, Out>::builder()
///     .handlers(liweb::handlers![exhaustive In => ping, hello])
///     .build();
/// ```
///
/// Leaving `hello` out of the exhaustive list fails to compile with
/// "`In` is exhaustive and event `hello` (`In::Hello`) has no handler".
#[macro_export]
macro_rules! handlers {
    (exhaustive $events:ty => $($handler:path),+ $(,)?) => {{
        const _: () = $crate::__private::assert_exhaustive::<$events>(&[
            $(<<$handler as $crate::__private::HandlerEvent>::Event as $crate::__private::EventKey>::INDEX),+
        ]);
        let mut list = $crate::__private::HandlerList::new();
        $( list.push($handler); )+
        list
    }};
    ($($handler:expr),* $(,)?) => {{
        let mut list = $crate::__private::HandlerList::new();
        $( list.push($handler); )*
        list
    }};
}

/// The names most applications need: `use liweb::prelude::*;`.
pub mod prelude {
    pub use crate::auth::User;
    pub use crate::{
        Ack, CloseCode, Conn, ConnId, ConnMeta, Events, FromConnParts, Server, State, handler,
    };
}

#[doc(hidden)]
pub mod __private {
    //! Items the macros expand to. Not public API.
    //!
    //! The macros name everything through here, public items included, so
    //! their output does not depend on where liweb defines them.
    pub use crate::handler::{
        Call, HandlerEvent, HandlerTag,
        ack::Outcome,
        assert_exhaustive,
        extract::{EventParts, ViaParts, ViaPayload},
        hook::{Guard, GuardFuture, start_guard},
    };
    pub use crate::{__liweb_ts_events as ts_events, __liweb_ts_struct as ts_struct};
    pub use crate::{
        EventKey, Events, ExtractError, FromEvent, Handler, HandlerFuture, HandlerList,
        IntoHandlerResult, PayloadDecoder,
    };
    pub use serde;
    pub use std::boxed::Box;
    #[cfg(feature = "typescript")]
    pub use ts_rs;
}
