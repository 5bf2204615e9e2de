//! The local tier behind Sentinel: the primary the data connection uses is
//! tracked, and tracking moves with the data connection on a failover
//! (`SENTINEL FAILOVER`, and a primary killed under load), so another
//! client's change reaches every tier at once (with `local_ttl` far beyond
//! the test) on the old primary and on the new one.

use redis_memo_test_support as support;

use std::time::Duration;

use redis::AsyncCommands;
use redis_memo::Cache;
use support::tier::{hold_locally, load_through, stops_serving};
use support::{TestSentinel, until};

async fn local_cache(sentinel: &TestSentinel) -> Cache {
    Cache::builder()
        .sentinel(sentinel.sentinel_urls(), sentinel.service_name())
        .local_cache(1 << 20)
        .local_ttl(Duration::from_secs(60))
        .build()
        .await
        .expect("connect behind Sentinel with a local tier")
}

/// The names of the connections to the data node on `port`.
async fn client_names(sentinel: &TestSentinel, port: u16) -> Vec<String> {
    let mut conn = sentinel.node_client(port).await;
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .unwrap();
    list.lines()
        .filter_map(|line| line.split(' ').find_map(|f| f.strip_prefix("name=")))
        .map(str::to_owned)
        .collect()
}

/// Another client's `SET` and `DEL` on the primary reach `b`'s tier, and
/// so does `a`'s write.
async fn changes_reach_the_tier(sentinel: &TestSentinel, a: &Cache, b: &Cache, key: &str) {
    let mut plain = sentinel.node_client(sentinel.primary_port()).await;
    a.set(key, &1u64, 300).await.unwrap();
    hold_locally(b, key, 1).await;
    let _: () = plain.set(key, "2").await.unwrap();
    stops_serving(b, key, 1, "b sees another client's SET").await;
    hold_locally(b, key, 2).await;
    let _: u64 = plain.del(key).await.unwrap();
    stops_serving(b, key, 2, "b sees another client's DEL").await;
    hold_locally(b, key, 0).await;
    a.set(key, &3u64, 300).await.unwrap();
    stops_serving(b, key, 0, "b sees the other process's set").await;
}

/// Both caches track (the tracking connections are on the primary).
async fn both_track(sentinel: &TestSentinel, a: &Cache, b: &Cache) {
    until("both caches track the primary", async || {
        a.stats().local_tracking && b.stats().local_tracking
    })
    .await;
    let primary = sentinel.primary_port();
    until("the tracking connections are on the primary", async || {
        let names = client_names(sentinel, primary).await;
        names.iter().filter(|n| *n == "redis-memo-tracking").count() == 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_is_tracked_and_tracking_follows_a_failover() {
    let sentinel = tokio::task::spawn_blocking(TestSentinel::start)
        .await
        .unwrap();
    let (a, b) = (local_cache(&sentinel).await, local_cache(&sentinel).await);
    assert!(
        b.stats().local_tracking,
        "the primary is tracked once built"
    );
    both_track(&sentinel, &a, &b).await;
    changes_reach_the_tier(&sentinel, &a, &b, "lst:1").await;

    let old = sentinel.primary_port();
    hold_locally(&b, "lst:1", 3).await;
    tokio::task::block_in_place(|| sentinel.failover());
    let new = tokio::task::block_in_place(|| sentinel.wait_for_primary_change(old));
    assert_ne!(new, old);
    both_track(&sentinel, &a, &b).await;
    changes_reach_the_tier(&sentinel, &a, &b, "lst:2").await;
    changes_reach_the_tier(&sentinel, &a, &b, "lst:1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_load_through_a_killed_primary_every_value_is_one_written_and_the_last_wins() {
    let mut sentinel = tokio::task::spawn_blocking(TestSentinel::start)
        .await
        .unwrap();
    let (writer, reader) = (local_cache(&sentinel).await, local_cache(&sentinel).await);
    let keys: Vec<String> = (0..8).map(|i| format!("lsload:{i}")).collect();
    let old = sentinel.primary_port();
    load_through(&writer, &reader, &keys, async || {
        tokio::task::block_in_place(|| sentinel.kill(old));
        tokio::task::block_in_place(|| sentinel.wait_for_primary_change(old));
        until("the reader tracks the new primary", async || {
            reader.stats().local_tracking
        })
        .await;
    })
    .await;
    // Tracking is on the new primary: another client's change reaches it.
    let mut plain = sentinel.node_client(sentinel.primary_port()).await;
    let _: u64 = plain.del("lsload:0").await.unwrap();
    stops_serving(
        &reader,
        "lsload:0",
        1_000_000,
        "the reader sees a DEL on the new primary",
    )
    .await;
}
