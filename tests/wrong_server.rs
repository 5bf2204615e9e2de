//! A cache that is not caching says so: the standalone constructor refuses a
//! server of the wrong kind with an error naming what to do, `connect_lazy`
//! logs it once, and replies that mean misconfiguration are counted apart
//! (`stats().misconfigured`) and logged with what to do.

use std::time::Duration;

use redis_memo::{Cache, Error};
use redis_memo_test_support::{Logs, TestRedis, TestSentinel};

fn wrong_server(result: Result<Cache, Error>) -> (&'static str, &'static str) {
    match result {
        Err(Error::WrongServer { found, advice }) => (found, advice),
        other => panic!("expected WrongServer, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standalone_constructor_refuses_a_replica_a_cluster_node_and_a_sentinel() {
    let primary = TestRedis::spawn(&[]);
    let port = primary.port().to_string();
    let replica = TestRedis::spawn(&["--replicaof", "127.0.0.1", &port]);
    let (found, advice) = wrong_server(Cache::connect(replica.url()).await);
    assert_eq!(found, "a read-only replica");
    assert!(advice.contains("primary"), "{advice}");

    let node = TestRedis::spawn(&["--cluster-enabled", "yes"]);
    let (found, advice) = wrong_server(Cache::connect(node.url()).await);
    assert_eq!(found, "a Redis Cluster node");
    assert!(advice.contains("connect_cluster"), "{advice}");

    let sentinels = tokio::task::spawn_blocking(TestSentinel::start)
        .await
        .unwrap();
    let (found, advice) = wrong_server(Cache::connect(&sentinels.sentinel_urls()[0]).await);
    assert_eq!(found, "a Sentinel");
    assert!(advice.contains("get-master-addr-by-name"), "{advice}");

    // The primary itself is fine.
    Cache::connect(primary.url()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lazy_cache_on_a_replica_logs_once_and_counts_every_refused_write() {
    let primary = TestRedis::spawn(&[]);
    let port = primary.port().to_string();
    let replica = TestRedis::spawn(&["--replicaof", "127.0.0.1", &port]);
    let (logs, dispatch) = Logs::capture(tracing::Level::WARN);
    let _guard = tracing::dispatcher::set_default(&dispatch);
    // The background check runs on this runtime's threads: give it the
    // subscriber too.
    let _global = tracing::dispatcher::set_global_default(dispatch.clone());
    let cache = Cache::connect_lazy(replica.url()).await.unwrap();
    for id in 0..20u64 {
        let value = cache
            .get_or_set(&format!("ro:{id}"), 60, || async move { id * 3 })
            .await;
        assert_eq!(value, id * 3, "fail-open: the value is returned");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !logs.text().contains("a read-only replica") {
        assert!(
            std::time::Instant::now() < deadline,
            "no error log: {}",
            logs.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = cache.stats();
    assert_eq!(stats.stores, 0);
    assert_eq!(stats.write_errors, 20, "{stats:?}");
    assert_eq!(stats.misconfigured, 20, "every refused write: {stats:?}");
    let errors = logs.text().lines().filter(|l| l.contains("ERROR")).count();
    assert_eq!(errors, 1, "one loud error: {}", logs.text());
    let warnings = logs.warnings();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("misconfigured") && w.contains("replica")),
        "{warnings:?}"
    );
    assert!(warnings.len() < 20, "rate-limited: {warnings:?}");
}
