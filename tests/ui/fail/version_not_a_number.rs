use redis_memo::cached;

#[cached(version = "2")]
async fn f(id: u64) -> u64 {
    id
}

fn main() {}
