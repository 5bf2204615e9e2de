//! `Cache::from_env` behind Sentinel: `REDIS_SENTINELS` with
//! `REDIS_SENTINEL_SERVICE`, and `REDIS_URL` for the data nodes' db and
//! credentials. One test, alone in its binary: it changes the process
//! environment.

use redis_memo::{Cache, Error};
use redis_memo_test_support::{TestSentinel, until};

fn set(var: &str, value: Option<&str>) {
    // SAFETY: this binary's only test; nothing else reads the environment meanwhile.
    unsafe {
        match value {
            Some(value) => std::env::set_var(var, value),
            None => std::env::remove_var(var),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sentinels_and_the_service_name_select_the_primary() {
    let sentinel = tokio::task::spawn_blocking(TestSentinel::start)
        .await
        .unwrap();
    let urls = sentinel.sentinel_urls().join(",");

    // One without the other is an error, never a silent fallback.
    set("REDIS_SENTINELS", Some(&urls));
    for result in [Cache::from_env().await, Cache::from_env_lazy().await] {
        match result {
            Err(Error::InvalidUrl { reason }) => {
                assert!(reason.contains("REDIS_SENTINEL_SERVICE"), "{reason}")
            }
            other => panic!("expected InvalidUrl, got {other:?}"),
        }
    }
    set("REDIS_SENTINELS", None);
    set("REDIS_SENTINEL_SERVICE", Some(sentinel.service_name()));
    assert!(matches!(
        Cache::from_env().await,
        Err(Error::InvalidUrl { .. })
    ));

    // Both set, REDIS_URL giving the data nodes' db (its host is ignored).
    set("REDIS_SENTINELS", Some(&urls));
    set("REDIS_URL", Some("redis://ignored.invalid/3"));
    let cache = Cache::from_env().await.unwrap();
    assert_eq!(cache.backend_kind(), "redis-sentinel");
    cache.set("env:sentinel", &9u8, 60).await.unwrap();
    let mut primary = sentinel.node_client(sentinel.primary_port()).await;
    let stored: Option<String> = redis::pipe()
        .cmd("SELECT")
        .arg(3)
        .ignore()
        .cmd("GET")
        .arg("env:sentinel")
        .query_async::<(Option<String>,)>(&mut primary)
        .await
        .unwrap()
        .0;
    assert_eq!(
        stored.as_deref(),
        Some("9"),
        "stored in db 3 of the primary"
    );

    let lazy = Cache::from_env_lazy().await.unwrap();
    assert_eq!(lazy.backend_kind(), "redis-sentinel");
    until("the lazy cache reaches the primary", async || {
        lazy.get::<u8>("env:sentinel").await.ok().flatten() == Some(9)
    })
    .await;

    set("REDIS_URL", None);
    set("REDIS_SENTINELS", None);
    set("REDIS_SENTINEL_SERVICE", None);
}
