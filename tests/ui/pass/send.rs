//! A cached function's future is `Send` when its body is, so it can be spawned.
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use redis_memo::{Cache, cached};
use serde::Serialize;
use serde::de::DeserializeOwned;

static CACHE: LazyLock<Cache> = LazyLock::new(Cache::in_memory);

#[cached(cache = cache, skip_cache = id == 0)]
async fn work(cache: &Cache, id: u64) -> Result<Vec<String>, String> {
    tokio::task::yield_now().await;
    Ok(vec![id.to_string()])
}

#[cached(cache = cache, ttl = 60, key_prefix = "s:", ignore(label))]
async fn shared(cache: Arc<Cache>, label: &str, items: &[u32]) -> u32 {
    let _ = label;
    tokio::task::yield_now().await;
    items.iter().sum()
}

#[cached(cache = CACHE)]
async fn generic<T: Serialize + DeserializeOwned + Send + Sync>(
    map: &HashMap<String, T>,
) -> Option<T> {
    tokio::task::yield_now().await;
    let _ = map;
    None
}

#[cached]
async fn default_cache(id: u64) -> std::io::Result<u64> {
    tokio::task::yield_now().await;
    Ok(id)
}

struct Handler {
    cache: Cache,
    hits: u32,
}

impl Handler {
    #[cached(cache = self.cache)]
    async fn handle(&self, path: &str) -> String {
        tokio::task::yield_now().await;
        path.to_uppercase()
    }

    #[cached(cache = self.cache.clone())]
    async fn count(&mut self, by: u32) -> u32 {
        tokio::task::yield_now().await;
        self.hits += by;
        self.hits
    }
}

fn assert_send<T: Send>(value: T) -> T {
    value
}

#[tokio::main]
pub(crate) async fn main() {
    let cache = Cache::in_memory();
    drop(assert_send(work(&cache, 1)));
    drop(assert_send(shared(Arc::new(cache.clone()), "l", &[1, 2])));
    drop(assert_send(generic::<String>(&HashMap::new())));
    drop(assert_send(default_cache(1)));

    let c = cache.clone();
    tokio::spawn(async move { assert_send(work(&c, 1)).await })
        .await
        .unwrap()
        .unwrap();
    let mut handler = Handler { cache, hits: 0 };
    drop(assert_send(handler.handle("/a")));
    drop(assert_send(handler.count(1)));
    tokio::spawn(async move {
        handler.handle("/a").await;
        handler.count(2).await
    })
    .await
    .unwrap();
}
