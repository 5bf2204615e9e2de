//! Reading through a cache's local tier: a test waits until a key is held
//! there (a local hit), or until a change reached it.

use redis_memo::Cache;

use crate::until;

/// What `key` holds for `cache`: its value, or 0 when there is none (the
/// body runs and stores 0).
pub async fn read(cache: &Cache, key: &str) -> u64 {
    cache.get_or_set(key, 300, || async { 0 }).await
}

/// Reads `key` on `cache` until a read is a local hit, checking each read
/// gives `value`. (A write's invalidation can reach a handle after its next
/// read began; that read then leaves the tier as it was.)
pub async fn hold_locally(cache: &Cache, key: &str, value: u64) {
    until_local_hit(cache, key, async || read(cache, key).await, value).await;
}

/// Calls `call` on `cache` until a call is a local hit, checking each call
/// gives `value`.
pub async fn until_local_hit(
    cache: &Cache,
    what: &str,
    mut call: impl AsyncFnMut() -> u64,
    value: u64,
) {
    until(&format!("{what} is held locally"), async || {
        let before = cache.stats().local_hits;
        assert_eq!(call().await, value, "{what}");
        cache.stats().local_hits > before
    })
    .await;
}

/// `cache` eventually stops serving `old` for `key`.
pub async fn stops_serving(cache: &Cache, key: &str, old: u64, what: &str) {
    until(what, async || read(cache, key).await != old).await;
}
