//! Fault injection: each test starts its own redis-server and kills, pauses,
//! restarts or starves it under 64 concurrent tasks, checking every value.
//! Calls must never fail, never return a wrong value, and caching must come
//! back by itself. (Latencies are in the `faults` benchmark, not asserted here.)

use redis_memo_test_support as support;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use redis_memo::{Cache, cached};
use support::TestRedis;

#[derive(Default)]
struct Tally {
    runs: AtomicU64,
    calls: AtomicU64,
    failed: AtomicU64,
    wrong: AtomicU64,
}

#[cached(ttl = 60, key_prefix = "faults:", cache = cache, ignore(tally))]
async fn value_of(cache: &Cache, tally: &Tally, id: u64) -> Result<u64, String> {
    tally.runs.fetch_add(1, SeqCst);
    Ok(id * 7 + 1)
}

/// A cache with short timeouts so the faults are quick to go through.
async fn cache_for(redis: &TestRedis) -> Cache {
    Cache::builder()
        .url(redis.url())
        .connect_timeout(Duration::from_millis(300))
        .response_timeout(Duration::from_millis(200))
        .circuit_breaker(3, Duration::from_millis(200))
        .build()
        .await
        .unwrap()
}

/// 64 tasks, `per_task` calls each over 100 ids; `fault` runs once a quarter
/// of the calls are done. Every call is bounded (60 s) so a hang fails the test.
async fn under_load<F: Future<Output = ()>>(
    cache: &Cache,
    tally: &Arc<Tally>,
    per_task: u64,
    fault: F,
) {
    let total = 64 * per_task;
    let mut tasks = Vec::new();
    for t in 0..64u64 {
        let (cache, tally) = (cache.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..per_task {
                let id = (t * 31 + i) % 100;
                let call =
                    tokio::time::timeout(Duration::from_secs(60), value_of(&cache, &tally, id));
                match call.await {
                    Ok(Ok(v)) if v == id * 7 + 1 => {}
                    Ok(Ok(_)) => {
                        tally.wrong.fetch_add(1, SeqCst);
                    }
                    _ => {
                        tally.failed.fetch_add(1, SeqCst);
                    }
                }
                tally.calls.fetch_add(1, SeqCst);
                tokio::task::yield_now().await;
            }
        }));
    }
    while tally.calls.load(SeqCst) < total / 4 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    fault.await;
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(tally.calls.load(SeqCst), total);
    assert_eq!(tally.failed.load(SeqCst), 0, "no call failed");
    assert_eq!(
        tally.wrong.load(SeqCst),
        0,
        "no call returned a wrong value"
    );
}

/// Waits (bounded) until a call of a warm key is served from the cache again.
async fn until_caching_resumes(cache: &Cache, tally: &Tally) {
    let resumed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            value_of(cache, tally, 1000).await.unwrap();
            let runs = tally.runs.load(SeqCst);
            value_of(cache, tally, 1000).await.unwrap();
            if tally.runs.load(SeqCst) == runs {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(resumed.is_ok(), "caching never resumed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_load_fails_no_call() {
    let mut redis = TestRedis::spawn(&[]);
    let cache = cache_for(&redis).await;
    let tally = Arc::new(Tally::default());
    under_load(&cache, &tally, 100, async { redis.kill() }).await;
    let stats = cache.stats();
    assert!(stats.errors > 0, "the cache saw the failures: {stats:?}");
    assert!(
        stats.breaker_trips > 0,
        "and the circuit breaker opened: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_then_sigcont_every_call_returns_and_caching_resumes() {
    let redis = TestRedis::spawn(&[]);
    let cache = cache_for(&redis).await;
    let tally = Arc::new(Tally::default());
    under_load(&cache, &tally, 60, async { redis.signal("STOP") }).await;
    assert!(
        cache.stats().breaker_skipped > 0,
        "calls skipped the paused Redis"
    );
    redis.signal("CONT");
    until_caching_resumes(&cache, &tally).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_on_the_same_port_resumes_caching() {
    let mut redis = TestRedis::spawn(&[]);
    let cache = cache_for(&redis).await;
    let tally = Arc::new(Tally::default());
    under_load(&cache, &tally, 60, async { redis.restart(&[]) }).await;
    until_caching_resumes(&cache, &tally).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_refusing_writes_still_gives_correct_values() {
    // One byte of memory and no eviction: every SET is refused with OOM.
    let redis = TestRedis::spawn(&["--maxmemory", "1", "--maxmemory-policy", "noeviction"]);
    let cache = cache_for(&redis).await;
    let tally = Arc::new(Tally::default());
    under_load(&cache, &tally, 20, async {}).await;
    let stored: u64 = redis::cmd("DBSIZE")
        .query_async(&mut redis.client().await)
        .await
        .unwrap();
    assert_eq!(stored, 0, "nothing could be cached");
    let stats = cache.stats();
    assert!(stats.write_errors > 0 && stats.stores == 0, "{stats:?}");
    assert_eq!(stats.breaker_trips, 0, "refused writes are not an outage");
}

#[tokio::test]
async fn an_application_starts_while_redis_is_down_and_caches_once_it_is_up() {
    let mut redis = TestRedis::not_started();
    let cache = Cache::builder()
        .url(redis.url())
        .connect_timeout(Duration::from_millis(300))
        .response_timeout(Duration::from_millis(200))
        .circuit_breaker(3, Duration::from_millis(200))
        .build_lazy()
        .await
        .expect("a lazy cache is built without Redis");
    assert!(
        Cache::connect(redis.url()).await.is_err(),
        "connect fails fast instead"
    );
    let tally = Tally::default();
    for _ in 0..3 {
        assert_eq!(value_of(&cache, &tally, 5).await, Ok(36));
    }
    assert_eq!(tally.runs.load(SeqCst), 3, "uncached while Redis is down");
    redis.restart(&[]);
    until_caching_resumes(&cache, &tally).await;
    assert!(cache.ping().await.is_ok());
}

#[cached(ttl = 60, key_prefix = "big:", cache = cache, ignore(tally))]
async fn big(cache: &Cache, tally: &Tally, mb: usize) -> String {
    tally.runs.fetch_add(1, SeqCst);
    "x".repeat(mb * 1024 * 1024)
}

#[tokio::test]
async fn a_10_mb_value_is_stored_and_read_or_skipped_by_max_value_bytes() {
    let redis = TestRedis::spawn(&[]);
    let cache = redis.cache().await;
    let tally = Tally::default();
    assert_eq!(big(&cache, &tally, 10).await.len(), 10 * 1024 * 1024);
    assert_eq!(big(&cache, &tally, 10).await.len(), 10 * 1024 * 1024);
    assert_eq!(tally.runs.load(SeqCst), 1, "stored and read back");

    let limited = Cache::builder()
        .url(redis.url())
        .max_value_bytes(Some(1024 * 1024))
        .build()
        .await
        .unwrap();
    limited.invalidate_prefix("big:").await.unwrap();
    assert_eq!(big(&limited, &tally, 2).await.len(), 2 * 1024 * 1024);
    assert_eq!(big(&limited, &tally, 2).await.len(), 2 * 1024 * 1024);
    assert_eq!(
        tally.runs.load(SeqCst),
        3,
        "over the limit: returned, not stored"
    );
    let key = big_key(&limited, 2).await.unwrap();
    assert_eq!(limited.get_raw(&key).await.unwrap(), None);
}
