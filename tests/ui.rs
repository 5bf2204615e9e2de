//! Compile-time behaviour of `#[cached]`, through the facade crate: what must
//! compile, and what must not, with the compiler's messages snapshotted.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
