//! Every public path of liweb 0.1 still resolves.
//!
//! The layered layout of `liweb/src` (docs/ARCHITECTURE.md) moves every
//! module to a new file, and a moved module can take a public path with it
//! without any other test noticing: the library's own code and its examples
//! reach most items through the crate root. This file names each path that
//! liweb 0.1 offers, so that a path which disappears fails to compile here.
//!
//! Each `mod` below imports the items of one public module of liweb (`root`
//! for the crate root's re-exports) and the test names every import: a path
//! that stops resolving breaks the `use`, and an import this file forgets to
//! check is an unused import. Items behind a liweb feature that this crate
//! does not turn on by default sit behind this crate's feature of the same
//! name.
//!
//! Left out on purpose: `liweb::__private` and `liweb::__fuzz`, hidden from
//! the docs and not public API (the macros and the fuzz targets, which ship
//! with the library, are what use them).

// The items of the crate root, `liweb::*`.
mod root {
    pub(super) use liweb::{
        Ack, BincodeCodec, BincodePayload, Channel, CloseCode, Codec, CodecKind, Config, Conn,
        ConnId, ConnMeta, ConnMetaBuilder, ConnParts, DecodeError, Decoded, DisconnectReason,
        EmitError, EncodeError, ErrorCode, ErrorPayload, ErrorReport, EventKey, Events,
        ExtractError, FromConnParts, FromEvent, Handler, HandlerError, HandlerFuture, HandlerList,
        Hook, HookFuture, Input, IntoHandlerResult, JoinError, JoinRejected, JsonCodec,
        JsonPayload, MsgPackCodec, MsgPackPayload, MultiRequest, NoEvents, PayloadDecoder,
        RawPayload, Replies, Request, RequestError, Room, RoomDefaults, Rooms, Serve, ServeHandle,
        ServeStats, Server, ServerBuilder, State, Stats, Transport, UpgradeRejection, handler,
        handlers, serve,
    };
    // Hidden from the docs, but the workspace's benchmarks use them.
    pub(super) use liweb::{Empty, Outgoing};
}

mod prelude {
    pub(super) use liweb::prelude::*;
}

mod auth {
    pub(super) use liweb::auth::{
        Auth, AuthFailure, AuthReason, AuthUser, DEFAULT_AUTH_TIMEOUT, JwtToken, SecretUser, User,
    };
}

mod browser {
    pub(super) use liweb::browser::{CLIENT_DTS, CLIENT_JS, client_dts_route, client_js_route};
}

mod client {
    pub(super) use liweb::client::{
        Client, ClientBuilder, ClientError, ClientRequest, Incoming, Responder,
    };
}

mod cluster {
    pub(super) use liweb::cluster::{
        ClusterError, ClusterErrorHook, RedisAdapter, RedisConfig, RedisStore,
    };
}

mod middleware {
    pub(super) use liweb::middleware::{
        Envelope, ErrorCallback, ErrorPolicy, Middleware, MiddlewareError, MiddlewareOptions, Next,
    };
}

mod presence {
    pub(super) use liweb::presence::{
        MemoryPresence, PresenceChange, PresenceKey, PresenceRecord, PresenceStore, now_ms,
    };
}

mod state {
    pub(super) use liweb::state::{
        BoxFuture, ChangeListener, MemoryStore, RoomKey, RoomState, StateError, StatePatch,
        StateStore,
    };
}

mod tcp {
    pub(super) use liweb::tcp::TcpTransport;
}

mod transport {
    pub(super) use liweb::transport::{Admission, Frame, Inbound, InboundFrame, Outbound, Refused};
}

#[cfg(feature = "typescript")]
mod typescript {
    pub(super) use liweb::typescript::{EventMap, EventTypes, TS, export, render, ts_rs};
}

// The events the generic items are named with. The derive comes through
// the crate root and through the prelude.
#[derive(root::Events)]
enum Up {
    Ping,
    Hello(String),
}

#[derive(prelude::Events)]
enum Down {
    Pong,
}

#[cfg(feature = "typescript")]
#[derive(root::Events)]
#[event(typescript)]
enum TsUp {
    Ping,
}

#[cfg(feature = "typescript")]
#[derive(root::Events)]
#[event(typescript)]
enum TsDown {
    Pong,
}

#[root::handler(Up::Ping)]
async fn ping(conn: root::Conn<Down>) {
    let _ = conn.emit(Down::Pong);
}

#[prelude::handler(Up::Hello)]
async fn hello(_name: String) {}

/// `(path, type name)` of each type path: only a path to a type compiles.
macro_rules! types {
    ($($path:ty),* $(,)?) => {
        [$((stringify!($path), std::any::type_name::<$path>())),*]
    };
}

/// `(path, type name)` of each constant or function.
macro_rules! values {
    ($($path:expr),* $(,)?) => {
        [$((stringify!($path), std::any::type_name_of_val(&$path))),*]
    };
}

/// `(path, "trait")` of each trait, named as a bound: a bound needs no
/// implementor, so any trait can be named this way.
macro_rules! traits {
    ($($path:path),* $(,)?) => {
        [$({
            fn _bound<T: $path>() {}
            (stringify!($path), "trait")
        }),*]
    };
}

#[test]
fn every_public_path_of_0_1_resolves() {
    let mut paths: Vec<(&str, &str)> = Vec::new();

    // liweb::*
    paths.extend(types![
        root::Ack,
        root::BincodeCodec,
        root::BincodePayload<'static>,
        root::Channel<Down>,
        root::CloseCode,
        root::CodecKind,
        root::Config,
        root::Conn<Down>,
        root::ConnId,
        root::ConnMeta,
        root::ConnMetaBuilder,
        root::ConnParts<'static, Up, Down>,
        root::DecodeError,
        root::Decoded<'static, root::RawPayload<'static>>,
        root::DisconnectReason,
        root::EmitError,
        root::EncodeError,
        root::ErrorCode,
        root::ErrorPayload,
        root::ErrorReport<Down>,
        root::ExtractError,
        root::HandlerError,
        root::HandlerFuture,
        root::HandlerList<Up, Down>,
        root::HookFuture,
        root::Input<'static>,
        root::JoinError,
        root::JoinRejected,
        root::JsonCodec,
        root::JsonPayload<'static>,
        root::MsgPackCodec,
        root::MsgPackPayload<'static>,
        root::MultiRequest<Down, String>,
        root::NoEvents,
        root::RawPayload<'static>,
        root::Replies<String>,
        root::Request<Down, String>,
        root::RequestError,
        root::Room<Down>,
        root::RoomDefaults,
        root::Rooms<Down>,
        root::Serve,
        root::ServeHandle,
        root::ServeStats,
        root::Server<Up, Down>,
        root::ServerBuilder<Up, Down>,
        root::State<u8>,
        root::Stats,
        root::Transport,
        root::UpgradeRejection,
        root::Empty,
        root::Outgoing,
    ]);
    paths.extend(values![root::serve]);
    paths.extend(traits![
        root::Codec,
        root::EventKey,
        root::Events,
        root::FromConnParts<Up, Down>,
        root::FromEvent<up::Ping, (), Up, Down, ()>,
        root::Handler<Up, Down>,
        root::Hook<Up, Down, ()>,
        root::IntoHandlerResult,
        root::PayloadDecoder,
    ]);
    // The macros: `handler` and `Events` name the handlers and events
    // above; `handlers!` through its exported path and through the import.
    let _: root::HandlerList<Up, Down> = liweb::handlers![ping, hello];
    let _: root::HandlerList<Up, Down> = root::handlers![exhaustive Up => ping, hello];

    // liweb::prelude::*
    paths.extend(types![
        prelude::Ack,
        prelude::CloseCode,
        prelude::Conn<Down>,
        prelude::ConnId,
        prelude::ConnMeta,
        prelude::Server<Up, Down>,
        prelude::State<u8>,
        prelude::User<auth::SecretUser>,
    ]);
    paths.extend(traits![
        prelude::Events,
        prelude::FromConnParts<Up, Down>,
    ]);

    // liweb::auth
    paths.extend(types![
        auth::Auth<auth::SecretUser>,
        auth::AuthFailure,
        auth::AuthReason,
        auth::JwtToken,
        auth::SecretUser,
        auth::User<auth::SecretUser>,
    ]);
    paths.extend(traits![auth::AuthUser]);
    paths.extend(values![auth::DEFAULT_AUTH_TIMEOUT]);

    // liweb::browser
    paths.extend(values![
        browser::CLIENT_DTS,
        browser::CLIENT_JS,
        browser::client_dts_route::<()>,
        browser::client_js_route::<()>,
    ]);

    // liweb::client
    paths.extend(types![
        client::Client<Down, Up>,
        client::ClientBuilder<Down, Up>,
        client::ClientError,
        client::ClientRequest<String>,
        client::Incoming<Down>,
        client::Responder,
    ]);

    // liweb::cluster
    paths.extend(types![
        cluster::ClusterError,
        cluster::ClusterErrorHook,
        cluster::RedisAdapter,
        cluster::RedisConfig,
        cluster::RedisStore,
    ]);

    // liweb::middleware
    paths.extend(types![
        middleware::Envelope<Down>,
        middleware::ErrorCallback,
        middleware::ErrorPolicy,
        middleware::MiddlewareError,
        middleware::MiddlewareOptions,
        middleware::Next<Up, Down>,
    ]);
    paths.extend(traits![middleware::Middleware<Up, Down>]);

    // liweb::presence
    paths.extend(types![
        presence::MemoryPresence,
        presence::PresenceChange,
        presence::PresenceKey,
        presence::PresenceRecord,
    ]);
    paths.extend(traits![presence::PresenceStore]);
    paths.extend(values![presence::now_ms]);

    // liweb::state
    paths.extend(types![
        state::BoxFuture<'static, ()>,
        state::ChangeListener,
        state::MemoryStore,
        state::RoomKey,
        state::RoomState,
        state::StateError,
        state::StatePatch,
    ]);
    paths.extend(traits![state::StateStore]);

    // liweb::tcp
    paths.extend(types![tcp::TcpTransport<Up, Down>]);

    // liweb::transport
    paths.extend(types![
        transport::Admission<Up, Down>,
        transport::Frame,
        transport::Inbound,
        transport::InboundFrame,
        transport::Outbound,
        transport::Refused,
    ]);

    // liweb::typescript
    #[cfg(feature = "typescript")]
    {
        paths.extend(types![typescript::EventTypes]);
        paths.extend(traits![
            typescript::EventMap,
            typescript::TS,
            typescript::ts_rs::TS,
        ]);
        paths.extend(values![
            typescript::export::<TsUp, TsDown> as fn(&'static str) -> std::io::Result<()>,
            typescript::render::<TsUp, TsDown>,
        ]);
    }

    assert!(!paths.is_empty());
    let mut written: Vec<&str> = paths.iter().map(|(path, _)| *path).collect();
    written.sort_unstable();
    let twice: Vec<&str> = written
        .windows(2)
        .filter(|pair| pair[0] == pair[1])
        .map(|pair| pair[0])
        .collect();
    assert!(twice.is_empty(), "paths named twice: {twice:?}");
}
