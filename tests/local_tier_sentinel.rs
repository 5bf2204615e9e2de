//! The local tier behind Sentinel: the primary the data connection uses is
//! tracked, and tracking moves with the data connection on a failover
//! (`SENTINEL FAILOVER`, and a primary killed under load), so another
//! client's change reaches every tier at once (with `local_ttl` far beyond
//! the test) on the old primary and on the new one.

use redis_memo_test_support as support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use redis::AsyncCommands;
use redis_memo::Cache;
use support::tier::{hold_locally, read, stops_serving};
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
    let keys: Arc<Vec<String>> = Arc::new((0..8).map(|i| format!("lsload:{i}")).collect());
    let written: Arc<Vec<AtomicU64>> = Arc::new(keys.iter().map(|_| AtomicU64::new(0)).collect());
    for key in keys.iter() {
        writer.set(key, &0u64, 300).await.unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (reads, unknown) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut tasks = Vec::new();
    for task in 0..4 {
        let (reader, keys, written, stop) =
            (reader.clone(), keys.clone(), written.clone(), stop.clone());
        let (reads, unknown) = (reads.clone(), unknown.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = task;
            while !stop.load(SeqCst) {
                let k = i % keys.len();
                if read(&reader, &keys[k]).await > written[k].load(SeqCst) {
                    unknown.fetch_add(1, SeqCst);
                }
                reads.fetch_add(1, SeqCst);
                i += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }));
    }
    let write_all = async |version: u64| {
        for (k, key) in keys.iter().enumerate() {
            written[k].fetch_max(version, SeqCst);
            let _ = writer.set(key, &version, 300).await;
        }
    };
    for version in 1..=20 {
        write_all(version).await;
    }
    let old = sentinel.primary_port();
    tokio::task::block_in_place(|| sentinel.kill(old));
    for version in 21..=25 {
        write_all(version).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::task::block_in_place(|| sentinel.wait_for_primary_change(old));
    until("the reader tracks the new primary", async || {
        reader.stats().local_tracking
    })
    .await;
    let last = 1000;
    for (k, key) in keys.iter().enumerate() {
        written[k].fetch_max(last, SeqCst);
        until(&format!("{key} is written"), async || {
            writer.set(key, &last, 300).await.is_ok()
        })
        .await;
    }
    stop.store(true, SeqCst);
    for task in tasks {
        task.await.expect("no reader panicked");
    }
    assert!(reads.load(SeqCst) > 100, "the readers ran");
    assert_eq!(
        unknown.load(SeqCst),
        0,
        "a value that was never written was served"
    );
    for key in keys.iter() {
        until(
            &format!("the reader serves the last value of {key}"),
            async || read(&reader, key).await == last,
        )
        .await;
        hold_locally(&reader, key, last).await;
    }
    for _ in 0..20 {
        for key in keys.iter() {
            assert_eq!(read(&reader, key).await, last, "{key}");
        }
    }
    // Tracking is on the new primary: another client's change reaches it.
    let mut plain = sentinel.node_client(sentinel.primary_port()).await;
    let _: u64 = plain.del("lsload:0").await.unwrap();
    stops_serving(
        &reader,
        "lsload:0",
        last,
        "the reader sees a DEL on the new primary",
    )
    .await;
}
