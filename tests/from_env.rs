//! `Cache::from_env` and `Cache::from_env_lazy`: `REDIS_URL` set means Redis,
//! unset means in memory, and set but empty is an error, never a silent
//! in-memory cache; `REDIS_CLUSTER_NODES` names a Redis Cluster. One test, alone in its binary: it changes the process
//! environment.

use redis_memo::{Cache, Error};
use redis_memo_test_support::TestRedis;

#[tokio::test]
async fn redis_url_decides_the_backend_and_an_empty_one_is_an_error() {
    // SAFETY: this binary's only test; nothing else reads the environment meanwhile.
    let set = |value: Option<&str>| unsafe {
        match value {
            Some(value) => std::env::set_var("REDIS_URL", value),
            None => std::env::remove_var("REDIS_URL"),
        }
    };

    set(None);
    assert_eq!(Cache::from_env().await.unwrap().backend_kind(), "in-memory");
    assert_eq!(
        Cache::from_env_lazy().await.unwrap().backend_kind(),
        "in-memory"
    );

    for empty in ["", "   "] {
        set(Some(empty));
        for result in [Cache::from_env().await, Cache::from_env_lazy().await] {
            match result {
                Err(Error::InvalidUrl { reason }) => {
                    assert!(reason.contains("REDIS_URL is set but empty"), "{reason}")
                }
                other => panic!("{empty:?}: expected InvalidUrl, got {other:?}"),
            }
        }
    }

    // Nothing listens: `from_env` fails fast, `from_env_lazy` starts anyway.
    let down = TestRedis::not_started();
    set(Some(down.url()));
    assert!(Cache::from_env().await.is_err());
    let lazy = Cache::from_env_lazy().await.unwrap();
    assert_eq!(lazy.backend_kind(), "redis");
    assert_eq!(lazy.get_or_set("env:1", 60, || async { 5u8 }).await, 5);

    let redis = TestRedis::spawn(&[]);
    set(Some(redis.url()));
    let cache = Cache::from_env().await.unwrap();
    cache.set("env:2", &2u8, 60).await.unwrap();
    assert_eq!(cache.get::<u8>("env:2").await.unwrap(), Some(2));

    // REDIS_CLUSTER_NODES names a cluster and wins over REDIS_URL; set but
    // empty, it is an error too.
    let set_nodes = |value: Option<&str>| unsafe {
        match value {
            Some(value) => std::env::set_var("REDIS_CLUSTER_NODES", value),
            None => std::env::remove_var("REDIS_CLUSTER_NODES"),
        }
    };
    for empty in ["", " , "] {
        set_nodes(Some(empty));
        for result in [Cache::from_env().await, Cache::from_env_lazy().await] {
            match result {
                Err(Error::InvalidUrl { reason }) => assert!(
                    reason.contains("REDIS_CLUSTER_NODES is set but empty"),
                    "{reason}"
                ),
                other => panic!("{empty:?}: expected InvalidUrl, got {other:?}"),
            }
        }
    }
    let other = TestRedis::not_started();
    set_nodes(Some(&format!("{}, {}", down.url(), other.url())));
    assert!(
        Cache::from_env().await.is_err(),
        "no seed answers: a typed error, not the standalone REDIS_URL"
    );
    let lazy = Cache::from_env_lazy().await.unwrap();
    assert_eq!(lazy.backend_kind(), "redis-cluster");
    assert!(lazy.ping().await.is_err());
    set_nodes(None);
    set(None);
}
