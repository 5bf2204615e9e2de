//! The local tier against the floors it is measured by, in one run: a
//! hand-written redis-rs GET + serde_json on a `MultiplexedConnection`
//! ("raw-mux") and a raw moka `get_with` + clone of the same value ("raw
//! moka", the in-process floor); the in-memory backend next to them; and how
//! long a change made on another connection takes to reach a local tier.
//!
//! `cargo bench -p redis-memo-benches --bench local_tier`
//!
//! Workload: `get_user(id)` returning a ~90-byte struct, 1,000 warm ids.
//! Phases: hit latency at concurrency 1 (variants taking turns call by call,
//! then every 500 calls),
//! hit throughput at 64 tasks (alternating quarter-second rounds), and
//! coherence: a `DEL` on a plain connection (another process, as far as the
//! cache can tell), timed until the handle with a local tier serves the new
//! value.
//!
//! Then how many keys a tier is told about while another client writes
//! 100,000 keys outside its prefixes, and the same hit and coherence phases
//! on a Redis Cluster (`local_tier_cluster.rs`): local hits against a raw
//! `ClusterConnection` GET, and a `DEL` on any primary until the tier serves
//! the new value.
//!
//! Environment: `BENCH_SECONDS` (throughput phase length, default 5),
//! `BENCH_CALLS` (latency samples per variant, default 20000),
//! `BENCH_INVALIDATIONS` (coherence samples, default 2000),
//! `BENCH_UNRELATED` (unrelated writes, default 100000), `BENCH_CLUSTER=0`
//! (skip the cluster) or `only` (only the cluster), `REDIS_URL`.

mod common;
mod local_tier_cluster;
use redis_memo_test_support as support;

use std::time::{Duration, Instant};

use common::*;
use redis::aio::MultiplexedConnection;
use redis_memo::{Cache, cached as memo};

#[memo(ttl = 3600, key_prefix = "benchlocal:", cache = cache)]
async fn memo_get_user(cache: &Cache, id: u64) -> User {
    make_user(id)
}

fn raw_key(id: u64) -> String {
    format!("benchlocal:raw:user:{id}")
}

fn memo_variant(cache: &Cache) -> Variant {
    let cache = cache.clone();
    variant(move |id| {
        let cache = cache.clone();
        async move {
            std::hint::black_box(memo_get_user(&cache, id % IDS).await);
        }
    })
}

/// Per-call latencies of each variant, the variants taking turns every
/// `streak` calls: with 1 every call follows another variant's (caches and
/// branch predictors cold, as for a hit amid other work); with more, a call
/// mostly follows one of its own (warm, as in a loop of hits).
async fn latencies(
    variants: &[(&str, Variant)],
    calls: u64,
    rounds: u64,
    streak: u64,
) -> Vec<Vec<Duration>> {
    let mut samples = vec![Vec::with_capacity(calls as usize); variants.len()];
    let per_round = calls / rounds;
    for round in 0..rounds {
        let order = round_order(variants.len(), round);
        let mut done = 0;
        while done < per_round {
            let n = streak.min(per_round - done);
            for &v in &order {
                for i in done..done + n {
                    let start = Instant::now();
                    variants[v].1(round * per_round + i).await;
                    samples[v].push(start.elapsed());
                }
            }
            done += n;
        }
    }
    for s in &mut samples {
        s.sort_unstable();
    }
    samples
}

/// Prints the latency table of one [`latencies`] run.
fn print_latencies(
    variants: &[(&str, Variant)],
    lat: &[Vec<Duration>],
    raw_mux: usize,
    raw_moka: usize,
) {
    let p = |v: usize, q: f64| us(quantile(&lat[v], q));
    println!(
        "{:<12} {:>8} {:>9} {:>9} {:>8}",
        "variant", "p50 us", "/raw-mux", "/moka", "p99 us"
    );
    for (v, (name, _)) in variants.iter().enumerate() {
        println!(
            "{name:<12} {:>8.2} {:>8.3}x {:>8.3}x {:>8.2}",
            p(v, 0.5),
            p(v, 0.5) / p(raw_mux, 0.5),
            p(v, 0.5) / p(raw_moka, 0.5),
            p(v, 0.99),
        );
    }
}

/// Reads every id through `cache` until each read is a local hit (a miss's
/// writes echo back as invalidations, which may drop its first entry).
async fn warm_locally(cache: &Cache) {
    for id in 0..IDS {
        loop {
            let before = cache.stats().local_hits;
            memo_get_user(cache, id).await;
            if cache.stats().local_hits > before {
                break;
            }
        }
    }
}

/// Reads `key` through `cache` until a read is a local hit.
async fn hold_locally(cache: &Cache, key: &str) {
    loop {
        let before = cache.stats().local_hits;
        let _: u64 = cache.get_or_set(key, 3600, || async { 0 }).await;
        if cache.stats().local_hits > before {
            return;
        }
    }
}

/// The time from sending a `DEL` on `plain` to `cache` serving the new value
/// (its body runs and returns `round`), for `rounds` rounds, taking `keys`
/// in turn.
async fn coherence<C>(cache: &Cache, plain: &C, keys: &[String], rounds: u64) -> Vec<Duration>
where
    C: redis::aio::ConnectionLike + Clone + Send,
{
    let mut plain = plain.clone();
    let mut samples = Vec::with_capacity(rounds as usize);
    for key in keys {
        let _: u64 = cache.get_or_set(key, 3600, || async { 0 }).await;
    }
    for round in 1..=rounds {
        let key = &keys[round as usize % keys.len()];
        hold_locally(cache, key).await;
        let start = Instant::now();
        let _: u64 = redis::cmd("DEL")
            .arg(key)
            .query_async(&mut plain)
            .await
            .expect("DEL");
        loop {
            let seen: u64 = cache.get_or_set(key, 3600, || async move { round }).await;
            if seen == round {
                break;
            }
            tokio::task::yield_now().await;
        }
        samples.push(start.elapsed());
    }
    samples.sort_unstable();
    samples
}

/// Prints the quantiles of a [`coherence`] run.
fn print_coherence(samples: &[Duration]) {
    println!(
        "p50 {:.1} us, p90 {:.1} us, p99 {:.1} us, max {:.1} us",
        us(quantile(samples, 0.5)),
        us(quantile(samples, 0.9)),
        us(quantile(samples, 0.99)),
        us(quantile(samples, 1.0)),
    );
}

/// How many keys `cache`'s tier is told about while another client writes
/// `n` keys outside its prefixes: the writes, then a key of its own as a
/// marker (pushed after any push of those writes), counted from before to
/// the marker's push.
async fn unrelated_pushes(cache: &Cache, plain: &MultiplexedConnection, n: u64) -> u64 {
    let (mut plain, marker) = (plain.clone(), "benchlocal:marker");
    let _: u64 = cache.get_or_set(marker, 3600, || async { 1 }).await;
    // A change of the marker seen: every push before it has arrived, those
    // of the cache's own writes too.
    set_marker(cache, &mut plain, marker, 2).await;
    hold_locally(cache, marker).await;
    let before = cache.stats().local_pushes;
    for start in (0..n).step_by(1000) {
        let mut pipe = redis::pipe();
        for i in start..(start + 1000).min(n) {
            pipe.cmd("SET")
                .arg(format!("elsewhere:{i}"))
                .arg("x")
                .ignore();
        }
        let _: () = pipe.query_async(&mut plain).await.expect("SET");
    }
    set_marker(cache, &mut plain, marker, 3).await;
    cache.stats().local_pushes - before - 1
}

/// Sets `marker` to `value` with `plain`, and waits until `cache` serves it.
async fn set_marker(cache: &Cache, plain: &mut MultiplexedConnection, marker: &str, value: u64) {
    let _: () = redis::cmd("SET")
        .arg(marker)
        .arg(value)
        .query_async(plain)
        .await
        .expect("SET");
    while cache.get_or_set(marker, 3600, || async { 0 }).await != value {
        tokio::task::yield_now().await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let calls = env_or("BENCH_CALLS", 20_000.0) as u64;
    let seconds = env_or("BENCH_SECONDS", 5.0) as u64;
    let invalidations = env_or("BENCH_INVALIDATIONS", 2_000.0) as u64;
    let only_cluster = std::env::var("BENCH_CLUSTER").is_ok_and(|v| v == "only");
    if !only_cluster {
        standalone(calls, seconds, invalidations).await;
    }
    if only_cluster || env_or("BENCH_CLUSTER", 1.0) != 0.0 {
        local_tier_cluster::run(calls, seconds, invalidations).await;
    }
}

/// Every phase on a standalone server.
async fn standalone(calls: u64, seconds: u64, invalidations: u64) {
    let redis = support::TestRedis::start();
    let mux = redis.client().await;
    let local = Cache::builder()
        .url(redis.url())
        .local_cache(64 << 20)
        .build()
        .await
        .expect("connect with a local tier");
    assert!(local.stats().local_tracking, "tracking is on");
    let memory = Cache::in_memory();
    let moka: moka::future::Cache<u64, User> = moka::future::Cache::new(10_000);
    local.invalidate_prefix("benchlocal:").await.expect("clean");

    for id in 0..IDS {
        store_user(&mux, &raw_key(id), &make_user(id)).await;
        memo_get_user(&local, id).await;
        memo_get_user(&memory, id).await;
        moka.get_with(id, async move { make_user(id) }).await;
    }
    warm_locally(&local).await;
    println!(
        "value size: {} bytes of JSON; local tier: {} entries, {} bytes",
        serde_json::to_vec(&make_user(500)).expect("JSON").len(),
        local.stats().local_entries,
        local.stats().local_bytes
    );

    let variants: Vec<(&str, Variant)> = vec![
        ("raw-mux", raw_get_variant(&mux, raw_key)),
        ("raw moka", {
            let moka = moka.clone();
            variant(move |id| {
                let moka = moka.clone();
                async move {
                    let id = id % IDS;
                    let user = moka.get_with(id, async move { make_user(id) }).await;
                    std::hint::black_box(user.clone());
                }
            })
        }),
        ("local tier", memo_variant(&local)),
        ("in-memory", memo_variant(&memory)),
    ];
    let (raw_mux, raw_moka) = (0, 1);

    let lat = latencies(&variants, calls, 10, 1).await;
    println!(
        "\nhit latency, concurrency 1, {calls} calls per variant, taking turns call by call (cold)"
    );
    print_latencies(&variants, &lat, raw_mux, raw_moka);
    let lat = latencies(&variants, calls, 10, 500).await;
    println!(
        "\nhit latency, concurrency 1, {calls} calls per variant, taking turns every 500 calls (warm)"
    );
    print_latencies(&variants, &lat, raw_mux, raw_moka);

    println!("\nhit throughput, 64 tasks, {seconds} s per variant in 0.25 s alternating rounds");
    let rates = throughputs(&variants, 64, seconds).await;
    println!(
        "{:<12} {:>12} {:>9} {:>9}",
        "variant", "calls/s", "/raw-mux", "/moka"
    );
    for ((name, _), rate) in variants.iter().zip(&rates) {
        println!(
            "{name:<12} {rate:>12.0} {:>8.3}x {:>8.3}x",
            rate / rates[raw_mux],
            rate / rates[raw_moka]
        );
    }
    let stats = local.stats();
    println!(
        "local tier after the run: {} local hits of {} calls, tracking = {}",
        stats.local_hits,
        stats.calls(),
        stats.local_tracking
    );

    let keys = ["benchlocal:coherence".to_owned()];
    let samples = coherence(&local, &mux, &keys, invalidations).await;
    println!(
        "\nDEL on another connection -> the local tier serves the new value, {invalidations} rounds \
         (from sending the DEL, its own round trip included)"
    );
    print_coherence(&samples);

    let unrelated = env_or("BENCH_UNRELATED", 100_000.0) as u64;
    let pushes = unrelated_pushes(&local, &mux, unrelated).await;
    println!(
        "\nkeys pushed to the local tier while another client wrote {unrelated} keys outside its \
         prefixes: {pushes}"
    );
    local
        .invalidate_prefix("benchlocal:")
        .await
        .expect("clean up");
}
