// A parameter of an `impl Trait` type that is not `Serialize`: the error
// names `serde::Serialize` and what to do, in paths the user can write.
use redis_memo::cached;

#[cached(ttl = 60)]
async fn f(name: impl AsRef<str>) -> usize {
    name.as_ref().len()
}

fn main() {}
