//! The cache on a real Redis Cluster (three primaries, three replicas): hits
//! served by the owning primary, prefix invalidation over every primary,
//! grouped functions, leases, and a primary killed under load.
//!
//! Each test starts its own cluster.

use redis_memo_test_support as support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use redis_memo::{Cache, KeyTtl, cached};
use support::{TestCluster, command_counts, until};
use tokio::sync::Semaphore;

/// A cache on the cluster, seeded with every node.
async fn cluster_cache(cluster: &TestCluster) -> Cache {
    Cache::builder()
        .cluster_nodes(cluster.seed_urls())
        .response_timeout(Duration::from_secs(2))
        .build()
        .await
        .expect("connect to the test cluster")
}

/// Asserts that every primary holds at least one of `keys`.
fn assert_spread(keys: &BTreeMap<u16, Vec<String>>, what: &str) {
    assert_eq!(keys.len(), 3, "three primaries: {keys:?}");
    for (port, keys) in keys {
        assert!(!keys.is_empty(), "{what}: primary {port} holds none");
    }
}

/// `GET` calls each primary has served so far (`INFO commandstats`), by port.
async fn get_calls(cluster: &TestCluster) -> BTreeMap<u16, u64> {
    let mut calls = BTreeMap::new();
    for primary in cluster.primaries() {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut cluster.node_client(primary.port).await)
            .await
            .unwrap();
        let n = info
            .lines()
            .find_map(|line| line.strip_prefix("cmdstat_get:calls="))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        calls.insert(primary.port, n);
    }
    calls
}

#[cached(ttl = 120, key_prefix = "cl:user:", cache = cache, ignore(runs))]
async fn user(cache: &Cache, runs: &AtomicUsize, id: u64) -> u64 {
    runs.fetch_add(1, SeqCst);
    id * 7
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_are_served_by_the_primary_that_owns_the_key() {
    let cluster = TestCluster::start();
    let cache = Cache::connect_cluster(cluster.seed_urls()).await.unwrap();
    assert_eq!(cache.backend_kind(), "redis-cluster");
    cache.ping().await.expect("every primary answers PING");

    let runs = AtomicUsize::new(0);
    for id in 0..40 {
        assert_eq!(user(&cache, &runs, id).await, id * 7);
    }
    assert_eq!(runs.load(SeqCst), 40, "one run per id");
    let hits_before = cache.stats().hits;
    let gets_before = get_calls(&cluster).await;
    for id in 0..40 {
        assert_eq!(user(&cache, &runs, id).await, id * 7);
    }
    assert_eq!(runs.load(SeqCst), 40, "every later call is a hit");
    assert_eq!(cache.stats().hits - hits_before, 40);
    let gets_after = get_calls(&cluster).await;
    let per_primary: Vec<u64> = gets_after
        .iter()
        .map(|(port, after)| after - gets_before[port])
        .collect();
    assert_eq!(
        per_primary.iter().sum::<u64>(),
        40,
        "one GET per hit, on the primaries: {per_primary:?}"
    );

    // Where the values live: read back from each primary with a plain client.
    let by_primary = cluster.keys_by_primary("cl:user:*").await;
    assert_spread(&by_primary, "#[cached] keys");
    let mut values = Vec::new();
    for (port, keys) in &by_primary {
        let mut node = cluster.node_client(*port).await;
        for key in keys {
            let raw: Vec<u8> = redis::cmd("GET")
                .arg(key)
                .query_async(&mut node)
                .await
                .unwrap();
            values.push(serde_json::from_slice::<u64>(&raw).unwrap());
            let pttl: i64 = redis::cmd("PTTL")
                .arg(key)
                .query_async(&mut node)
                .await
                .unwrap();
            assert!(
                (1..=120_000).contains(&pttl),
                "{key}: TTL {pttl} ms, not within 120 s"
            );
            assert!(matches!(
                cache.ttl(key).await.unwrap(),
                KeyTtl::ExpiresIn(_)
            ));
        }
    }
    values.sort_unstable();
    assert_eq!(values, (0..40).map(|id| id * 7).collect::<Vec<u64>>());

    // get_or_set on keys of every primary.
    let loads = AtomicUsize::new(0);
    for round in 0..2 {
        for id in 0..32u64 {
            let got = cache
                .get_or_set(&format!("cl:gos:{id}"), 60, || async {
                    loads.fetch_add(1, SeqCst);
                    format!("value {id}")
                })
                .await;
            assert_eq!(got, format!("value {id}"), "round {round}");
        }
    }
    assert_eq!(loads.load(SeqCst), 32, "the second round is all hits");
    let by_primary = cluster.keys_by_primary("cl:gos:*").await;
    assert_spread(&by_primary, "get_or_set keys");
    for (port, keys) in &by_primary {
        let mut node = cluster.node_client(*port).await;
        for key in keys {
            let id = key.strip_prefix("cl:gos:").unwrap();
            let raw: Vec<u8> = redis::cmd("GET")
                .arg(key)
                .query_async(&mut node)
                .await
                .unwrap();
            assert_eq!(
                serde_json::from_slice::<String>(&raw).unwrap(),
                format!("value {id}")
            );
            let pttl: i64 = redis::cmd("PTTL")
                .arg(key)
                .query_async(&mut node)
                .await
                .unwrap();
            assert!((1..=60_000).contains(&pttl), "{key}: TTL {pttl} ms");
        }
    }

    // delete() with keys on several nodes.
    let keys: Vec<String> = (0..32).map(|id| format!("cl:gos:{id}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    assert_eq!(cache.delete(&keys).await.unwrap(), 32);
    assert!(cluster.keys_on_primaries("cl:gos:*").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_invalidation_visits_every_primary_and_counts_exactly() {
    let cluster = TestCluster::start();
    let cache = cluster_cache(&cluster).await;
    let mut conn = cluster.client().await;

    // 100,000 keys under "cl:inv:", 2,000 decoys under neighbouring prefixes.
    // Keys that share a hash tag share a slot: one MSET per tag.
    const TAGS: u64 = 400;
    const PER_TAG: u64 = 250;
    for tag in 0..TAGS {
        let mut mset = redis::cmd("MSET");
        for i in 0..PER_TAG {
            mset.arg(format!("cl:inv:{{t{tag}}}:{i}")).arg(i);
        }
        for i in 0..5 {
            mset.arg(format!("cl:invx:{{t{tag}}}:{i}")).arg(i);
        }
        mset.query_async::<()>(&mut conn).await.unwrap();
    }
    assert_eq!(TAGS * PER_TAG, 100_000);
    let before = cluster.keys_by_primary("cl:inv:*").await;
    assert_spread(&before, "keys to invalidate");
    assert_eq!(before.values().map(Vec::len).sum::<usize>(), 100_000);

    assert_eq!(cache.invalidate_prefix("cl:inv:").await.unwrap(), 100_000);
    assert!(cluster.keys_on_primaries("cl:inv:*").await.is_empty());
    assert_eq!(
        cluster.keys_on_primaries("cl:invx:*").await.len(),
        (TAGS * 5) as usize,
        "keys under a neighbouring prefix are kept"
    );
    assert_eq!(
        cache.invalidate_prefix("cl:inv:").await.unwrap(),
        0,
        "nothing left to delete"
    );
    assert_eq!(
        cache.invalidate_all_keys().await.unwrap(),
        TAGS * 5,
        "every key of every primary"
    );
    assert!(cluster.keys_on_primaries("*").await.is_empty());
}

#[cached(ttl = 60, key_prefix = "cl:grp:", grouped, cache = cache, ignore(runs))]
async fn grouped_item(cache: &Cache, runs: &AtomicUsize, id: u64) -> u64 {
    runs.fetch_add(1, SeqCst);
    id + 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_functions_are_invalidated_by_one_increment() {
    let cluster = TestCluster::start();
    let cache = cluster_cache(&cluster).await;
    let runs = AtomicUsize::new(0);
    for _ in 0..2 {
        for id in 0..30 {
            assert_eq!(grouped_item(&cache, &runs, id).await, id + 1);
        }
    }
    assert_eq!(runs.load(SeqCst), 30, "the second round is all hits");
    assert_spread(
        &cluster.keys_by_primary("cl:grp:*").await,
        "grouped entries",
    );

    assert_eq!(cache.invalidate_group("cl:grp:").await.unwrap(), 1);
    for _ in 0..2 {
        for id in 0..30 {
            assert_eq!(grouped_item(&cache, &runs, id).await, id + 1);
        }
    }
    assert_eq!(
        runs.load(SeqCst),
        60,
        "every entry ran once more after the group's invalidation, then hit"
    );
}

#[cached(ttl = 60, key_prefix = "{cl:tag}:", grouped, cache = cache, ignore(runs))]
async fn tagged_item(cache: &Cache, runs: &AtomicUsize, id: u64) -> u64 {
    runs.fetch_add(1, SeqCst);
    id + 2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_tag_keeps_a_group_on_one_primary_with_one_round_trip_hits() {
    let cluster = TestCluster::start();
    let cache = cluster_cache(&cluster).await;
    let runs = AtomicUsize::new(0);
    for id in 0..20 {
        assert_eq!(tagged_item(&cache, &runs, id).await, id + 2);
    }
    let owner = cluster.primary_for_key("{cl:tag}:@generation");
    let mut node = cluster.node_client(owner.port).await;
    let before = command_counts(&mut node).await;
    for id in 0..20 {
        assert_eq!(tagged_item(&cache, &runs, id).await, id + 2);
    }
    assert_eq!(runs.load(SeqCst), 20, "the second round is all hits");
    let after = command_counts(&mut node).await;
    let delta = |name: &str| after.get(name).unwrap_or(&0) - before.get(name).unwrap_or(&0);
    assert_eq!(delta("evalsha"), 20, "one script call per hit");
    assert_eq!(
        delta("get"),
        40,
        "the script's two reads, counted by the server as commands"
    );
    let by_primary = cluster.keys_by_primary("{cl:tag}:*").await;
    assert_eq!(
        by_primary.get(&owner.port).map(Vec::len),
        Some(20),
        "every entry on the tag's primary: {by_primary:?}"
    );
    assert_eq!(cache.invalidate_group("{cl:tag}:").await.unwrap(), 1);
    tagged_item(&cache, &runs, 0).await;
    assert_eq!(runs.load(SeqCst), 21);
}

struct Probe {
    runs: AtomicUsize,
    gate: Semaphore,
}

#[cached(ttl = 60, key_prefix = "cl:lease:", lease = 30, cache = cache, ignore(probe))]
async fn leased(cache: &Cache, probe: &Probe, id: u64) -> u64 {
    if probe.runs.fetch_add(1, SeqCst) == 0 {
        let _permit = probe.gate.acquire().await;
    }
    id * 100
}

/// Runs `leased` in a thread with its own runtime and its own cache.
fn process(seeds: Vec<String>, probe: Arc<Probe>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let cache = Cache::connect_cluster(seeds).await.unwrap();
            leased(&cache, &probe, 1).await
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_across_two_caches_runs_the_body_once() {
    let cluster = TestCluster::start();
    let key = leased_key(&Cache::in_memory(), 1).await.unwrap();
    let owner = cluster.primary_for_key(&key);
    let mut node = cluster.node_client(owner.port).await;
    let probe = Arc::new(Probe {
        runs: AtomicUsize::new(0),
        gate: Semaphore::new(0),
    });

    let first = process(cluster.seed_urls(), probe.clone());
    until(
        "the first cache holds the key with its placeholder (the lease)",
        async || {
            let held: Option<Vec<u8>> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut node)
                .await
                .unwrap();
            held.is_some_and(|bytes| redis_memo::is_placeholder(&bytes))
        },
    )
    .await;
    let gets_before = gets(&mut node).await;
    let second = process(cluster.seed_urls(), probe.clone());
    until("the second cache waits, polling the key", async || {
        gets(&mut node).await > gets_before + 2
    })
    .await;

    probe.gate.add_permits(1);
    assert_eq!(first.join().unwrap(), 100);
    assert_eq!(second.join().unwrap(), 100);
    assert_eq!(probe.runs.load(SeqCst), 1, "one run across both caches");
    let stored: Option<Vec<u8>> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut node)
        .await
        .unwrap();
    assert_eq!(
        stored.as_deref(),
        Some(&b"100"[..]),
        "the value replaced the placeholder"
    );
}
#[cached(ttl = 300, key_prefix = "cl:load:", cache = cache, ignore(runs))]
async fn under_load(cache: &Cache, runs: &AtomicUsize, id: u64) -> Result<u64, String> {
    runs.fetch_add(1, SeqCst);
    Ok(id * 3 + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_primary_costs_no_call_and_caching_resumes_after_promotion() {
    let mut cluster = TestCluster::start();
    let cache = cluster_cache(&cluster).await;
    let runs = Arc::new(AtomicUsize::new(0));
    for id in 0..64 {
        assert_eq!(under_load(&cache, &runs, id).await, Ok(id * 3 + 1));
    }
    cluster.wait_replicated().await;

    // The primary holding the most of the entries goes down under load.
    let by_primary = cluster.keys_by_primary("cl:load:*").await;
    assert_spread(&by_primary, "entries under load");
    let (&victim, _) = by_primary
        .iter()
        .max_by_key(|(_, keys)| keys.len())
        .unwrap();

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let wrong = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for task in 0..64u64 {
        let (cache, runs, stop) = (cache.clone(), runs.clone(), stop.clone());
        let (failed, wrong, calls) = (failed.clone(), wrong.clone(), calls.clone());
        tasks.push(tokio::spawn(async move {
            let mut id = task;
            while !stop.load(SeqCst) {
                match under_load(&cache, &runs, id).await {
                    Ok(value) if value == id * 3 + 1 => {}
                    Ok(_) => {
                        wrong.fetch_add(1, SeqCst);
                    }
                    Err(_) => {
                        failed.fetch_add(1, SeqCst);
                    }
                }
                calls.fetch_add(1, SeqCst);
                id = (id + 1) % 64;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }));
    }
    until("the load is running", async || calls.load(SeqCst) > 2000).await;
    tokio::task::block_in_place(|| cluster.kill(victim));
    // Until a replica takes over, the dead primary fails `ping`.
    until("ping reports the killed primary", async || {
        cache.ping().await.is_err()
    })
    .await;
    let promoted = tokio::task::block_in_place(|| cluster.wait_until_promoted(victim));
    assert_ne!(promoted.port, victim);

    // Caching resumes: a call whose key lives on the promoted primary is
    // stored, and the next call for it is a hit.
    let mut fresh = 1_000u64;
    let key = loop {
        let key = under_load_key(&cache, fresh).await.unwrap();
        if tokio::task::block_in_place(|| cluster.primary_for_key(&key)).port == promoted.port {
            break key;
        }
        fresh += 1;
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // A miss (the entry deleted first), then a hit: the body of this
        // call runs once, and the cache stored its value.
        cache.delete(&[&key]).await.ok();
        let fresh_runs = AtomicUsize::new(0);
        let stores = cache.stats().stores;
        assert_eq!(
            under_load(&cache, &fresh_runs, fresh).await,
            Ok(fresh * 3 + 1)
        );
        assert_eq!(
            under_load(&cache, &fresh_runs, fresh).await,
            Ok(fresh * 3 + 1)
        );
        if fresh_runs.load(SeqCst) == 1 && cache.stats().stores > stores {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "caching did not resume on the promoted primary {}",
            promoted.port
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    stop.store(true, SeqCst);
    for task in tasks {
        task.await.expect("no load task panicked");
    }
    assert_eq!(failed.load(SeqCst), 0, "no call failed");
    assert_eq!(wrong.load(SeqCst), 0, "no call returned a wrong value");
    let mut node = cluster.node_client(promoted.port).await;
    let raw: Vec<u8> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut node)
        .await
        .unwrap();
    assert_eq!(serde_json::from_slice::<u64>(&raw).unwrap(), fresh * 3 + 1);

    // Prefix invalidation follows the new topology: the promoted primary is
    // scanned, the dead one is not asked.
    let stored = cluster.keys_on_primaries("cl:load:*").await.len() as u64;
    assert!(stored > 0, "entries are stored after the failover");
    assert_eq!(cache.invalidate_prefix("cl:load:").await.unwrap(), stored);
    assert!(cluster.keys_on_primaries("cl:load:*").await.is_empty());
    cache
        .ping()
        .await
        .expect("every primary of the new topology answers");
}

/// How many `GET`s the server ran.
async fn gets(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    command_counts(conn).await.get("get").copied().unwrap_or(0)
}

/// One dead primary trips the breaker of its own slots only: the other
/// shards keep caching (a hit is still a hit there, not a skipped read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_primary_does_not_switch_off_the_healthy_shards() {
    let mut cluster = TestCluster::start();
    let cache = Cache::builder()
        .cluster_nodes(cluster.seed_urls())
        .response_timeout(Duration::from_millis(300))
        // Long enough that no probe closes a breaker during the test.
        .circuit_breaker(3, Duration::from_secs(600))
        .build()
        .await
        .expect("connect to the test cluster");
    let call = async |key: &str, n: u64| cache.get_or_set(key, 600, || async move { n * 11 }).await;
    let keys: Vec<String> = (0..120).map(|n| format!("shard:{n}")).collect();
    for (n, key) in keys.iter().enumerate() {
        assert_eq!(call(key, n as u64).await, n as u64 * 11);
    }
    let victim = cluster.primary_for_key(&keys[0]).port;
    let ranges = cluster.slot_ranges();
    let owned_by = |slot: u16, port: u16| {
        ranges
            .iter()
            .any(|&((start, end), owner)| owner == port && (start..=end).contains(&slot))
    };
    // Keys served by another primary whose whole range of 256 slots (one
    // breaker) that primary serves too: no victim slot shares their breaker.
    let healthy: Vec<(usize, &String)> = keys
        .iter()
        .enumerate()
        .filter(|(_, key)| {
            let slot = cluster.key_slot(key);
            let first = slot / 256 * 256;
            let owner = cluster.primary_for_key(key).port;
            owner != victim && owned_by(first, owner) && owned_by(first + 255, owner)
        })
        .collect();
    assert!(
        healthy.len() >= 20,
        "keys on the healthy primaries: {}",
        healthy.len()
    );

    cluster.kill(victim);
    until("the dead shard's breaker opens", async || {
        assert_eq!(call(&keys[0], 0).await, 0, "fail-open");
        cache.stats().breaker_trips > 0
    })
    .await;
    assert!(cache.stats().breaker_open);
    assert_eq!(
        cache.stats().misconfigured,
        0,
        "a shard failing over is an outage, not a misconfiguration"
    );

    let before = cache.stats();
    for &(n, key) in &healthy {
        assert_eq!(call(key, n as u64).await, n as u64 * 11);
    }
    let after = cache.stats();
    assert_eq!(
        after.breaker_skipped, before.breaker_skipped,
        "no healthy shard skipped: {after:?}"
    );
    assert_eq!(
        after.hits - before.hits,
        healthy.len() as u64,
        "every call on a healthy shard is a hit: {after:?}"
    );
}
