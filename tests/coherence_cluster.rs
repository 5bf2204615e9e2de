//! An invalidation always wins on a Redis Cluster: every path of
//! `coherence.rs`, with the keys of the races spread over every primary, the
//! flushes and other clients' changes sent to the primaries themselves.

use redis_memo_test_support as support;

use std::collections::BTreeSet;

use redis_memo::Cache;
use support::TestCluster;
use support::race::{Path, Plain, Via, race, versioned_key};

/// Ids whose keys land on the cluster's primaries in turn.
async fn ids_over_every_primary(cluster: &TestCluster, cache: &Cache, n: usize) -> Vec<u64> {
    let primaries: Vec<u16> = cluster.primaries().iter().map(|p| p.port).collect();
    let mut ids = Vec::new();
    let mut candidate = 0u64;
    while ids.len() < n {
        let want = primaries[ids.len() % primaries.len()];
        let key = versioned_key(cache, candidate).await.unwrap();
        if cluster.primary_for_key(&key).port == want {
            ids.push(candidate);
        }
        candidate += 1;
    }
    ids
}

async fn plain(cluster: &TestCluster) -> Plain {
    let mut primaries = Vec::new();
    for primary in cluster.primaries() {
        primaries.push(cluster.node_client(primary.port).await);
    }
    Plain::Cluster(cluster.client().await, primaries)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_wins_over_a_running_body_on_a_cluster() {
    let cluster = tokio::task::spawn_blocking(TestCluster::start)
        .await
        .unwrap();
    let cache = Cache::connect_cluster(cluster.seed_urls()).await.unwrap();
    let other = Cache::connect_cluster(cluster.seed_urls()).await.unwrap();
    let with_local = Cache::builder()
        .cluster_nodes(cluster.seed_urls())
        .local_cache(1 << 20)
        .build()
        .await
        .unwrap();
    let mut plain = plain(&cluster).await;
    let paths: Vec<Path> = Path::API.into_iter().chain(Path::FOREIGN).collect();
    let ids = ids_over_every_primary(&cluster, &cache, paths.len() * 3).await;
    let mut owners = BTreeSet::new();
    for (i, &path) in paths.iter().enumerate() {
        let id = ids[i];
        owners.insert(
            cluster
                .primary_for_key(&versioned_key(&cache, id).await.unwrap())
                .port,
        );
        race(&cache, Via::This, &mut plain, path, id).await;
    }
    assert_eq!(owners.len(), 3, "the races' keys were on every primary");
    for (i, &path) in Path::API.iter().enumerate() {
        race(
            &cache,
            Via::Other(&other),
            &mut plain,
            path,
            ids[paths.len() + i],
        )
        .await;
        race(
            &with_local,
            Via::This,
            &mut plain,
            path,
            ids[2 * paths.len() + i],
        )
        .await;
    }
}
