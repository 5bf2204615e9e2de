use redis_memo::cached;

const TTL: &str = "60";

#[cached(ttl = TTL)]
async fn f(id: u64) -> u64 {
    id
}

fn main() {}
