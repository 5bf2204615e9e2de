use redis_memo::cached;

#[cached(stale = 30)]
async fn price(id: u64) -> u64 {
    id
}

#[cached(ttl = 0, stale = 30)]
async fn forever(id: u64) -> u64 {
    id
}

fn main() {}
