//! The `tests/ui/pass` cases as modules of an ordinary test target, so that
//! `cargo clippy --all-targets -- -D warnings` lints the code `#[cached]`
//! generates for each of them (trybuild only compiles them), and so that
//! their `main`s run.

#[allow(dead_code)]
#[path = "ui/pass/arguments.rs"]
mod arguments;
#[allow(dead_code)]
#[path = "ui/pass/methods.rs"]
mod methods;
#[allow(dead_code)]
#[path = "ui/pass/send.rs"]
mod send;
#[allow(dead_code)]
#[path = "ui/pass/shapes.rs"]
mod shapes;
#[allow(dead_code)]
#[path = "ui/pass/signatures.rs"]
mod signatures;

#[test]
fn every_pass_case_runs() {
    arguments::main();
    methods::main();
    send::main();
    shapes::main();
    signatures::main();
}
