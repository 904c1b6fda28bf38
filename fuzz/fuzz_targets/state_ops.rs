//! Arbitrary sequences of room state operations against the in-memory store,
//! checked against a model of the documented rules.
#![no_main]

use libfuzzer_sys::fuzz_target;
use liweb_fuzz::state::{Op, check_ops};

fuzz_target!(|ops: Vec<Op>| {
    check_ops(&ops);
});
