//! The cache never turns a working function into a failing one: Redis errors
//! and odd data are misses, and the body's value is returned.

use redis_memo_test_support as support;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use redis_memo::{Cache, cached};
use support::TestRedis;

#[cached(ttl = 60, key_prefix = "fail_open:", cache = cache, ignore(runs))]
async fn lookup(cache: &Cache, runs: &AtomicUsize, id: u64) -> Result<String, String> {
    runs.fetch_add(1, SeqCst);
    Ok(format!("value {id}"))
}

#[tokio::test]
async fn calls_succeed_after_redis_is_killed() {
    let redis = TestRedis::spawn(&[]);
    let cache = redis.cache().await;
    let runs = AtomicUsize::new(0);
    assert_eq!(lookup(&cache, &runs, 1).await.unwrap(), "value 1");
    assert_eq!(lookup(&cache, &runs, 1).await.unwrap(), "value 1");
    assert_eq!(runs.load(SeqCst), 1);

    drop(redis); // SIGKILL, and the port is closed
    for id in [1, 2, 3] {
        assert_eq!(
            lookup(&cache, &runs, id).await.unwrap(),
            format!("value {id}")
        );
    }
    assert_eq!(
        runs.load(SeqCst),
        4,
        "every call ran its body once Redis was gone"
    );
    assert!(
        cache.invalidate_prefix("fail_open:").await.is_err(),
        "direct calls do report errors"
    );
}

#[tokio::test]
async fn a_key_of_the_wrong_redis_type_is_a_miss() {
    let redis = TestRedis::start();
    let cache = redis.cache().await;
    let mut plain = redis.client().await;
    let key = lookup_key(&cache, 9).await.unwrap();
    redis::cmd("DEL")
        .arg(&key)
        .query_async::<()>(&mut plain)
        .await
        .unwrap();
    redis::cmd("RPUSH")
        .arg(&key)
        .arg("x")
        .query_async::<()>(&mut plain)
        .await
        .unwrap();

    let runs = AtomicUsize::new(0);
    assert_eq!(lookup(&cache, &runs, 9).await.unwrap(), "value 9");
    assert_eq!(runs.load(SeqCst), 1);
    let stored: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut plain)
        .await
        .unwrap();
    assert_eq!(
        stored, "\"value 9\"",
        "SET replaced the list with the value"
    );
}
