//! Arbitrary bytes, cut into arbitrary pieces, through the TCP frame decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    liweb_fuzz::tcp::check(data);
});
