use redis_memo::cached;

#[cached(version = v)]
async fn f(id: u64, v: u32) -> u64 {
    id + u64::from(v)
}

fn main() {}
