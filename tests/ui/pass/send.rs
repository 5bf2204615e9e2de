//! A cached function's future is `Send` when its body is, so it can be spawned.
use redis_memo::{Cache, cached};

#[cached(cache = cache, skip_cache = id == 0)]
async fn work(cache: &Cache, id: u64) -> Result<Vec<String>, String> {
    tokio::task::yield_now().await;
    Ok(vec![id.to_string()])
}

struct Handler {
    cache: Cache,
}

impl Handler {
    #[cached(cache = self.cache)]
    async fn handle(&self, path: &str) -> String {
        tokio::task::yield_now().await;
        path.to_uppercase()
    }
}

fn assert_send<T: Send>(value: T) -> T {
    value
}

#[tokio::main]
async fn main() {
    let cache = Cache::in_memory();
    let c = cache.clone();
    tokio::spawn(async move { assert_send(work(&c, 1)).await }).await.unwrap().unwrap();
    let handler = Handler { cache };
    tokio::spawn(async move { assert_send(handler.handle("/a")).await }).await.unwrap();
}
