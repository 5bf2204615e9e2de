//! An invalidation always wins behind Sentinel: every path of
//! `coherence.rs`, on the primary the sentinels name, with and without a
//! local tier.

use redis_memo_test_support as support;

use redis_memo::Cache;
use support::TestSentinel;
use support::race::{Path, Plain, Via, race, race_every_path};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_wins_over_a_running_body_behind_sentinel() {
    let sentinel = tokio::task::spawn_blocking(TestSentinel::start)
        .await
        .unwrap();
    let connect = || Cache::connect_sentinel(sentinel.sentinel_urls(), sentinel.service_name());
    let cache = connect().await.unwrap();
    let other = connect().await.unwrap();
    let mut plain = Plain::Single(sentinel.node_client(sentinel.primary_port()).await);
    race_every_path(&cache, &other, &mut plain, 0).await;

    // With a local tier, tracked on the primary.
    let with_local = Cache::builder()
        .sentinel(sentinel.sentinel_urls(), sentinel.service_name())
        .local_cache(1 << 20)
        .build()
        .await
        .unwrap();
    assert!(with_local.stats().local_tracking);
    for (id, path) in Path::API.into_iter().chain(Path::FOREIGN).enumerate() {
        race(&with_local, Via::This, &mut plain, path, 100 + id as u64).await;
    }
    for (id, path) in Path::API.into_iter().enumerate() {
        race(
            &with_local,
            Via::Other(&other),
            &mut plain,
            path,
            200 + id as u64,
        )
        .await;
    }
}
