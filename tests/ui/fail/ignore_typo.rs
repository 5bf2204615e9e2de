// A typo in `ignore(..)` is the only error: the pool it meant to leave out
// of the key is not reported as not `Serialize` as well.
use redis_memo::cached;

struct PgPool;

#[cached(ignore(dbb))]
async fn f(db: &PgPool, id: u64) -> u64 {
    let _ = db;
    id
}

fn main() {}
