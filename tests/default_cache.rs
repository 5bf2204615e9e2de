//! The process-wide default cache, used by `#[cached]` functions without
//! `cache = ...`. One test in its own binary: the default is global.

use redis_memo_test_support as support;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use redis_memo::{Cache, cached, clear_default_cache, set_default_cache};

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60, key_prefix = "default_cache:")]
async fn square(x: u64) -> u64 {
    RUNS.fetch_add(1, SeqCst);
    x * x
}

#[tokio::test]
async fn without_a_default_calls_run_uncached_then_use_the_installed_one() {
    clear_default_cache();
    assert_eq!(square(3).await, 9);
    assert_eq!(square(3).await, 9);
    assert_eq!(
        RUNS.load(SeqCst),
        2,
        "no default cache: every call runs the body"
    );

    set_default_cache(Cache::in_memory());
    square(3).await;
    square(3).await;
    assert_eq!(
        RUNS.load(SeqCst),
        3,
        "in-memory default: the second call hits"
    );

    // A server of its own: the test reads a literal key.
    let redis = support::TestRedis::spawn(&[]);
    let cache = redis.cache().await;
    set_default_cache(cache.clone());
    square(3).await;
    square(3).await;
    assert_eq!(RUNS.load(SeqCst), 4, "Redis default: the second call hits");
    let stored: Option<String> = redis::cmd("GET")
        .arg(format!(
            "default_cache:default_cache::square:{}",
            redis_memo::key::KeyBuilder::new()
                .arg(&3u64)
                .digest_hex()
                .unwrap()
        ))
        .query_async(&mut redis.client().await)
        .await
        .unwrap();
    assert_eq!(stored.as_deref(), Some("9"));
    clear_default_cache();
}
