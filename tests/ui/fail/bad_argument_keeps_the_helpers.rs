use redis_memo::{Cache, cached};

// One error, on `ttl`: the function and its helpers are still there, so the
// calls below raise nothing more.
#[cached(ttl = "soon", cache = cache)]
async fn f(cache: &Cache, id: u64) -> u64 {
    id
}

#[tokio::main]
async fn main() {
    let cache = Cache::in_memory();
    f(&cache, 1).await;
    f_key(&cache, 1).await.unwrap();
    f_invalidate_all(&cache).await.unwrap();
}
