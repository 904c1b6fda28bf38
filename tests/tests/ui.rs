//! Compile-time checks of the macros and the typed API: what must compile
//! (`ui/*/pass`) and what must not, with the message users see
//! (`ui/*/fail/*.stderr`). Refresh the snapshots with
//! `TRYBUILD=overwrite cargo test -p liweb-tests --test ui` and read them.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/*/pass/*.rs");
    t.compile_fail("ui/*/fail/*.rs");
}
