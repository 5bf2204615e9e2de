use redis_memo::cached;

#[cached(ttl = 60, stale = 0)]
async fn price(id: u64) -> u64 {
    id
}

fn main() {}
