//! A call whose value this process holds (the in-memory backend, a local
//! tier) finds it again from the function and its argument bytes, without
//! the key's SHA-256 or a lookup of the key. These tests check that such
//! repeat hits serve exactly what a lookup would: never another call's
//! value, and nothing a change has replaced — whether the change came from
//! this process, from another client, from expiry, or from losing track of
//! the server.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use redis_memo::{Cache, cached};
use redis_memo_test_support::tier::{local_cache, tracking_client_ids};
use redis_memo_test_support::{TestRedis, until};

/// Both places a value can be held in this process: the in-memory backend,
/// and a local tier in front of a server of the test's own (1 MiB: 256
/// shortcut slots, so that the calls below share slots).
async fn backends() -> Vec<(&'static str, Cache, Option<TestRedis>)> {
    let redis = TestRedis::spawn(&[]);
    let local = local_cache(&redis).await;
    vec![
        ("memory", Cache::in_memory(), None),
        ("local tier", local, Some(redis)),
    ]
}

#[cached(ttl = 300, key_prefix = "rh:", cache = cache)]
async fn double(cache: &Cache, x: u64) -> u64 {
    x * 2
}

#[cached(ttl = 300, key_prefix = "rh:", cache = cache)]
async fn triple(cache: &Cache, x: u64) -> u64 {
    x * 3
}

#[cached(ttl = 300, key_prefix = "rh:", cache = cache, name = "scaled", version = 1)]
async fn scaled_v1(cache: &Cache, x: u64) -> u64 {
    x * 10
}

#[cached(ttl = 300, key_prefix = "rh:", cache = cache, name = "scaled", version = 2)]
async fn scaled_v2(cache: &Cache, x: u64) -> u64 {
    x * 20
}

#[cached(ttl = 300, key_prefix = "rh:", cache = cache)]
async fn sized<T: 'static>(cache: &Cache, x: u64) -> u64 {
    x * std::mem::size_of::<T>() as u64
}

#[cached(ttl = 300, key_prefix = "rh:", cache = cache)]
async fn pair(cache: &Cache, a: String, b: String) -> String {
    format!("{a}|{b}")
}

/// Body runs so far: each run returns a value no earlier run returned.
static RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(ttl = 300, key_prefix = "rhc:", cache = cache)]
async fn counted(cache: &Cache, x: u64) -> u64 {
    1000 * (RUNS.fetch_add(1, SeqCst) + 1) + x
}

#[cached(ttl = 1, key_prefix = "rhe:", cache = cache)]
async fn short_lived(cache: &Cache, x: u64) -> u64 {
    1000 * (RUNS.fetch_add(1, SeqCst) + 1) + x
}

/// `counted(x)`, called until it is served from this process twice in a
/// row with the same value, which it returns.
async fn held(cache: &Cache, x: u64) -> u64 {
    let first = counted(cache, x).await;
    let hits = cache.stats().hits + cache.stats().local_hits;
    assert_eq!(counted(cache, x).await, first);
    assert_eq!(counted(cache, x).await, first);
    let after = cache.stats().hits + cache.stats().local_hits;
    assert!(after >= hits + 2, "repeat calls are hits");
    first
}

#[tokio::test]
async fn calls_never_get_another_calls_value() {
    for (backend, cache, _redis) in backends().await {
        for round in 0..3 {
            for x in 0..1500u64 {
                let what = format!("{backend}, round {round}, x = {x}");
                assert_eq!(double(&cache, x).await, 2 * x, "{what}");
                assert_eq!(triple(&cache, x).await, 3 * x, "{what}");
                assert_eq!(scaled_v1(&cache, x).await, 10 * x, "{what}");
                assert_eq!(scaled_v2(&cache, x).await, 20 * x, "{what}");
                assert_eq!(sized::<u8>(&cache, x).await, x, "{what}");
                assert_eq!(sized::<u32>(&cache, x).await, 4 * x, "{what}");
                // The same bytes, split between the arguments differently.
                let (a, b) = (x.to_string(), (x + 1).to_string());
                let ab = format!("{a}{b}");
                assert_eq!(pair(&cache, a.clone(), b.clone()).await, format!("{a}|{b}"));
                assert_eq!(
                    pair(&cache, ab.clone(), String::new()).await,
                    format!("{ab}|")
                );
            }
        }
        let stats = cache.stats();
        assert!(
            stats.hits + stats.local_hits >= 2 * 8 * 1500,
            "{backend}: the later rounds hit: {stats:?}"
        );
    }
}

#[tokio::test]
async fn every_change_in_this_process_ends_a_repeat_hit() {
    for (backend, cache, _redis) in backends().await {
        let cache = &cache;
        let key = counted_key(cache, 1).await.unwrap();

        let old = held(cache, 1).await;
        counted_prime(cache, 1, &7).await.unwrap();
        assert_eq!(counted(cache, 1).await, 7, "{backend}: _prime");

        held(cache, 1).await;
        assert!(counted_invalidate(cache, 1).await.unwrap());
        let new = counted(cache, 1).await;
        assert!(new != old && new != 7, "{backend}: _invalidate");

        held(cache, 1).await;
        cache.set(&key, &8u64, 300).await.unwrap();
        assert_eq!(counted(cache, 1).await, 8, "{backend}: set");

        held(cache, 1).await;
        cache.set_raw(&key, b"9", None).await.unwrap();
        assert_eq!(counted(cache, 1).await, 9, "{backend}: set_raw");

        held(cache, 1).await;
        cache.delete(&[&key]).await.unwrap();
        assert!(counted(cache, 1).await > 1000, "{backend}: delete");

        let before = held(cache, 1).await;
        cache.invalidate_prefix("rhc:").await.unwrap();
        assert_ne!(
            counted(cache, 1).await,
            before,
            "{backend}: invalidate_prefix"
        );

        let before = held(cache, 1).await;
        counted_invalidate_all(cache).await.unwrap();
        assert_ne!(
            counted(cache, 1).await,
            before,
            "{backend}: _invalidate_all"
        );

        let before = held(cache, 1).await;
        cache.invalidate_all_keys().await.unwrap();
        assert_ne!(
            counted(cache, 1).await,
            before,
            "{backend}: invalidate_all_keys"
        );

        // And the value after each change is held again.
        held(cache, 1).await;
    }
}

#[tokio::test]
async fn an_expired_value_is_not_a_repeat_hit() {
    for (backend, cache, _redis) in backends().await {
        let first = short_lived(&cache, 1).await;
        assert_eq!(short_lived(&cache, 1).await, first, "{backend}");
        until(&format!("{backend}: the value expires"), async || {
            short_lived(&cache, 1).await != first
        })
        .await;
    }
}

/// `counted(x)` on `cache`, called until it returns a value `wanted`
/// accepts.
async fn serves(cache: &Cache, x: u64, what: &str, wanted: impl Fn(u64) -> bool) {
    until(what, async || wanted(counted(cache, x).await)).await;
}

/// Another client's changes reach the tier by tracking pushes; each one
/// ends the repeat hits of the key it names.
#[tokio::test]
async fn another_clients_changes_end_a_repeat_hit() {
    let redis = TestRedis::spawn(&[]);
    let cache = local_cache(&redis).await;
    let key = counted_key(&cache, 2).await.unwrap();
    held(&cache, 2).await;
    redis.command(&["SET", &key, "777"]).await;
    serves(&cache, 2, "another client's SET", |v| v == 777).await;

    held(&cache, 2).await;
    redis.command(&["DEL", &key]).await;
    serves(&cache, 2, "another client's DEL", |v| v > 1000).await;

    let before = held(&cache, 2).await;
    redis.command(&["PEXPIRE", &key, "1"]).await;
    serves(&cache, 2, "an expiry set by another client", |v| {
        v != before
    })
    .await;

    let before = held(&cache, 2).await;
    redis.command(&["UNLINK", &key]).await;
    serves(&cache, 2, "another client's UNLINK", |v| v != before).await;

    let before = held(&cache, 2).await;
    redis.command(&["FLUSHDB"]).await;
    serves(&cache, 2, "another client's FLUSHDB", |v| v != before).await;
}

/// Losing the tracking connection clears the tier: what it held may have
/// changed unseen, and so may the calls that found it.
#[tokio::test]
async fn a_lost_tracking_connection_ends_repeat_hits() {
    let redis = TestRedis::spawn(&[]);
    let cache = local_cache(&redis).await;
    until("tracking", async || cache.stats().local_tracking).await;
    let key = counted_key(&cache, 3).await.unwrap();
    held(&cache, 3).await;

    let ids = tracking_client_ids(&redis).await;
    assert_eq!(ids.len(), 1, "one tracking connection: {ids:?}");
    redis.command(&["CLIENT", "KILL", "ID", &ids[0]]).await;
    // Written while no push can tell the tier.
    redis.command(&["SET", &key, "4242"]).await;
    until("the write is served", async || {
        counted(&cache, 3).await == 4242
    })
    .await;
}
