//! Fail-safe (`fail_safe = N`, `Policy::fail_safe`): a value is kept N past
//! its ttl, and returned when the body fails (or, with `soft_timeout`, is
//! slow); the body is then not run again for `fail_safe_throttle`, in every
//! process. An invalidation removes the kept value too.
//!
//! A value is made expired by rewriting the time its envelope says it stops
//! being fresh (with a plain client on Redis), instead of waiting.

use redis_memo_test_support as support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use redis_memo::{Cache, Policy, cached};
use support::reference::{envelope, expire_enveloped, now_ms, unenvelope};
use support::{Harness, TestCluster, TestSentinel, until};
use tokio::sync::watch;

/// The origin: counts its runs, fails on demand, holds runs while closed.
struct Origin {
    runs: AtomicU64,
    failing: AtomicBool,
    open: watch::Sender<bool>,
}

impl Origin {
    fn new() -> Arc<Origin> {
        Arc::new(Origin {
            runs: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            open: watch::Sender::new(true),
        })
    }

    fn runs(&self) -> u64 {
        self.runs.load(SeqCst)
    }

    fn fail(&self, failing: bool) {
        self.failing.store(failing, SeqCst);
    }

    async fn call(&self) -> Result<u64, String> {
        let n = self.runs.fetch_add(1, SeqCst) + 1;
        let mut open = self.open.subscribe();
        let _ = open.wait_for(|open| *open).await;
        if self.failing.load(SeqCst) {
            return Err(format!("run {n} failed"));
        }
        Ok(n)
    }
}

#[cached(ttl = 60, fail_safe = 3600, key_prefix = "fs:", cache = cache, ignore(origin))]
async fn rate(cache: &Cache, origin: &Origin, id: u64) -> Result<u64, String> {
    Ok(origin.call().await? * 100 + id)
}

/// Makes the value of `key` expired: its ttl ended `ago`, and it is kept
/// for the rest of the hour; keeps its `retry_after`. Written with
/// `set_raw`, which drops a local tier's copy before it returns.
async fn expire(h: &Harness, key: &str, ago: Duration) {
    let bytes = h.raw_get(key).await.expect("a stored value");
    let (_, retry_after, inner) = unenvelope(&bytes).expect("an enveloped value");
    let fresh_until = now_ms() - ago.as_millis() as u64;
    let left = Duration::from_secs(3600) - ago;
    let expired = envelope(fresh_until, retry_after, inner);
    h.cache.set_raw(key, &expired, Some(left)).await.unwrap();
}

/// Ends the wait after a failure of `key`'s value. Written with `set_raw`,
/// like [`expire`]: another client's write would reach a local tier only
/// with its tracking push, after the next call may have begun.
async fn end_throttle(h: &Harness, key: &str) {
    let bytes = h.raw_get(key).await.expect("a stored value");
    let (fresh_until, _, inner) = unenvelope(&bytes).unwrap();
    let left = Duration::from_millis(fresh_until + 3_600_000 - now_ms());
    let ended = envelope(fresh_until, 1, inner);
    h.cache.set_raw(key, &ended, Some(left)).await.unwrap();
}

async fn retry_after(h: &Harness, key: &str) -> u64 {
    let bytes = h.raw_get(key).await.expect("a stored value");
    unenvelope(&bytes).unwrap().1
}

async fn a_failure_after_ttl_returns_the_kept_value_then_the_origin_rests(h: &Harness) {
    let origin = Origin::new();
    let key = rate_key(&h.cache, 1).await.unwrap();
    assert_eq!(rate(&h.cache, &origin, 1).await, Ok(101));
    let ttl = h.ttl(&key).await;
    assert!(
        (3655..=3660).contains(&ttl),
        "the key lives ttl + fail_safe: {ttl}"
    );

    expire(h, &key, Duration::from_secs(10)).await;
    origin.fail(true);
    assert_eq!(rate(&h.cache, &origin, 1).await, Ok(101), "the kept value");
    assert_eq!(origin.runs(), 2, "the body ran, and failed");
    let throttled = retry_after(h, &key).await;
    assert!(
        throttled > now_ms() + 25_000,
        "not run again for fail_safe_throttle (30 s)"
    );
    // Within the throttle: the kept value, without running the body.
    for _ in 0..5 {
        assert_eq!(rate(&h.cache, &origin, 1).await, Ok(101));
    }
    assert_eq!(origin.runs(), 2);
    let stats = h.cache.stats();
    assert_eq!((stats.fail_safe, stats.misses), (6, 1), "{stats:?}");
    assert_eq!(stats.calls(), 7, "in the partition of calls");

    // The throttle ends, the origin recovers: the new value replaces the old.
    end_throttle(h, &key).await;
    origin.fail(false);
    assert_eq!(rate(&h.cache, &origin, 1).await, Ok(301));
    assert_eq!(rate(&h.cache, &origin, 1).await, Ok(301), "and is cached");
    assert_eq!(origin.runs(), 3);
    let (fresh_until, retry, _) = unenvelope(&h.raw_get(&key).await.unwrap()).unwrap();
    assert!(fresh_until > now_ms() && retry == 0);
}

async fn without_a_kept_value_the_error_comes_back(h: &Harness) {
    let origin = Origin::new();
    origin.fail(true);
    assert_eq!(rate(&h.cache, &origin, 2).await, Err("run 1 failed".into()));
    assert_eq!(rate(&h.cache, &origin, 2).await, Err("run 2 failed".into()));
    assert_eq!(h.cache.stats().fail_safe, 0);
}

async fn an_invalidation_removes_the_kept_value(h: &Harness) {
    let before = h.cache.stats().fail_safe;
    let origin = Origin::new();
    let key = rate_key(&h.cache, 3).await.unwrap();
    assert_eq!(rate(&h.cache, &origin, 3).await, Ok(103));
    expire(h, &key, Duration::from_secs(10)).await;
    assert!(rate_invalidate(&h.cache, 3).await.unwrap());
    origin.fail(true);
    assert_eq!(rate(&h.cache, &origin, 3).await, Err("run 2 failed".into()));
    assert_eq!(h.cache.stats().fail_safe, before);
}

/// An invalidation while the failing body runs: the value read before it is
/// not returned (the key no longer holds it).
async fn an_invalidation_during_the_failing_body_wins(h: &Harness) {
    let origin = Origin::new();
    let key = rate_key(&h.cache, 4).await.unwrap();
    assert_eq!(rate(&h.cache, &origin, 4).await, Ok(104));
    expire(h, &key, Duration::from_secs(10)).await;
    origin.fail(true);
    origin.open.send_replace(false);
    let (result, ()) = tokio::join!(rate(&h.cache, &origin, 4), async {
        until("the body runs", async || origin.runs() == 2).await;
        assert!(rate_invalidate(&h.cache, 4).await.unwrap());
        origin.open.send_replace(true);
    });
    assert_eq!(result, Err("run 2 failed".into()));
    assert_eq!(h.cache.stats().fail_safe, 0);
}

#[cached(
    ttl = 60,
    fail_safe = 3600,
    soft_timeout = Duration::from_millis(50),
    key_prefix = "fss:",
    cache = cache,
    ignore(origin)
)]
async fn slow(cache: &Cache, origin: Arc<Origin>, id: u64) -> u64 {
    origin.call().await.unwrap_or(0) * 100 + id
}

/// A body slower than `soft_timeout`: the kept value at once; the body goes
/// on and stores its value. Without a kept value, the call waits.
async fn a_slow_body_returns_the_kept_value_and_lands_later(h: &Harness) {
    let origin = Origin::new();
    let key = slow_key(&h.cache, 1).await.unwrap();
    origin.open.send_replace(false);
    let (first, ()) = tokio::join!(slow(&h.cache, origin.clone(), 1), async {
        until("the first body runs", async || origin.runs() == 1).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        origin.open.send_replace(true);
    });
    assert_eq!(first, 101, "no kept value: the call waited for the body");

    expire(h, &key, Duration::from_secs(10)).await;
    origin.open.send_replace(false);
    assert_eq!(
        slow(&h.cache, origin.clone(), 1).await,
        101,
        "the kept value"
    );
    assert_eq!(h.cache.stats().fail_safe, 1);
    origin.open.send_replace(true);
    until("the slow body's value lands", async || {
        h.raw_get(&key)
            .await
            .as_deref()
            .and_then(unenvelope)
            .is_some_and(|(fresh, _, inner)| fresh > now_ms() && inner == b"201")
    })
    .await;
    assert_eq!(slow(&h.cache, origin.clone(), 1).await, 201);
    assert_eq!(origin.runs(), 2);
}

/// The throttle is stored with the value: another process does not run the
/// body either.
async fn the_throttle_holds_across_processes(h: &Harness, other: &Cache) {
    let before = other.stats().fail_safe;
    let origin = Origin::new();
    let key = rate_key(&h.cache, 5).await.unwrap();
    assert_eq!(rate(&h.cache, &origin, 5).await, Ok(105));
    expire(h, &key, Duration::from_secs(10)).await;
    origin.fail(true);
    assert_eq!(rate(&h.cache, &origin, 5).await, Ok(105));
    for _ in 0..5 {
        assert_eq!(rate(other, &origin, 5).await, Ok(105));
    }
    assert_eq!(origin.runs(), 2, "the other process did not run the body");
    assert_eq!(other.stats().fail_safe, before + 5);
}

support::on_both_backends! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    a_failure_after_ttl_returns_the_kept_value_then_the_origin_rests,
    without_a_kept_value_the_error_comes_back,
    an_invalidation_removes_the_kept_value,
    an_invalidation_during_the_failing_body_wins,
    a_slow_body_returns_the_kept_value_and_lands_later,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_throttle_holds_across_two_caches() {
    let h = Harness::redis().await;
    let other = Cache::connect(h.redis.as_ref().unwrap().url())
        .await
        .unwrap();
    the_throttle_holds_across_processes(&h, &other).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_safe_with_a_local_tier() {
    let redis = support::TestRedis::spawn(&[]);
    let cache = Cache::builder()
        .url(redis.url())
        .local_cache(1 << 20)
        .build()
        .await
        .unwrap();
    let other = Cache::connect(redis.url()).await.unwrap();
    let h = Harness::new(cache, Some(redis));
    a_failure_after_ttl_returns_the_kept_value_then_the_origin_rests(&h).await;
    an_invalidation_removes_the_kept_value(&h).await;
    the_throttle_holds_across_processes(&h, &other).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_safe_on_a_cluster_and_behind_sentinel() {
    let cluster = tokio::task::spawn_blocking(TestCluster::start)
        .await
        .unwrap();
    let cache = Cache::connect_cluster(cluster.seed_urls()).await.unwrap();
    let origin = Origin::new();
    for id in 0..6 {
        assert_eq!(
            rate(&cache, &origin, id).await,
            Ok(origin.runs() * 100 + id)
        );
    }
    let mut conn = cluster.client().await;
    for id in 0..6 {
        let key = rate_key(&cache, id).await.unwrap();
        expire_enveloped(
            &mut conn,
            &key,
            Duration::from_secs(10),
            Duration::from_secs(3000),
        )
        .await;
    }
    origin.fail(true);
    for id in 0..6 {
        assert!(
            rate(&cache, &origin, id).await.is_ok(),
            "the kept value of {id}"
        );
    }
    assert_eq!(cache.stats().fail_safe, 6);

    let sentinel = tokio::task::spawn_blocking(TestSentinel::start)
        .await
        .unwrap();
    let cache = Cache::connect_sentinel(sentinel.sentinel_urls(), sentinel.service_name())
        .await
        .unwrap();
    let origin = Origin::new();
    assert_eq!(slow(&cache, origin.clone(), 9).await, 109);
    let key = slow_key(&cache, 9).await.unwrap();
    let mut conn = sentinel.node_client(sentinel.primary_port()).await;
    expire_enveloped(
        &mut conn,
        &key,
        Duration::from_secs(10),
        Duration::from_secs(3000),
    )
    .await;
    origin.open.send_replace(false);
    assert_eq!(
        slow(&cache, origin.clone(), 9).await,
        109,
        "the kept value, at once"
    );
    origin.open.send_replace(true);
}

/// `Policy::fail_safe` with `try_get_or_set`, and `get_or_set_stale` with a
/// soft timeout.
#[tokio::test]
async fn policies_give_the_same_to_get_or_set() {
    let cache = Cache::in_memory();
    let policy = Policy::ttl(60).fail_safe(3600).fail_safe_throttle(5);
    let ok: Result<u64, String> = cache
        .try_get_or_set("p:1", policy, || async { Ok(7) })
        .await;
    assert_eq!(ok, Ok(7));
    let bytes = cache.get_raw("p:1").await.unwrap().unwrap();
    let (_, _, inner) = unenvelope(&bytes).unwrap();
    cache
        .set_raw(
            "p:1",
            &envelope(now_ms() - 1000, 0, inner),
            Some(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let failed: Result<u64, String> = cache
        .try_get_or_set("p:1", policy, || async { Err("down".into()) })
        .await;
    assert_eq!(failed, Ok(7));
    let (_, retry, _) = unenvelope(&cache.get_raw("p:1").await.unwrap().unwrap()).unwrap();
    assert!(
        (now_ms() + 3_000..=now_ms() + 5_000).contains(&retry),
        "the policy's throttle"
    );
    assert_eq!(cache.stats().fail_safe, 1);
}
