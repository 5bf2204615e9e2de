use redis_memo::cached;

#[cached(ttl = 60, local = "no")]
async fn f(id: u64) -> u64 {
    id
}

fn main() {}
