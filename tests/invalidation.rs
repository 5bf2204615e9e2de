//! Prefix invalidation at scale: exactly the keys that literally start with the
//! prefix go, among decoys a glob would catch, neighbouring prefixes and keys
//! redis-memo never wrote.

use redis_memo_test_support as support;

use redis_memo::{Cache, Error};
use support::TestRedis;

const PREFIX: &str = "tenant[a]*?\\:users:";

/// (key, deleted?) for 100,000 keys.
fn population() -> Vec<(String, bool)> {
    let mut keys = Vec::with_capacity(100_000);
    for i in 0..60_000 {
        keys.push((format!("{PREFIX}{i}"), true));
    }
    for i in 0..20_000 {
        // An unescaped glob `tenant[a]*?\:users:*` matches these.
        keys.push((format!("tenanta-xy:users:{i}"), false));
    }
    for i in 0..10_000 {
        // Neighbouring prefixes: one character short, one different.
        let key = if i % 2 == 0 {
            format!("tenant[a]*?\\:users{i}")
        } else {
            format!("tenant[a]*?\\:usersX:{i}")
        };
        keys.push((key, false));
    }
    for i in 0..10_000 {
        keys.push((format!("session:{i}"), false));
    }
    keys
}

#[tokio::test]
async fn redis_deletes_exactly_the_literal_prefix_among_100k_keys() {
    let redis = TestRedis::spawn(&[]);
    let mut conn = redis.client().await;
    let keys = population();
    for chunk in keys.chunks(1000) {
        let mut mset = redis::cmd("MSET");
        for (key, _) in chunk {
            mset.arg(key).arg("1");
        }
        mset.query_async::<()>(&mut conn).await.unwrap();
    }
    let cache = redis.cache().await;
    assert_eq!(cache.invalidate_prefix(PREFIX).await.unwrap(), 60_000);

    let size: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
    assert_eq!(size, 40_000, "every decoy is still there");
    for (key, deleted) in keys.iter().step_by(97) {
        let exists: bool = redis::cmd("EXISTS")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(exists, !deleted, "{key}");
    }
    assert_eq!(cache.invalidate_prefix(PREFIX).await.unwrap(), 0);
}

#[tokio::test]
async fn memory_deletes_exactly_the_literal_prefix_among_100k_keys() {
    let cache = Cache::in_memory();
    let keys = population();
    for (key, _) in &keys {
        cache.set_raw(key, b"1", None).await.unwrap();
    }
    assert_eq!(cache.invalidate_prefix(PREFIX).await.unwrap(), 60_000);
    for (key, deleted) in keys.iter().step_by(97) {
        assert_eq!(
            cache.get_raw(key).await.unwrap().is_none(),
            *deleted,
            "{key}"
        );
    }
}

#[tokio::test]
async fn the_empty_prefix_needs_the_explicit_call() {
    let redis = TestRedis::spawn(&[]);
    let cache = redis.cache().await;
    for key in ["a", "b", "c"] {
        cache.set_raw(key, b"1", None).await.unwrap();
    }
    let refused = cache.invalidate_prefix("").await.unwrap_err();
    assert!(matches!(refused, Error::EmptyPrefix));
    assert!(refused.to_string().contains("invalidate_all_keys"));
    assert_eq!(
        cache.get_raw("a").await.unwrap().as_deref(),
        Some(&b"1"[..])
    );
    assert_eq!(cache.invalidate_all_keys().await.unwrap(), 3);
    assert_eq!(cache.get_raw("a").await.unwrap(), None);
}
