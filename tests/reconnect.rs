//! What a standalone cache does when its connection comes back different:
//! an authentication failure (a rotated password) is retried with backoff
//! until it succeeds, failing open and counted as misconfiguration meanwhile;
//! a server that became a replica is asked what it is, and the log says so.

use std::sync::atomic::{AtomicU64, Ordering};

use redis_memo::Cache;
use redis_memo_test_support::{Logs, TestRedis, until};

#[tokio::test]
async fn a_rotated_password_fails_open_and_caching_resumes_when_it_is_set_back() {
    let redis = TestRedis::spawn(&[]);
    let rules = [
        "on",
        "~auth:*",
        "+@read",
        "+@write",
        "+@keyspace",
        "+@connection",
    ];
    redis.acl_setuser("app", &rules).await;
    redis.acl_setuser("app", &["resetpass", ">first"]).await;
    let (logs, dispatch) = Logs::capture(tracing::Level::WARN);
    let _guard = tracing::dispatcher::set_default(&dispatch);
    let url = format!("redis://app:first@127.0.0.1:{}", redis.port());
    let cache = Cache::connect(&url).await.unwrap();
    let runs = AtomicU64::new(0);
    let call = async |key: &str, n: u64| {
        cache
            .get_or_set(key, 60, || async {
                runs.fetch_add(1, Ordering::Relaxed);
                n * 10
            })
            .await
    };
    assert_eq!(call("auth:before", 1).await, 10);
    assert_eq!(cache.stats().stores, 1);

    // The password is rotated on the server, and the user's connections dropped.
    redis.acl_setuser("app", &["resetpass", ">second"]).await;
    redis.command(&["CLIENT", "KILL", "USER", "app"]).await;
    let mut n = 0;
    until(
        "refused authentication is counted as misconfiguration",
        async || {
            n += 1;
            assert_eq!(
                call(&format!("auth:during:{n}"), n).await,
                n * 10,
                "fail-open"
            );
            cache.stats().misconfigured > 0
        },
    )
    .await;
    let stores = cache.stats().stores;
    for i in 0..20 {
        assert_eq!(call(&format!("auth:refused:{i}"), i).await, i * 10);
    }
    assert_eq!(cache.stats().stores, stores, "nothing stored while refused");
    assert!(
        logs.warnings()
            .iter()
            .any(|w| w.contains("authentication failed") && w.contains("retried")),
        "the log says what happened and what to do: {}",
        logs.text()
    );

    // The password is set back: the connection is retried and caching resumes.
    redis.acl_setuser("app", &["resetpass", ">first"]).await;
    until("caching resumes without a restart", async || {
        call("auth:after", 7).await;
        cache.get_raw("auth:after").await.ok().flatten().is_some()
    })
    .await;
    let ran = runs.load(Ordering::Relaxed);
    assert_eq!(call("auth:after", 7).await, 70);
    assert_eq!(
        runs.load(Ordering::Relaxed),
        ran,
        "a hit: the body did not run"
    );
    let mut plain = redis.client().await;
    let stored: Option<String> = redis::cmd("GET")
        .arg("auth:after")
        .query_async(&mut plain)
        .await
        .unwrap();
    assert_eq!(stored.as_deref(), Some("70"), "written as the app user");
}

#[tokio::test]
async fn a_primary_demoted_to_replica_is_reported_with_the_constructor_to_use() {
    let primary = TestRedis::spawn(&[]);
    let other = TestRedis::spawn(&[]);
    let (logs, dispatch) = Logs::capture(tracing::Level::WARN);
    let _guard = tracing::dispatcher::set_default(&dispatch);
    let cache = Cache::connect(primary.url()).await.unwrap();
    assert_eq!(cache.get_or_set("demoted:1", 60, || async { 1u8 }).await, 1);

    // What a failover does to the old primary.
    let port = other.port().to_string();
    primary.command(&["REPLICAOF", "127.0.0.1", &port]).await;
    let mut n = 0u8;
    until(
        "the cache reports that its server became a replica",
        async || {
            n = n.wrapping_add(1);
            let key = format!("demoted:w:{n}");
            assert_eq!(cache.get_or_set(&key, 60, || async { n }).await, n);
            logs.text().contains("has become a read-only replica")
        },
    )
    .await;
    assert!(cache.stats().misconfigured > 0, "{:?}", cache.stats());
    let text = logs.text();
    assert!(text.contains("Cache::connect_sentinel"), "{text}");
}
