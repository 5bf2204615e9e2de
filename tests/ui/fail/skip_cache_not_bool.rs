use redis_memo::cached;

#[cached(skip_cache = fresh)]
async fn f(id: u64, fresh: u8) -> u64 {
    let _ = fresh;
    id
}

fn main() {}
