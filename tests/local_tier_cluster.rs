//! The local tier on a Redis Cluster: every primary is tracked, so another
//! client's change of a key on any primary reaches every tier at once (with
//! `local_ttl` far beyond the test), before and after a primary is killed
//! and its replica promoted; under load through the failover, every value a
//! tier serves is one that was written, and every key ends on its last value.

use redis_memo_test_support as support;

use std::collections::BTreeMap;
use std::time::Duration;

use redis::AsyncCommands;
use redis_memo::Cache;
use support::tier::{hold_locally, load_through, read, stops_serving};
use support::{TestCluster, until};

/// A cache on `cluster` with a local tier whose entries outlive the test
/// unless something drops them.
async fn local_cache(cluster: &TestCluster) -> Cache {
    Cache::builder()
        .cluster_nodes(cluster.seed_urls())
        .local_cache(1 << 20)
        .local_ttl(Duration::from_secs(60))
        .build()
        .await
        .expect("connect to the cluster with a local tier")
}

/// `per_primary` keys `{prefix}{i}` on each primary, by the primary's port.
fn keys_on_every_primary(
    cluster: &TestCluster,
    prefix: &str,
    per_primary: usize,
) -> BTreeMap<u16, Vec<String>> {
    let mut keys: BTreeMap<u16, Vec<String>> = cluster
        .primaries()
        .into_iter()
        .map(|p| (p.port, Vec::new()))
        .collect();
    let ranges = cluster.slot_ranges();
    let mut i = 0;
    while keys.values().any(|k| k.len() < per_primary) {
        let key = format!("{prefix}{i}");
        i += 1;
        let slot = cluster.key_slot(&key);
        let owner = ranges
            .iter()
            .find(|((start, end), _)| (*start..=*end).contains(&slot))
            .map(|(_, port)| *port)
            .expect("every slot is served");
        if let Some(list) = keys.get_mut(&owner)
            && list.len() < per_primary
        {
            list.push(key);
        }
    }
    keys
}

/// Another client's `SET` and `DEL` of each key reach `b`'s tier, and so
/// does `a`'s write (two processes with a local tier each).
async fn changes_reach_the_tier(
    cluster: &TestCluster,
    a: &Cache,
    b: &Cache,
    keys: &BTreeMap<u16, Vec<String>>,
) {
    let mut plain = cluster.client().await;
    for (port, keys) in keys {
        for key in keys {
            let what = |change: &str| format!("b sees {change} of {key} on primary {port}");
            a.set(key, &1u64, 300).await.unwrap();
            hold_locally(b, key, 1).await;
            let _: () = plain.set(key, "2").await.unwrap();
            stops_serving(b, key, 1, &what("another client's SET")).await;
            assert_eq!(read(b, key).await, 2);
            hold_locally(b, key, 2).await;
            let _: u64 = plain.del(key).await.unwrap();
            stops_serving(b, key, 2, &what("another client's DEL")).await;
            hold_locally(b, key, 0).await;
            a.set(key, &3u64, 300).await.unwrap();
            stops_serving(b, key, 0, &what("the other process's set")).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_primary_is_tracked_before_and_after_a_primary_is_killed() {
    let mut cluster = tokio::task::spawn_blocking(TestCluster::start)
        .await
        .unwrap();
    let (a, b) = (local_cache(&cluster).await, local_cache(&cluster).await);
    assert!(
        b.stats().local_tracking,
        "every primary is tracked once built"
    );
    let keys = keys_on_every_primary(&cluster, "lcl:", 3);
    changes_reach_the_tier(&cluster, &a, &b, &keys).await;
    assert!(b.stats().local_pushes > 0);

    // A primary dies: its tracking connection goes, the tier is cleared.
    let held = keys.values().flatten().next().unwrap().clone();
    hold_locally(&b, &held, 3).await;
    let victim = *keys.keys().next().unwrap();
    cluster.wait_replicated().await;
    tokio::task::block_in_place(|| cluster.kill(victim));
    until(
        "the tier is not tracked without the dead primary",
        async || !b.stats().local_tracking,
    )
    .await;
    let promoted = tokio::task::block_in_place(|| cluster.wait_until_promoted(victim));
    until("b tracks the promoted primary", async || {
        b.stats().local_tracking
    })
    .await;
    until("a tracks the promoted primary", async || {
        a.stats().local_tracking
    })
    .await;
    let keys = keys_on_every_primary(&cluster, "lcl2:", 2);
    assert!(keys.contains_key(&promoted.port), "{keys:?}");
    changes_reach_the_tier(&cluster, &a, &b, &keys).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_load_through_a_killed_primary_every_value_is_one_written_and_the_last_wins() {
    let mut cluster = tokio::task::spawn_blocking(TestCluster::start)
        .await
        .unwrap();
    let (writer, reader) = (local_cache(&cluster).await, local_cache(&cluster).await);
    let keys: Vec<String> = keys_on_every_primary(&cluster, "lcload:", 4)
        .into_values()
        .flatten()
        .collect();
    let victim = cluster.primary_for_key(&keys[0]).port;
    load_through(&writer, &reader, &keys, async || {
        cluster.wait_replicated().await;
        tokio::task::block_in_place(|| cluster.kill(victim));
        tokio::task::block_in_place(|| cluster.wait_until_promoted(victim));
        until("the reader tracks every primary again", async || {
            reader.stats().local_tracking
        })
        .await;
    })
    .await;
}
