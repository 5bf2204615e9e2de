//! TTL jitter spreads the stored TTLs (read back with `TTL`), and hits that
//! need no I/O cooperate with tokio's scheduler.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

use redis_memo::{Cache, Policy, cached};
use redis_memo_test_support::{Harness, TestRedis};

#[cached(ttl = 100, key_prefix = "jit:", cache = cache, ttl_jitter = 0.5)]
async fn spread(cache: &Cache, id: u64) -> u64 {
    id
}

#[cached(ttl = 100, key_prefix = "jit:", cache = cache)]
async fn exact(cache: &Cache, id: u64) -> u64 {
    id
}

/// The TTLs, in seconds, of `keys` as stored.
async fn ttls(h: &Harness, keys: &[String]) -> Vec<i64> {
    let mut out = Vec::new();
    for key in keys {
        out.push(h.ttl(key).await);
    }
    out
}

async fn jitter_spreads_stored_ttls_within_the_bounds(h: &Harness) {
    let mut keys = Vec::new();
    for id in 0..200 {
        spread(&h.cache, id).await;
        keys.push(spread_key(&h.cache, id).await.unwrap());
    }
    let spread_ttls = ttls(h, &keys).await;
    let (min, max) = (
        *spread_ttls.iter().min().unwrap(),
        *spread_ttls.iter().max().unwrap(),
    );
    assert!(
        min >= 49 && max <= 150,
        "within [50 s, 150 s]: {min}..{max}"
    );
    assert!(min < 80 && max > 120, "spread over the range: {min}..{max}");

    // Without jitter every entry gets the TTL itself.
    let mut keys = Vec::new();
    for id in 0..20 {
        exact(&h.cache, id).await;
        keys.push(exact_key(&h.cache, id).await.unwrap());
    }
    assert!(ttls(h, &keys).await.iter().all(|t| (98..=100).contains(t)));

    // A policy on `get_or_set` does the same.
    let p = h.prefix("jitpol");
    let mut keys = Vec::new();
    for id in 0..100u64 {
        let key = format!("{p}{id}");
        h.cache
            .get_or_set(&key, Policy::ttl(100).ttl_jitter(0.5), || async move { id })
            .await;
        keys.push(key);
    }
    let policy_ttls = ttls(h, &keys).await;
    assert!(policy_ttls.iter().all(|t| (49..=150).contains(t)));
    assert!(policy_ttls.iter().any(|t| *t < 80) && policy_ttls.iter().any(|t| *t > 120));
}

redis_memo_test_support::on_both_backends! {
    #[tokio::test]
    jitter_spreads_stored_ttls_within_the_bounds,
}

#[tokio::test]
async fn a_cache_wide_jitter_applies_to_functions_without_their_own() {
    let redis = TestRedis::spawn(&[]);
    let cache = Cache::builder()
        .url(redis.url())
        .ttl_jitter(0.5)
        .build()
        .await
        .unwrap();
    let h = Harness::new(cache.clone(), Some(redis));
    let mut keys = Vec::new();
    for id in 0..100 {
        exact(&cache, id).await;
        keys.push(exact_key(&cache, id).await.unwrap());
    }
    let all = ttls(&h, &keys).await;
    assert!(all.iter().all(|t| (49..=150).contains(t)), "{all:?}");
    assert!(
        all.iter().any(|t| *t < 80) && all.iter().any(|t| *t > 120),
        "{all:?}"
    );
}

#[cached(ttl = 60, cache = cache)]
async fn hot(cache: &Cache, id: u64) -> u64 {
    id
}

/// On a current-thread runtime, a task looping over in-memory hits must let
/// a timer on the same runtime fire: the loop ends when the timer sets the flag.
#[test]
fn a_loop_of_in_memory_hits_does_not_starve_its_runtime() {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let cache = Cache::in_memory();
            hot(&cache, 1).await;
            let stop = Arc::new(AtomicBool::new(false));
            let timer = {
                let stop = stop.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    stop.store(true, SeqCst);
                })
            };
            let mut hits = 0u64;
            while !stop.load(SeqCst) {
                hot(&cache, 1).await;
                hits += 1;
            }
            timer.await.unwrap();
            assert!(hits > 0);
        });
        let _ = done_tx.send(());
    });
    // The watchdog runs on this thread: a starved runtime never finishes.
    done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the timer never fired: hits starved the runtime");
}
