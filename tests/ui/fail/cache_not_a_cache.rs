use redis_memo::cached;

struct NotACache;

#[cached(cache = NotACache)]
async fn f(id: u64) -> u64 {
    id
}

fn main() {}
