//! The handler macro names everything by absolute path: items that shadow
//! the standard derives, `core`, `std`, the prelude and primitive types do
//! not change what its output means.
#![allow(non_camel_case_types, dead_code, unused_macros)]

macro_rules! Debug { () => {}; }
macro_rules! Clone { () => {}; }
macro_rules! Copy { () => {}; }

mod core {}
mod std {}

struct Option;
struct Some;
struct None;
struct Result;
struct Ok;
struct Err;
struct Box;
struct usize;
struct str;

#[derive(liweb::Events)]
enum In {
    Ping,
    Level(u8),
}

#[derive(liweb::Events)]
enum Out {
    Pong,
}

async fn allow_all() -> ::std::result::Result<(), ::std::string::String> {
    ::std::result::Result::Ok(())
}

#[liweb::handler(In::Ping, guard = allow_all)]
async fn ping(conn: liweb::Conn<Out>) {
    let _ = conn.emit(Out::Pong);
}

#[liweb::handler(In::Level)]
async fn level(_level: u8) -> ::std::result::Result<u8, ::std::io::Error> {
    ::std::result::Result::Ok(1)
}

fn main() {
    let _server = liweb::Server::<In, Out>::builder()
        .handler(ping)
        .handler(level)
        .build();
}
