//! The derive names everything by absolute path: items that shadow the
//! standard derives, `core`, `std`, the prelude and primitive types do not
//! change what its output means.
#![allow(non_camel_case_types, dead_code, unused_macros)]

macro_rules! Debug { () => {}; }
macro_rules! Clone { () => {}; }
macro_rules! Copy { () => {}; }
macro_rules! PartialEq { () => {}; }
macro_rules! Eq { () => {}; }
macro_rules! Hash { () => {}; }
macro_rules! Default { () => {}; }

mod core {}
mod std {}

struct Option;
struct Some;
struct None;
struct Result;
struct Ok;
struct Err;
struct Box;
struct From;

#[derive(liweb::Events)]
enum ChatIn {
    Ping,
    Say(String),
    Dm { to: u64, text: String },
}

// Primitive types shadowed too; serde's own derive names `str` and `usize`
// unqualified, so only unit and newtype variants here.
mod primitives {
    struct usize;
    struct str;

    #[derive(liweb::Events)]
    pub(crate) enum Flags {
        On,
        Level(u8),
    }
}

fn main() {
    use ::liweb::Events as _;

    ::std::assert_eq!(ChatIn::NAMES, ["ping", "say", "dm"]);
    ::std::assert_eq!(primitives::Flags::index_of("level"), ::std::option::Option::Some(1));
    let _: ChatIn = ::std::convert::From::from(chat_in::Dm { to: 1, text: ::std::string::String::new() });
}
