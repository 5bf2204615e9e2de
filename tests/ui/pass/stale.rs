//! `stale` on the shapes it supports: owned parameters, a borrowed `cache`
//! the body does not use, `self: Arc<Self>`, a `Duration` window, `Result`
//! and `Option` returns.

use std::sync::Arc;
use std::time::Duration;

use redis_memo::{Cache, cached};

#[cached(ttl = 60, stale = 30, cache = cache)]
async fn price(cache: &Cache, id: u64, currency: String) -> Result<u64, std::io::Error> {
    Ok(id + currency.len() as u64)
}

#[cached(ttl = Duration::from_secs(60), stale = Duration::from_secs(5), cache_none = false)]
async fn maybe(id: u64) -> Option<u64> {
    id.checked_sub(1)
}

const WINDOW: u64 = 120;

#[cached(ttl = 60, stale = WINDOW, lease = 5)]
async fn plain(id: u64) -> u64 {
    id
}

struct Service {
    base: u64,
}

impl Service {
    #[cached(ttl = 60, stale = 30, key(self.base))]
    async fn total(self: Arc<Self>, id: u64) -> u64 {
        self.base + id
    }

    // `&self` is fine when the body does not use it.
    #[cached(ttl = 60, stale = 30)]
    async fn constant(&self, id: u64) -> u64 {
        id
    }
}

fn assert_send<T: Send>(_: T) {}

fn main() {
    let cache = Cache::in_memory();
    assert_send(price(&cache, 1, String::new()));
    assert_send(maybe(1));
    assert_send(plain(1));
    assert_send(Arc::new(Service { base: 1 }).total(2));
}
