//! The local tier on a Redis Cluster (3 primaries + 3 replicas on this
//! machine), in one run: hits against a raw redis-rs `ClusterConnection`
//! GET + serde_json of the same keys (variants taking turns, as on one
//! server), and the time from a `DEL` on a primary (keys on every primary in
//! turn) until the tier serves the new value.

use std::sync::Arc;

use redis_memo::Cache;

use super::common::*;
use super::support;
use super::{
    coherence, latencies, memo_get_user, memo_get_user_key, print_coherence, warm_locally,
};

pub(super) async fn run(calls: u64, seconds: u64, invalidations: u64) {
    let cluster = tokio::task::spawn_blocking(support::TestCluster::start)
        .await
        .expect("start the bench cluster");
    let local = Cache::builder()
        .cluster_nodes(cluster.seed_urls())
        .local_cache(64 << 20)
        .build()
        .await
        .expect("connect to the cluster with a local tier");
    assert!(local.stats().local_tracking, "every primary is tracked");
    let raw = cluster.client().await;
    let mut keys = Vec::new();
    for id in 0..IDS {
        memo_get_user(&local, id).await;
        keys.push(memo_get_user_key(&local, id).await.expect("key"));
    }
    warm_locally(&local).await;
    let keys = Arc::new(keys);
    let variants: Vec<(&str, Variant)> = vec![
        (
            "raw cluster",
            raw_get_variant(&raw, move |id| keys[id as usize].clone()),
        ),
        ("local tier", {
            let cache = local.clone();
            variant(move |id| {
                let cache = cache.clone();
                async move {
                    std::hint::black_box(memo_get_user(&cache, id % IDS).await);
                }
            })
        }),
    ];
    println!(
        "\ncluster (3 primaries + 3 replicas), local-tier hits against a raw ClusterConnection GET of the same keys"
    );
    for (streak, how) in [
        (1, "taking turns call by call (cold)"),
        (500, "taking turns every 500 calls (warm)"),
    ] {
        let lat = latencies(&variants, calls, 10, streak).await;
        let p = |v: usize, q: f64| us(quantile(&lat[v], q));
        println!("hit latency, concurrency 1, {calls} calls per variant, {how}");
        for (v, (name, _)) in variants.iter().enumerate() {
            println!(
                "{name:<12} p50 {:>8.2} us ({:.3}x raw)  p99 {:>8.2} us",
                p(v, 0.5),
                p(v, 0.5) / p(0, 0.5),
                p(v, 0.99)
            );
        }
    }
    let rates = throughputs(&variants, 64, seconds).await;
    println!("hit throughput, 64 tasks, {seconds} s per variant in 0.25 s alternating rounds");
    for ((name, _), rate) in variants.iter().zip(&rates) {
        println!("{name:<12} {rate:>12.0}/s {:>8.3}x raw", rate / rates[0]);
    }

    // Keys over every primary, taken in turn.
    let spread: Vec<String> = (0..30)
        .map(|i| format!("benchlocal:coherence:{i}"))
        .collect();
    let owners: std::collections::BTreeSet<u16> = spread
        .iter()
        .map(|key| cluster.primary_for_key(key).port)
        .collect();
    assert_eq!(owners.len(), 3, "the coherence keys are on every primary");
    let samples = coherence(&local, &raw, &spread, invalidations).await;
    println!(
        "DEL on a primary (another client) -> the local tier serves the new value, \
         {invalidations} rounds over keys on every primary (the DEL's own round trip included)"
    );
    print_coherence(&samples);
    let stats = local.stats();
    println!(
        "local tier after the run: {} local hits of {} calls, {} keys pushed, tracking = {}",
        stats.local_hits,
        stats.calls(),
        stats.local_pushes,
        stats.local_tracking
    );
}
