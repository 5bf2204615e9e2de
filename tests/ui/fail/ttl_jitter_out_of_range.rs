use redis_memo::cached;

#[cached(ttl = 60, ttl_jitter = 1.5)]
async fn f(id: u64) -> u64 {
    id
}

fn main() {}
