use redis_memo::cached;

#[cached(ttl = 60, lease = 0)]
async fn f(id: u64) -> u64 {
    id
}

fn main() {}
