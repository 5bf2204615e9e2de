//! Hot path: redis-memo against a hand-written redis-rs GET + serde_json, on
//! the same server in the same run, and against the `cached` crate's Redis store.
//!
//! `cargo bench -p redis-memo-benches --bench hot_path`
//!
//! Workload: `get_user(id)` returning a ~90-byte struct, 1,000 warm ids.
//! Phases: hit latency at concurrency 1, hit throughput at 64 tasks, miss
//! latency at concurrency 1, key derivation + decode, and the single-flight map
//! after 1,000,000 distinct keys. Every figure is printed with its ratio to
//! raw GET on a `MultiplexedConnection` ("raw-mux", a hand-written key
//! `bench:raw:user:{id}`), and the hit figures also with their ratio to a raw
//! GET of redis-memo's own key on the connection type redis-memo uses
//! ("raw-mux same key", a `MultiplexedConnection`; the `raw-cm` rows show a
//! `ConnectionManager`, what the `cached` crate uses): the first says what a user
//! pays against hand-written code, the second what the library adds on the
//! wire it shares with such code (same key bytes, same connection type).
//!
//! Then the same hits on a Redis Cluster (three primaries and their replicas,
//! started by the bench): hit throughput at 64 tasks through `#[cached]` and
//! `get_or_set` against a hand-written GET + serde_json of the same keys on a
//! redis-rs `cluster_async::ClusterConnection`, in the same run, variants
//! interleaved; and against the same client with redis-memo's default bounds
//! (connect and response timeouts), which cost each command a timer.
//!
//! Environment: `BENCH_SECONDS` (throughput phase length, default 5),
//! `BENCH_CALLS` (latency samples per variant, default 20000), `REDIS_URL`
//! (use that server instead of starting one), `BENCH_CLUSTER=0` (skip the
//! cluster run) or `BENCH_CLUSTER=only` (only the cluster run).

mod common;
use redis_memo_test_support as support;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cached::AsyncRedisCache;
use cached::macros::concurrent_cached;
use common::*;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis_memo::{Cache, cached as memo};

static URL: OnceLock<String> = OnceLock::new();

// --- the variants -------------------------------------------------------------------

#[memo(ttl = 3600, key_prefix = "bench:", cache = cache)]
async fn memo_get_user(cache: &Cache, id: u64) -> User {
    make_user(id)
}

#[derive(Debug, Clone, PartialEq)]
struct BenchError(String);

#[concurrent_cached(
    map_error = r##"|e| BenchError(format!("{e:?}"))"##,
    ty = "cached::AsyncRedisCache<u64, User>",
    create = r##" {
        AsyncRedisCache::builder("bench_cached_crate")
            .ttl(std::time::Duration::from_secs(3600))
            .connection_string(URL.get().expect("URL is set before the first call"))
            .build()
            .await
            .expect("the cached crate's Redis store connects")
    } "##
)]
async fn cached_crate_get_user(id: u64) -> Result<User, BenchError> {
    Ok(make_user(id))
}

fn raw_key(id: u64) -> String {
    format!("bench:raw:user:{id}")
}

/// A hand-written GET + serde_json of `key`, on either connection type.
async fn raw_get_key<C: redis::aio::ConnectionLike + Clone>(conn: &C, key: &str) -> User {
    let mut conn = conn.clone();
    let bytes: Option<Vec<u8>> = redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .expect("GET");
    serde_json::from_slice(&bytes.expect("warm key")).expect("JSON")
}

/// Hand-written hits on `conn`: a GET + serde_json of `key(id)` for the warm
/// ids. Like hand-written code (and like redis-memo), each call builds its key.
fn raw_variant<C, K>(conn: &C, key: K) -> Variant
where
    C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
    K: Fn(u64) -> String + Send + Sync + 'static,
{
    let conn = conn.clone();
    variant(move |id| {
        let (conn, key) = (conn.clone(), key(id % IDS));
        async move {
            raw_get_key(&conn, &key).await;
        }
    })
}

/// A hand-written miss: GET (nothing), compute, SET EX.
async fn raw_miss_mux(conn: &MultiplexedConnection, id: u64) -> User {
    let mut conn = conn.clone();
    let key = format!("bench:rawmiss:{id}");
    let bytes: Option<Vec<u8>> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("GET");
    assert!(bytes.is_none(), "cold key");
    let user = make_user(id);
    store_user(&conn, &key, &user).await;
    user
}

// --- measurement --------------------------------------------------------------------

/// Per-call latencies of each variant. The variants take turns call by call
/// (in an order that changes every round), so that drift on a noisy machine
/// hits every variant alike.
async fn latencies(
    variants: &[(&str, Variant)],
    calls: u64,
    rounds: u64,
    first_id: impl Fn(u64) -> u64,
) -> Vec<Vec<Duration>> {
    let mut samples = vec![Vec::with_capacity(calls as usize); variants.len()];
    let per_round = calls / rounds;
    for round in 0..rounds {
        let order = round_order(variants.len(), round);
        for i in 0..per_round {
            for &v in &order {
                let id = first_id(v as u64) + round * per_round + i;
                let start = Instant::now();
                variants[v].1(id).await;
                samples[v].push(start.elapsed());
            }
        }
    }
    for s in &mut samples {
        s.sort_unstable();
    }
    samples
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let calls = env_or("BENCH_CALLS", 20_000.0) as u64;
    let seconds = env_or("BENCH_SECONDS", 5.0) as u64;
    if std::env::var("BENCH_CLUSTER").is_ok_and(|v| v == "only") {
        cluster_hits(seconds).await;
        return;
    }
    let redis = support::TestRedis::start();
    URL.set(redis.url().to_string()).expect("set once");
    let client = redis::Client::open(redis.url()).expect("URL");
    let mux = client
        .get_multiplexed_async_connection()
        .await
        .expect("mux");
    let cm = ConnectionManager::new(client.clone()).await.expect("cm");
    let cache = redis.cache().await;
    cache.invalidate_prefix("bench:").await.expect("clean");

    // Warm every variant on the same 1,000 ids, all with the same TTL (Redis
    // looks a key up once more when it has one).
    for id in 0..IDS {
        store_user(&mux, &raw_key(id), &make_user(id)).await;
        memo_get_user(&cache, id).await;
        cached_crate_get_user(id).await.expect("cached crate warm");
    }
    println!(
        "value size: {} bytes of JSON",
        serde_json::to_vec(&make_user(500)).expect("JSON").len()
    );
    let mut memo_keys = Vec::new();
    for id in 0..IDS {
        memo_keys.push(memo_get_user_key(&cache, id).await.expect("key"));
    }
    println!(
        "keys: raw-mux `{}` ({} bytes), redis-memo `{}` ({} bytes)",
        raw_key(1),
        raw_key(1).len(),
        memo_keys[1],
        memo_keys[1].len()
    );
    let memo_keys = Arc::new(memo_keys);

    let hit_variants: Vec<(&str, Variant)> = vec![
        ("raw-mux", raw_variant(&mux, raw_key)),
        ("raw-cm", raw_variant(&cm, raw_key)),
        ("raw-mux same key", {
            let keys = memo_keys.clone();
            raw_variant(&mux, move |id| keys[id as usize].clone())
        }),
        ("raw-cm same key", {
            let keys = memo_keys.clone();
            raw_variant(&cm, move |id| keys[id as usize].clone())
        }),
        ("redis-memo", {
            let cache = cache.clone();
            variant(move |id| {
                let cache = cache.clone();
                async move {
                    memo_get_user(&cache, id % IDS).await;
                }
            })
        }),
        (
            "cached",
            variant(|id| async move {
                cached_crate_get_user(id % IDS).await.expect("hit");
            }),
        ),
    ];
    // The column "same-key" divides by this variant (redis-memo's own keys
    // on the connection type it uses).
    let same_key = 2;

    // Hit latency, concurrency 1.
    let lat = latencies(&hit_variants, calls, 10, |_| 0).await;
    let p = |v: usize, q: f64| us(quantile(&lat[v], q));
    println!(
        "\nhit latency, concurrency 1, {calls} calls per variant, variants taking turns call by call"
    );
    println!(
        "{:<18} {:>8} {:>7} {:>9} {:>8} {:>7} {:>9}",
        "variant", "p50 us", "ratio", "same-key", "p99 us", "ratio", "same-key"
    );
    for (v, (name, _)) in hit_variants.iter().enumerate() {
        println!(
            "{name:<18} {:>8.1} {:>6.3}x {:>8.3}x {:>8.1} {:>6.3}x {:>8.3}x",
            p(v, 0.5),
            p(v, 0.5) / p(0, 0.5),
            p(v, 0.5) / p(same_key, 0.5),
            p(v, 0.99),
            p(v, 0.99) / p(0, 0.99),
            p(v, 0.99) / p(same_key, 0.99),
        );
    }

    // Hit throughput, 64 tasks.
    println!("\nhit throughput, 64 tasks, {seconds} s per variant in 0.25 s alternating rounds");
    let rates = throughputs(&hit_variants, 64, seconds).await;
    println!(
        "{:<18} {:>10} {:>7} {:>9}",
        "variant", "calls/s", "ratio", "same-key"
    );
    for ((name, _), rate) in hit_variants.iter().zip(&rates) {
        println!(
            "{name:<18} {rate:>10.0} {:>6.3}x {:>8.3}x",
            rate / rates[0],
            rate / rates[same_key]
        );
    }

    // Miss latency, concurrency 1: GET + body + SET, on ids never seen before.
    let misses = (calls / 4).max(1000);
    let miss_variants: Vec<(&str, Variant)> = vec![
        ("raw GET+SET mux", {
            let mux = mux.clone();
            variant(move |id| {
                let mux = mux.clone();
                async move {
                    raw_miss_mux(&mux, id).await;
                }
            })
        }),
        ("redis-memo", {
            let cache = cache.clone();
            variant(move |id| {
                let cache = cache.clone();
                async move {
                    memo_get_user(&cache, id).await;
                }
            })
        }),
        (
            "cached",
            variant(|id| async move {
                cached_crate_get_user(id).await.expect("miss");
            }),
        ),
    ];
    let lat = latencies(&miss_variants, misses, 10, |v| 1_000_000 * (v + 1)).await;
    let (base_p50, base_p99) = (quantile(&lat[0], 0.5), quantile(&lat[0], 0.99));
    println!(
        "\nmiss latency, concurrency 1, {misses} cold ids per variant, taking turns call by call"
    );
    println!(
        "{:<16} {:>9} {:>7} {:>9} {:>7}",
        "variant", "p50 us", "ratio", "p99 us", "ratio"
    );
    for ((name, _), samples) in miss_variants.iter().zip(&lat) {
        let (p50, p99) = (quantile(samples, 0.5), quantile(samples, 0.99));
        println!(
            "{name:<16} {:>9.1} {:>6.3}x {:>9.1} {:>6.3}x",
            us(p50),
            us(p50) / us(base_p50),
            us(p99),
            us(p99) / us(base_p99)
        );
    }

    // Key derivation + value decode, no I/O.
    let json = serde_json::to_vec(&make_user(42)).expect("JSON");
    let n = 1_000_000u32;
    let start = Instant::now();
    let mut sink = 0usize;
    for i in 0..n {
        let mut args = redis_memo::key::KeyBuilder::new();
        args.arg(&u64::from(i)).arg("a ~20 byte argument");
        let name = redis_memo::__private::FnName::Free {
            module: "bench",
            function: "get_user",
        };
        sink += args.finish("bench:", &name).expect("key").len();
        let user: User = serde_json::from_slice(&json).expect("decode");
        sink += user.name.len();
    }
    let per_call = start.elapsed() / n;
    println!(
        "\nkey derivation + decode: {:.0} ns per call ({sink} bytes touched)",
        per_call.as_nanos()
    );

    // Single-flight state after 1,000,000 distinct keys (in memory: no I/O).
    let memory = Cache::in_memory();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..4u64 {
        let memory = memory.clone();
        tasks.push(tokio::spawn(async move {
            for id in (t * 250_000)..((t + 1) * 250_000) {
                memo_get_user(&memory, id).await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    println!(
        "1,000,000 distinct keys in {:.1} s: keys in flight afterwards = {}",
        start.elapsed().as_secs_f64(),
        memory.in_flight()
    );
    cache.invalidate_prefix("bench").await.expect("clean up");

    if env_or("BENCH_CLUSTER", 1.0) != 0.0 {
        cluster_hits(seconds).await;
    }
}

/// Hit throughput at 64 tasks on a Redis Cluster: redis-memo (`#[cached]`
/// and `get_or_set`) against a raw `ClusterConnection` GET + serde_json of
/// the same keys.
async fn cluster_hits(seconds: u64) {
    let cluster = support::TestCluster::start();
    let cache = Cache::builder()
        .cluster_nodes(cluster.seed_urls())
        .build()
        .await
        .expect("connect to the bench cluster");
    let raw = cluster.client().await;
    // The same client with the bounds redis-memo puts on every command by
    // default: what the library costs beyond bounding each call.
    let raw_bounded = redis::cluster::ClusterClient::builder(cluster.seed_urls())
        .connection_timeout(redis_memo::DEFAULT_CONNECT_TIMEOUT)
        .overall_response_timeout(Some(redis_memo::DEFAULT_RESPONSE_TIMEOUT))
        .build()
        .expect("cluster client")
        .get_async_connection()
        .await
        .expect("bounded cluster connection");
    let gos_key = |id: u64| format!("bench:gos:user:{id}");
    let mut memo_keys = Vec::new();
    for id in 0..IDS {
        memo_get_user(&cache, id).await;
        let _: User = cache
            .get_or_set(&gos_key(id), 3600, || async move { make_user(id) })
            .await;
        memo_keys.push(memo_get_user_key(&cache, id).await.expect("key"));
    }
    let memo_keys = Arc::new(memo_keys);
    let variants: Vec<(&str, Variant)> = vec![
        ("raw cluster", {
            let keys = memo_keys.clone();
            raw_variant(&raw, move |id| keys[id as usize].clone())
        }),
        ("#[cached]", {
            let cache = cache.clone();
            variant(move |id| {
                let cache = cache.clone();
                async move {
                    memo_get_user(&cache, id % IDS).await;
                }
            })
        }),
        ("raw cluster bounded", {
            let keys = memo_keys.clone();
            raw_variant(&raw_bounded, move |id| keys[id as usize].clone())
        }),
        ("#[cached] (again)", {
            let cache = cache.clone();
            variant(move |id| {
                let cache = cache.clone();
                async move {
                    memo_get_user(&cache, id % IDS).await;
                }
            })
        }),
        ("raw cluster gos key", raw_variant(&raw, gos_key)),
        ("get_or_set", {
            let cache = cache.clone();
            variant(move |id| {
                let cache = cache.clone();
                async move {
                    let id = id % IDS;
                    let key = gos_key(id);
                    let _: User = cache
                        .get_or_set(&key, 3600, || async move { make_user(id) })
                        .await;
                }
            })
        }),
    ];
    println!(
        "\ncluster (3 primaries + 3 replicas) hit throughput, 64 tasks, {seconds} s per variant in \
         0.25 s alternating rounds; each redis-memo variant against the raw GET of its own keys"
    );
    let rates = throughputs(&variants, 64, seconds).await;
    println!("{:<20} {:>10} {:>7}", "variant", "calls/s", "ratio");
    for (v, ((name, _), rate)) in variants.iter().zip(&rates).enumerate() {
        let baseline = rates[v - v % 2];
        println!("{name:<20} {rate:>10.0} {:>6.3}x", rate / baseline);
    }
    let stats = cache.stats();
    assert_eq!(stats.errors + stats.misconfigured, 0, "{stats:?}");
}
