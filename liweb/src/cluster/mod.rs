//! Scaling out: several server processes sharing rooms.
//!
//! By default a server keeps everything in memory and needs no service: its
//! rooms, their state and presence live in the process. With an adapter
//! (today [`RedisAdapter`], behind the `redis` feature) several processes
//! — *nodes* — serve the same rooms:
//!
//! ```ignore
//! # // Needs the `redis` feature; the same example runs in `RedisAdapter`'s docs.
//! # async fn run() -> Result<(), liweb::cluster::ClusterError> {
//! # use liweb::prelude::*;
//! # #[derive(Events)] enum In { Ping }
//! # #[derive(Events)] enum Out { Pong }
//! use liweb::cluster::RedisAdapter;
//!
//! let server = Server::<In, Out>::builder()
//!     .adapter(RedisAdapter::connect("redis://127.0.0.1:6379").await?)
//!     .build();
//! # let _ = server;
//! # Ok(())
//! # }
//! ```
//!
//! Nothing else changes in the application: handlers emit to rooms,
//! broadcast and use room state exactly as in one process.
//!
//! ## What crosses nodes
//!
//! | operation | how |
//! |---|---|
//! | [`Room::emit`](crate::Room::emit), [`Room::emit_except`](crate::Room::emit_except) | local members at once; one message on the room's topic for the other nodes |
//! | [`Rooms::emit`](crate::Rooms::emit) (several rooms) | local members at once; one message on the server-wide topic naming the rooms, so a connection in several of them gets it once on every node |
//! | [`Server::broadcast`](crate::Server::broadcast), [`Server::broadcast_except`](crate::Server::broadcast_except) | local connections at once; one message on the server-wide topic |
//! | state sync patches, presence events | as room emits, only to members of rooms that have them turned on (each node applies its own room settings) |
//! | [`Server::disconnect`](crate::Server::disconnect) | local connection closed at once, else one message on the server-wide topic; the node holding the connection closes it |
//! | room state | the [`StateStore`](crate::state::StateStore) is shared (in Redis): every operation atomic across nodes |
//! | [`Room::cluster_members`](crate::Room::cluster_members), [`Room::cluster_size`](crate::Room::cluster_size), [`Room::cluster_presence`](crate::Room::cluster_presence) | read from the shared store, counting only nodes that are alive |
//!
//! Stays local, by design: [`Server::broadcast_filter`](crate::Server::broadcast_filter)
//! (its predicate is a closure that cannot travel), [`Room::emit_to`](crate::Room::emit_to),
//! [`Server::get`](crate::Server::get) and [`Server::connections`](crate::Server::connections)
//! (a [`Conn`](crate::Conn) is a local socket), and the synchronous
//! [`Room::size`](crate::Room::size), [`Room::members`](crate::Room::members),
//! [`Room::presence`](crate::Room::presence) and [`Room::online_count`](crate::Room::online_count),
//! which answer for this node without waiting; their `cluster_*` counterparts
//! are `async` and answer for the whole cluster. Keeping both means code
//! written for one process keeps compiling and keeps its cost.
//!
//! An emit is serialized once (as JSON) and crosses the adapter once; a
//! receiving node hands the same bytes to every local member. Each node skips
//! the messages it published itself, so no member gets an emit twice.
//!
//! Requests cross nodes too: [`Server::request_to`](crate::Server::request_to)
//! asks one connection wherever it is, and [`Room::request`](crate::Room::request)
//! and [`Server::request_all`](crate::Server::request_all) ask every member
//! (connection) on every node. The request travels once, with its ack id and
//! the asking node's id; each node sends it to its own connections, and
//! every client reply travels back, as JSON, addressed to the asking node.
//! A remote request waits on the answering node no longer than its timeout.
//! Payloads cross as JSON, so request and reply payloads must be
//! self-describing in the connection's codec (JSON, MessagePack).

// Without an adapter nothing publishes or reads messages between nodes.
#![cfg_attr(not(feature = "redis"), allow(dead_code))]

mod error;
mod link;
pub(crate) mod message;
#[cfg(feature = "redis")]
mod redis;

pub use self::error::{ClusterError, ClusterErrorHook};
pub(crate) use self::link::{Deliver, Link, Parts};
pub(crate) use self::message::{Message, Only, Target};
#[cfg(feature = "redis")]
pub use self::redis::{RedisAdapter, RedisConfig, RedisStore};
