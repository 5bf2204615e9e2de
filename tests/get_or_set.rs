//! The typed API on `Cache` (`get_or_set`, `try_get_or_set`, `get`, `set`):
//! the guarantees of `#[cached]` for keys given at run time, checked against
//! what is stored, on Redis and in memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use redis_memo::{Cache, Error, Policy};
use redis_memo_test_support::{Harness, Logs, TestRedis};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
}

fn user(id: u64) -> User {
    User {
        id,
        name: format!("user {id}"),
    }
}

async fn the_key_is_used_as_given_and_a_hit_skips_the_closure(h: &Harness) {
    let key = format!("{}42", h.prefix("user"));
    let runs = AtomicUsize::new(0);
    let load = || async {
        runs.fetch_add(1, SeqCst);
        user(42)
    };
    assert_eq!(h.cache.get_or_set(&key, 120, load).await, user(42));
    assert_eq!(h.cache.get_or_set(&key, 120, load).await, user(42));
    assert_eq!(runs.load(SeqCst), 1, "the second call is a hit");
    assert_eq!(
        h.raw_get(&key).await.as_deref(),
        Some(&br#"{"id":42,"name":"user 42"}"#[..]),
        "stored as JSON under exactly the key given"
    );
    let ttl = h.ttl(&key).await;
    assert!((118..=120).contains(&ttl), "TTL 120 s, got {ttl}");
}

async fn ttl_takes_seconds_a_duration_zero_or_a_policy(h: &Harness) {
    let p = h.prefix("ttl");
    let one = |n: u64| async move { n };
    h.cache.get_or_set(&format!("{p}secs"), 60, || one(1)).await;
    h.cache
        .get_or_set(&format!("{p}duration"), Duration::from_secs(90), || one(2))
        .await;
    h.cache
        .get_or_set(&format!("{p}forever"), 0, || one(3))
        .await;
    h.cache
        .get_or_set(&format!("{p}policy"), Policy::ttl(30), || one(4))
        .await;
    let secs = h.ttl(&format!("{p}secs")).await;
    let duration = h.ttl(&format!("{p}duration")).await;
    let policy = h.ttl(&format!("{p}policy")).await;
    assert!((58..=60).contains(&secs), "{secs}");
    assert!((88..=90).contains(&duration), "{duration}");
    assert!((28..=30).contains(&policy), "{policy}");
    assert_eq!(h.ttl(&format!("{p}forever")).await, -1, "0 means no expiry");
}

async fn try_get_or_set_stores_only_ok(h: &Harness) {
    let key = format!("{}7", h.prefix("try"));
    let runs = AtomicUsize::new(0);
    let failing = || async {
        runs.fetch_add(1, SeqCst);
        Err::<u64, String>("down".into())
    };
    assert!(h.cache.try_get_or_set(&key, 60, failing).await.is_err());
    assert_eq!(h.raw_get(&key).await, None, "an Err is not stored");
    assert!(h.cache.try_get_or_set(&key, 60, failing).await.is_err());
    assert_eq!(runs.load(SeqCst), 2, "and the next call runs again");
    let ok = || async { Ok::<u64, String>(7) };
    assert_eq!(h.cache.try_get_or_set(&key, 60, ok).await, Ok(7));
    assert_eq!(
        h.raw_get(&key).await.as_deref(),
        Some(&b"7"[..]),
        "Ok stored as T"
    );
    assert_eq!(h.cache.try_get_or_set(&key, 60, failing).await, Ok(7));
    assert_eq!(runs.load(SeqCst), 2, "a hit never runs the closure");
}

async fn a_corrupt_value_is_a_miss_and_is_overwritten(h: &Harness) {
    let key = format!("{}1", h.prefix("corrupt"));
    h.raw_set(&key, b"{not json").await;
    let (logs, dispatch) = Logs::capture(tracing::Level::WARN);
    let value = {
        let _guard = tracing::dispatcher::set_default(&dispatch);
        h.cache.get_or_set(&key, 60, || async { user(1) }).await
    };
    assert_eq!(value, user(1));
    assert_eq!(
        h.raw_get(&key).await.as_deref(),
        Some(&br#"{"id":1,"name":"user 1"}"#[..])
    );
    let warnings = logs.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains(&key), "{warnings:?}");
    assert_eq!(h.cache.stats().corrupt, 1);
}

async fn get_and_set_round_trip_and_an_undecodable_value_is_none(h: &Harness) {
    let p = h.prefix("typed");
    let key = format!("{p}limits");
    assert_eq!(h.cache.get::<Vec<u32>>(&key).await.unwrap(), None);
    h.cache.set(&key, &[10u32, 20], 45).await.unwrap();
    assert_eq!(h.raw_get(&key).await.as_deref(), Some(&b"[10,20]"[..]));
    let ttl = h.ttl(&key).await;
    assert!((43..=45).contains(&ttl), "{ttl}");
    assert_eq!(
        h.cache.get::<Vec<u32>>(&key).await.unwrap(),
        Some(vec![10, 20])
    );
    let (logs, dispatch) = Logs::capture(tracing::Level::WARN);
    let wrong_type = {
        let _guard = tracing::dispatcher::set_default(&dispatch);
        h.cache.get::<String>(&key).await
    };
    assert_eq!(
        wrong_type.unwrap(),
        None,
        "does not decode: None, not an error"
    );
    assert!(logs.warnings()[0].contains(&key), "{}", logs.text());
    // `set` then `get_or_set`: the value set is served.
    h.cache.set(&format!("{p}name"), "Ann", 60).await.unwrap();
    let name: String = h
        .cache
        .get_or_set(&format!("{p}name"), 60, || async { "never".to_string() })
        .await;
    assert_eq!(name, "Ann");
}

async fn a_value_above_max_value_bytes_is_refused_by_set_and_not_stored_by_get_or_set(h: &Harness) {
    let limited = match &h.redis {
        Some(redis) => Cache::builder()
            .url(redis.url())
            .max_value_bytes(Some(16))
            .build()
            .await
            .unwrap(),
        None => Cache::builder().max_value_bytes(Some(16)).build_in_memory(),
    };
    let key = format!("{}big", h.prefix("size"));
    let big = "x".repeat(100);
    match limited.set(&key, &big, 60).await {
        Err(Error::ValueTooLarge {
            size: 102,
            limit: 16,
        }) => {}
        other => panic!("expected ValueTooLarge, got {other:?}"),
    }
    let value: String = limited.get_or_set(&key, 60, || async { big.clone() }).await;
    assert_eq!(value, big, "returned");
    assert_eq!(limited.get_raw(&key).await.unwrap(), None, "but not stored");
}

async fn a_thousand_concurrent_callers_of_one_key_run_the_closure_once(h: &Harness) {
    const N: usize = 1000;
    let key = format!("{}hot", h.prefix("flight"));
    let runs = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let mut tasks = Vec::with_capacity(N);
    for _ in 0..N {
        let (cache, key, runs, gate) = (h.cache.clone(), key.clone(), runs.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_set(&key, 60, || async {
                    runs.fetch_add(1, SeqCst);
                    let _permit = gate.acquire().await;
                    user(9)
                })
                .await
        }));
    }
    // Every caller has joined the flight before the body may finish.
    tokio::time::timeout(Duration::from_secs(60), async {
        while h.cache.in_flight_waiters(&key) < N - 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("every caller waits on the one run");
    gate.add_permits(1);
    for task in tasks {
        assert_eq!(task.await.unwrap(), user(9));
    }
    assert_eq!(runs.load(SeqCst), 1);
    let stats = h.cache.stats();
    assert_eq!(
        (stats.misses, stats.shared, stats.hits),
        (1, N as u64 - 1, 0)
    );
    assert_eq!(h.cache.in_flight(), 0);
}

async fn calls_are_counted_under_the_key_family(h: &Harness) {
    let p = h.prefix("fam");
    for id in 0..3 {
        let key = format!("{p}{id}");
        h.cache.get_or_set(&key, 60, || async move { id }).await;
        h.cache.get_or_set(&key, 60, || async move { id }).await;
    }
    h.cache.set(&format!("{p}x"), &1u8, 60).await.unwrap();
    h.cache.invalidate_prefix(&p).await.unwrap();
    let stats = h.cache.stats();
    let fam = stats
        .functions
        .iter()
        .find(|f| f.name == "fam:")
        .expect("a family per first key segment");
    assert_eq!((fam.hits, fam.misses, fam.stores), (3, 3, 4));
    assert_eq!(fam.invalidations, 4);
    assert_eq!((stats.hits, stats.misses, stats.calls()), (3, 3, 6));
}

redis_memo_test_support::on_both_backends! {
    #[tokio::test]
    the_key_is_used_as_given_and_a_hit_skips_the_closure,
    ttl_takes_seconds_a_duration_zero_or_a_policy,
    try_get_or_set_stores_only_ok,
    a_corrupt_value_is_a_miss_and_is_overwritten,
    get_and_set_round_trip_and_an_undecodable_value_is_none,
    a_value_above_max_value_bytes_is_refused_by_set_and_not_stored_by_get_or_set,
    a_thousand_concurrent_callers_of_one_key_run_the_closure_once,
    calls_are_counted_under_the_key_family,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_runs_the_closure_and_get_reports_the_error() {
    let mut redis = TestRedis::spawn(&[]);
    let cache = Cache::builder()
        .url(redis.url())
        .response_timeout(Duration::from_millis(200))
        .connect_timeout(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    redis.kill();
    for id in 0..20u64 {
        let value = cache
            .get_or_set(&format!("down:{id}"), 60, || async move { id * 2 })
            .await;
        assert_eq!(value, id * 2, "fail-open: the closure's value");
    }
    assert!(
        cache.get::<u64>("down:1").await.is_err(),
        "direct reads report errors"
    );
    assert!(cache.set("down:1", &1u8, 60).await.is_err(), "and writes");
    let stats = cache.stats();
    assert!(stats.errors + stats.breaker_skipped >= 20, "{stats:?}");
    assert_eq!(stats.stores, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_policy_runs_the_closure_once_across_two_caches() {
    let redis = TestRedis::spawn(&[]);
    let (a, b) = (redis.cache().await, redis.cache().await);
    let runs = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let policy = Policy::ttl(60).lease(Duration::from_secs(30));
    let call = |cache: Cache| {
        let (runs, gate) = (runs.clone(), gate.clone());
        tokio::spawn(async move {
            cache
                .get_or_set("leased:1", policy, || async {
                    // Only the first run waits for the gate.
                    if runs.fetch_add(1, SeqCst) == 0 {
                        let _permit = gate.acquire().await;
                    }
                    7u64
                })
                .await
        })
    };
    let until = async |what: &str, check: &dyn Fn() -> bool| {
        tokio::time::timeout(Duration::from_secs(60), async {
            while !check() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
    };
    let first = call(a.clone());
    until("the first cache runs the closure", &|| {
        runs.load(SeqCst) == 1
    })
    .await;
    let second = call(b.clone());
    // The second cache missed too and now waits for the lease holder's value
    // (without the lease it would run the closure).
    until("the second cache misses", &|| b.in_flight() == 1).await;
    gate.add_permits(1);
    assert_eq!(first.await.unwrap(), 7);
    assert_eq!(second.await.unwrap(), 7);
    assert_eq!(runs.load(SeqCst), 1, "one run across both caches");
    assert_eq!((a.stats().misses, b.stats().shared), (1, 1));
}

#[cfg(feature = "msgpack")]
#[tokio::test]
async fn a_policy_codec_stores_that_encoding_and_reads_it_back() {
    let h = Harness::redis().await;
    let key = format!("{}1", h.prefix("packed"));
    let policy = Policy::ttl(60).codec(redis_memo::Codec::MessagePack);
    let runs = AtomicUsize::new(0);
    let load = || async {
        runs.fetch_add(1, SeqCst);
        user(1)
    };
    assert_eq!(h.cache.get_or_set(&key, policy, load).await, user(1));
    assert_eq!(h.cache.get_or_set(&key, policy, load).await, user(1));
    assert_eq!(runs.load(SeqCst), 1, "read back with the same codec");
    let raw = h.raw_get(&key).await.unwrap();
    assert_eq!(&raw[..3], b"\x00m-", "framed MessagePack, not JSON");
}
