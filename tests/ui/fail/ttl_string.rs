use redis_memo::cached;

#[cached(ttl = "5")]
async fn f(id: u64) -> u64 {
    id
}

fn main() {}
