//! Prefix invalidation at scale, and what Redis's other clients see meanwhile.
//!
//! `cargo bench -p redis-memo-benches --bench invalidate`
//!
//! Fills a private redis-server with `BENCH_KEYS` (default 1,000,000) keys
//! under one prefix plus 10% decoys, then runs `invalidate_prefix` while a
//! second connection PINGs Redis in a loop, and prints keys/s and the PING
//! latency percentiles during the run against an idle baseline.
//!
//! Then the opt-in group invalidation (`grouped = true`): the same number of
//! entries dropped with one `invalidate_group` call, and what grouping costs
//! a hit (a script reading the generation and the value in one round trip)
//! against a plain `GET`.
//!
//! Then the same prefix invalidation on a Redis Cluster (three primaries and
//! their replicas, started by the bench): `BENCH_CLUSTER_KEYS` (default
//! 1,000,000) keys spread over every slot, plus 10% decoys, with one PING
//! loop on each primary, whose percentiles are printed per primary.
//! `BENCH_CLUSTER=0` skips it.

use redis_memo_test_support as support;

use redis_memo::{Cache, cached};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

async fn ping_until(
    conn: redis::aio::MultiplexedConnection,
    stop: Arc<AtomicBool>,
) -> Vec<Duration> {
    let mut conn = conn;
    let mut samples = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .expect("PING");
        samples.push(start.elapsed());
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    samples.sort_unstable();
    samples
}

#[cached(ttl = 3600, key_prefix = "plain:", cache = cache)]
async fn plain_user(cache: &Cache, id: u64) -> String {
    format!("user {id}")
}

#[cached(ttl = 3600, key_prefix = "grouped:", grouped, cache = cache)]
async fn grouped_user(cache: &Cache, id: u64) -> String {
    format!("user {id}")
}

async fn hit_latencies(cache: &Cache, grouped: bool, calls: u64) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(calls as usize);
    for i in 0..calls {
        let start = Instant::now();
        if grouped {
            grouped_user(cache, i % 1000).await;
        } else {
            plain_user(cache, i % 1000).await;
        }
        samples.push(start.elapsed());
    }
    samples
}

fn q(sorted: &[Duration], q: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1e3
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: u64 = std::env::var("BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let redis = support::TestRedis::spawn(&[]);
    let client = redis::Client::open(redis.url()).expect("URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let fill = Instant::now();
    let mut i = 0;
    while i < n {
        let mut mset = redis::cmd("MSET");
        for j in i..(i + 1000).min(n) {
            mset.arg(format!("users:app::user_profile:{j:064x}"))
                .arg("{\"id\":1}");
            if j % 10 == 0 {
                mset.arg(format!("usersX:decoy:{j}")).arg("1");
            }
        }
        mset.query_async::<()>(&mut conn).await.expect("MSET");
        i += 1000;
    }
    println!(
        "filled {n} keys (+{} decoys) in {:.1} s",
        n / 10,
        fill.elapsed().as_secs_f64()
    );

    // Idle baseline for PING.
    let stop = Arc::new(AtomicBool::new(false));
    let pinger = tokio::spawn(ping_until(
        client
            .get_multiplexed_async_connection()
            .await
            .expect("conn"),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let idle = pinger.await.expect("pinger");

    let cache = redis.cache().await;
    let stop = Arc::new(AtomicBool::new(false));
    let pinger = tokio::spawn(ping_until(
        client
            .get_multiplexed_async_connection()
            .await
            .expect("conn"),
        stop.clone(),
    ));
    let start = Instant::now();
    let deleted = cache.invalidate_prefix("users:").await.expect("invalidate");
    let took = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let busy = pinger.await.expect("pinger");
    assert_eq!(deleted, n, "exactly the prefix's keys");
    let left: u64 = redis::cmd("DBSIZE")
        .query_async(&mut conn)
        .await
        .expect("DBSIZE");
    assert_eq!(left, n / 10, "the decoys stay");

    println!(
        "invalidate_prefix: {deleted} keys in {:.2} s = {:.0} keys/s",
        took.as_secs_f64(),
        deleted as f64 / took.as_secs_f64()
    );
    println!(
        "PING while idle:        p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms  ({} pings)",
        q(&idle, 0.5),
        q(&idle, 0.99),
        q(&idle, 1.0),
        idle.len()
    );
    println!(
        "PING during invalidate: p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms  ({} pings)",
        q(&busy, 0.5),
        q(&busy, 0.99),
        q(&busy, 1.0),
        busy.len()
    );

    // Group invalidation: the same number of entries, dropped in one step.
    let mut i = 0;
    while i < n {
        let mut mset = redis::cmd("MSET");
        for j in i..(i + 1000).min(n) {
            mset.arg(format!("grouped:@0:app::user_profile:{j:064x}"))
                .arg("{\"id\":1}");
        }
        mset.query_async::<()>(&mut conn).await.expect("MSET");
        i += 1000;
    }
    let start = Instant::now();
    let generation = cache
        .invalidate_group("grouped:")
        .await
        .expect("invalidate_group");
    let took = start.elapsed();
    println!(
        "invalidate_group: {n} entries retired in {:.3} ms (generation {generation}; the old entries expire with their TTL)",
        took.as_secs_f64() * 1e3
    );

    // What grouping costs a hit, against a plain GET, in alternating rounds.
    for id in 0..1000 {
        plain_user(&cache, id).await;
        grouped_user(&cache, id).await;
    }
    let (mut plain, mut grouped) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        plain.extend(hit_latencies(&cache, false, 2000).await);
        grouped.extend(hit_latencies(&cache, true, 2000).await);
    }
    plain.sort_unstable();
    grouped.sort_unstable();
    println!(
        "hit, plain key:   p50 {:.1} us  p99 {:.1} us",
        q(&plain, 0.5) * 1e3,
        q(&plain, 0.99) * 1e3
    );
    println!(
        "hit, grouped key: p50 {:.1} us  p99 {:.1} us  ({:.3}x / {:.3}x of plain)",
        q(&grouped, 0.5) * 1e3,
        q(&grouped, 0.99) * 1e3,
        q(&grouped, 0.5) / q(&plain, 0.5),
        q(&grouped, 0.99) / q(&plain, 0.99)
    );

    if env_or("BENCH_CLUSTER", 1) != 0 {
        cluster_invalidation(env_or("BENCH_CLUSTER_KEYS", 1_000_000)).await;
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The Redis Cluster slot of a key without a hash tag.
fn slot(key: &str) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(key.as_bytes()) % 16384
}

/// `n` keys under `users:` and `n / 10` decoys, each written to the primary
/// that owns its slot, pipelined 1,000 at a time per primary.
async fn fill_cluster(cluster: &support::TestCluster, n: u64) {
    let primaries = cluster.primaries();
    let owner = |key: &str| {
        let slot = slot(key);
        primaries
            .iter()
            .position(|p| p.slots.iter().any(|&(a, b)| (a..=b).contains(&slot)))
            .expect("every slot is served")
    };
    let mut conns = Vec::new();
    for primary in &primaries {
        conns.push(cluster.node_client(primary.port).await);
    }
    let mut pipes: Vec<(redis::Pipeline, usize)> =
        primaries.iter().map(|_| (redis::pipe(), 0)).collect();
    let keys = (0..n)
        .map(|j| format!("users:app::user_profile:{j:064x}"))
        .chain((0..n / 10).map(|j| format!("usersX:decoy:{j}")));
    for key in keys {
        let node = owner(&key);
        let (pipe, queued) = &mut pipes[node];
        pipe.cmd("SET").arg(key).arg("{\"id\":1}").ignore();
        *queued += 1;
        if *queued == 1000 {
            pipe.query_async::<()>(&mut conns[node]).await.expect("SET");
            *pipe = redis::pipe();
            *queued = 0;
        }
    }
    for ((pipe, _), conn) in pipes.iter().zip(&mut conns) {
        pipe.query_async::<()>(conn).await.expect("SET");
    }
}

async fn cluster_invalidation(n: u64) {
    let cluster = support::TestCluster::start();
    let fill = Instant::now();
    fill_cluster(&cluster, n).await;
    let primaries = cluster.primaries();
    let mut sizes = Vec::new();
    for primary in &primaries {
        let size: u64 = redis::cmd("DBSIZE")
            .query_async(&mut cluster.node_client(primary.port).await)
            .await
            .expect("DBSIZE");
        sizes.push(size);
    }
    println!(
        "\ncluster: filled {n} keys (+{} decoys) in {:.1} s, per primary {sizes:?}",
        n / 10,
        fill.elapsed().as_secs_f64()
    );
    let cache = Cache::builder()
        .cluster_nodes(cluster.seed_urls())
        .build()
        .await
        .expect("connect to the bench cluster");

    let stop = Arc::new(AtomicBool::new(false));
    let mut pingers = Vec::new();
    for primary in &primaries {
        let conn = cluster.node_client(primary.port).await;
        pingers.push(tokio::spawn(ping_until(conn, stop.clone())));
    }
    let start = Instant::now();
    let deleted = cache.invalidate_prefix("users:").await.expect("invalidate");
    let took = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    assert_eq!(deleted, n, "exactly the prefix's keys");
    let decoys = cluster.keys_on_primaries("usersX:*").await.len() as u64;
    assert_eq!(decoys, n / 10, "the decoys stay");
    println!(
        "cluster invalidate_prefix: {deleted} keys over {} primaries in {:.2} s = {:.0} keys/s",
        primaries.len(),
        took.as_secs_f64(),
        deleted as f64 / took.as_secs_f64()
    );
    for (primary, pinger) in primaries.iter().zip(pingers) {
        let busy = pinger.await.expect("pinger");
        println!(
            "PING primary {} during invalidate: p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms  ({} pings)",
            primary.port,
            q(&busy, 0.5),
            q(&busy, 0.99),
            q(&busy, 1.0),
            busy.len()
        );
    }
}
