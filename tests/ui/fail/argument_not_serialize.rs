use redis_memo::cached;

struct Pool;

#[cached(ttl = 60)]
async fn f(pool: &Pool, id: u64) -> u64 {
    let _ = pool;
    id
}

fn main() {}
