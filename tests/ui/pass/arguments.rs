//! Every argument of the attribute, in every accepted form.
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis_memo::{Cache, cached};

const TTL: u64 = 60;
const TTL_DURATION: Duration = Duration::from_millis(1500);
const VERSION: u32 = 4;
static CACHE: LazyLock<Cache> = LazyLock::new(Cache::in_memory);

#[cached]
async fn defaults(id: u64) -> u64 {
    id
}

#[cached(ttl = 0, key_prefix = "p:", name = "custom::name", version = 3)]
async fn literals(id: u64) -> u64 {
    id
}

#[cached(ttl = TTL, version = VERSION, cache = CACHE)]
async fn const_expressions(id: u64) -> u64 {
    id
}

#[cached(ttl = 5 * 60, lease = 2 * 5)]
async fn literal_arithmetic(id: u64) -> u64 {
    id
}

#[cached(ttl = TTL * 2, lease = TTL / 10)]
async fn const_arithmetic(id: u64) -> u64 {
    id
}

#[cached(ttl = Duration::from_secs(90), lease = 5u32)]
async fn typed_expressions(id: u64) -> u64 {
    id
}

#[cached(ttl = TTL_DURATION, lease = 5, key_prefix = "g:", grouped)]
async fn duration_ttl_lease_and_group(id: u64) -> u64 {
    id
}

#[cached(skip_cache = fresh || id == 0, ignore(log, fresh), cache = cache)]
async fn skip_ignore_and_a_cache_parameter(cache: &Cache, log: &str, id: u64, fresh: bool) -> u64 {
    let _ = log;
    id
}

#[cached(cache = cache, grouped = false)]
async fn arc_cache(cache: Arc<Cache>, id: u64) -> u64 {
    id
}

#[cached(cache = Cache::in_memory())]
async fn a_temporary_cache(id: u64) -> u64 {
    id
}

#[tokio::main(flavor = "current_thread")]
pub(crate) async fn main() {
    let cache = Cache::in_memory();
    defaults(1).await;
    literals(1).await;
    const_expressions(1).await;
    literal_arithmetic(1).await;
    const_arithmetic(1).await;
    typed_expressions(1).await;
    duration_ttl_lease_and_group(1).await;
    skip_ignore_and_a_cache_parameter(&cache, "log", 1, false).await;
    arc_cache(Arc::new(cache.clone()), 1).await;
    a_temporary_cache(1).await;
    let _: String = literals_key(&cache, 1).await.unwrap();
    let _: bool = skip_ignore_and_a_cache_parameter_invalidate(&cache, 1)
        .await
        .unwrap();
    arc_cache_prime(&cache, 1, &2).await.unwrap();
}
