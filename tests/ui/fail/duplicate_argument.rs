use redis_memo::cached;

#[cached(ttl = 60, key_prefix = "a:", ttl = 30)]
async fn f(id: u64) -> u64 {
    id
}

fn main() {}
