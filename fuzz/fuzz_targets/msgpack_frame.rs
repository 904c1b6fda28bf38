//! Arbitrary bytes as one inbound msgpack frame: envelope, event name, typed
//! payload decode; every decoded event must round-trip through every codec.
#![no_main]

use libfuzzer_sys::fuzz_target;
use liweb::CodecKind;

fuzz_target!(|data: &[u8]| {
    liweb_fuzz::check_frame(CodecKind::MessagePack, data);
});
