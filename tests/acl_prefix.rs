//! A Redis user limited to the keys under one `key_prefix`
//! (`~app:* +@read +@write +@keyspace`, no `+@scripting`): every key
//! redis-memo writes for a function (values, the group's generation, leases)
//! starts with that function's prefix, so plain, grouped and leased functions
//! and `get_or_set` cache, and every invalidation works, with exact counts.

use redis_memo_test_support as support;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use redis_memo::{Cache, cached};
use support::TestRedis;

#[cached(ttl = 120, key_prefix = "app:", cache = cache, ignore(runs))]
async fn plain(cache: &Cache, runs: &AtomicUsize, id: u64) -> u64 {
    runs.fetch_add(1, SeqCst);
    id * 2
}

#[cached(ttl = 120, key_prefix = "app:grp:", grouped, cache = cache, ignore(runs))]
async fn grouped(cache: &Cache, runs: &AtomicUsize, id: u64) -> u64 {
    runs.fetch_add(1, SeqCst);
    id * 3
}

#[cached(ttl = 120, key_prefix = "app:lease:", lease = 30, cache = cache, ignore(runs))]
async fn leased(cache: &Cache, runs: &AtomicUsize, id: u64) -> Result<u64, String> {
    runs.fetch_add(1, SeqCst);
    if id == 0 {
        return Err("no value for 0".into());
    }
    Ok(id * 5)
}

/// A server with user `app` limited to `~app:*`, a cache connected as that
/// user, and a plain connection as the default user to read keys back.
async fn setup() -> (TestRedis, Cache, redis::aio::MultiplexedConnection) {
    let redis = TestRedis::spawn(&[]);
    redis
        .acl_setuser(
            "app",
            &[
                "on",
                ">app-secret",
                "resetkeys",
                "~app:*",
                "-@all",
                "+@read",
                "+@write",
                "+@keyspace",
            ],
        )
        .await;
    let url = format!("redis://app:app-secret@127.0.0.1:{}", redis.port());
    let cache = Cache::connect(&url)
        .await
        .expect("connect as the prefix-scoped user");
    let conn = redis.client().await;
    (redis, cache, conn)
}

async fn get(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query_async(conn).await.unwrap()
}

async fn keys(conn: &mut redis::aio::MultiplexedConnection, pattern: &str) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(conn)
        .await
        .unwrap();
    keys.sort();
    keys
}

#[tokio::test]
async fn plain_and_grouped_functions_cache_under_their_prefix() {
    let (_redis, cache, mut conn) = setup().await;
    let runs = AtomicUsize::new(0);
    for _ in 0..2 {
        for id in 0..10 {
            assert_eq!(plain(&cache, &runs, id).await, id * 2);
            assert_eq!(grouped(&cache, &runs, id).await, id * 3);
        }
    }
    assert_eq!(runs.load(SeqCst), 20, "the second round is all hits");
    let key = plain_key(&cache, 4).await.unwrap();
    assert_eq!(get(&mut conn, &key).await.as_deref(), Some("8"));
    let key = grouped_key(&cache, 4).await.unwrap();
    assert!(key.starts_with("app:grp:@0:"), "{key}");
    assert_eq!(get(&mut conn, &key).await.as_deref(), Some("12"));

    // The group's generation lives under the prefix, and one INCR retires
    // every entry of the group.
    assert_eq!(cache.invalidate_group("app:grp:").await.unwrap(), 1);
    assert_eq!(
        get(&mut conn, "app:grp:@generation").await.as_deref(),
        Some("1")
    );
    for id in 0..10 {
        assert_eq!(grouped(&cache, &runs, id).await, id * 3);
        assert_eq!(grouped(&cache, &runs, id).await, id * 3);
    }
    assert_eq!(runs.load(SeqCst), 30, "each grouped entry ran once more");
    let key = grouped_key(&cache, 4).await.unwrap();
    assert!(key.starts_with("app:grp:@1:"), "{key}");
    assert_eq!(get(&mut conn, &key).await.as_deref(), Some("12"));

    let value: u64 = cache.get_or_set("app:gos:1", 60, || async { 11 }).await;
    let again: u64 = cache.get_or_set("app:gos:1", 60, || async { 12 }).await;
    assert_eq!((value, again), (11, 11));
    assert_eq!(get(&mut conn, "app:gos:1").await.as_deref(), Some("11"));

    let stats = cache.stats();
    assert_eq!(stats.errors, 0, "{stats:?}");
    assert_eq!(stats.misconfigured, 0, "{stats:?}");
}

#[tokio::test]
async fn a_lease_is_taken_and_released_under_the_prefix() {
    let (_redis, cache, mut conn) = setup().await;
    let runs = AtomicUsize::new(0);
    assert_eq!(leased(&cache, &runs, 7).await, Ok(35));
    assert_eq!(leased(&cache, &runs, 7).await, Ok(35));
    assert_eq!(runs.load(SeqCst), 1);
    let key = leased_key(&cache, 7).await.unwrap();
    assert_eq!(get(&mut conn, &key).await.as_deref(), Some("35"));

    // A body that fails stores nothing: its lease (the placeholder in its
    // key) must be released (here without a script), or another process's
    // next call would wait for the lease's 30 s.
    let sets_before = set_calls(&mut conn).await;
    assert!(leased(&cache, &runs, 0).await.is_err());
    assert!(leased(&cache, &runs, 0).await.is_err());
    assert_eq!(runs.load(SeqCst), 3, "each failing call ran the body");
    assert_eq!(
        set_calls(&mut conn).await - sets_before,
        2,
        "both calls took the lease (SET NX), so the first released it"
    );
    let failed = leased_key(&cache, 0).await.unwrap();
    assert!(get(&mut conn, &failed).await.is_none(), "released");
    assert_eq!(
        keys(&mut conn, "app:lease:*").await,
        vec![key.clone()],
        "nothing but the stored value under the prefix"
    );
    let stats = cache.stats();
    assert_eq!(stats.misconfigured, 0, "{stats:?}");
}

#[tokio::test]
async fn every_invalidation_works_and_counts_exactly() {
    let (_redis, cache, mut conn) = setup().await;
    let runs = AtomicUsize::new(0);
    for id in 1..=10 {
        plain(&cache, &runs, id).await;
        grouped(&cache, &runs, id).await;
        leased(&cache, &runs, id).await.unwrap();
    }
    cache.invalidate_group("app:grp:").await.unwrap();
    for id in 1..=4 {
        grouped(&cache, &runs, id).await;
    }
    // app:grp:@0 x10, app:grp:@1 x4, the generation, plain x10, leased x10.
    assert_eq!(keys(&mut conn, "app:*").await.len(), 35);

    assert_eq!(grouped_invalidate_all(&cache).await.unwrap(), 14);
    assert_eq!(
        get(&mut conn, "app:grp:@generation").await.as_deref(),
        Some("1"),
        "the generation is not an entry"
    );
    assert_eq!(plain_invalidate_all(&cache).await.unwrap(), 10);
    assert_eq!(keys(&mut conn, "app:*").await.len(), 11);

    assert_eq!(
        cache.invalidate_prefix("app:").await.unwrap(),
        10,
        "the leased entries; the group's generation is kept"
    );
    assert_eq!(keys(&mut conn, "app:*").await, vec!["app:grp:@generation"]);
    grouped(&cache, &runs, 1).await;
    assert!(
        grouped_key(&cache, 1)
            .await
            .unwrap()
            .starts_with("app:grp:@1:"),
        "the group stays at its generation"
    );
    let stats = cache.stats();
    assert_eq!(stats.errors, 0, "{stats:?}");
    assert_eq!(stats.misconfigured, 0, "{stats:?}");
}

async fn set_calls(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    support::command_counts(conn)
        .await
        .get("set")
        .copied()
        .unwrap_or(0)
}
