// One error per mistake, each saying what is expected.
use redis_memo::cached;

#[cached(time = 60, key = "users")]
async fn f(id: u64) -> u64 {
    id
}

fn main() {}
