//! Values that carry their freshness on the hit path: what a function with
//! `stale` or `fail_safe` pays per read (one `GET`, the value's envelope
//! read in the process) against a plain one, and what a stale serve costs,
//! each as a ratio to hand-written redis-rs on a `MultiplexedConnection` and
//! to the plain function, in the same run.
//!
//! `cargo bench -p redis-memo-benches --bench stale`
//!
//! Variants, interleaved call by call (latency) and in alternating
//! quarter-second rounds (throughput), over 1,000 warm ids:
//! - `raw-mux GET`: a hand-written `GET` + serde_json (the floor of a hit);
//! - `raw-mux GET+PTTL`: the same with `PTTL` in one pipeline (what a read
//!   that learns its freshness from the key's TTL costs);
//! - `memo`: a hit of a `#[cached]` function without `stale`;
//! - `memo stale, fresh`: a hit of a function with `stale`, value within its TTL;
//! - `memo fail_safe, fresh`: a hit of a function with `fail_safe`;
//! - `memo stale, serve`: a stale value served while its refresh is in flight.
//!
//! Environment: `BENCH_SECONDS` (throughput per variant, default 3),
//! `BENCH_CALLS` (latency samples per variant, default 10000).

mod common;
use redis_memo_test_support as support;

use std::time::{Duration, Instant};

use common::*;
use redis::aio::MultiplexedConnection;
use redis_memo::{Cache, cached};
use tokio::sync::watch;

#[cached(ttl = 3600, key_prefix = "bench:", cache = cache)]
async fn plain(cache: &Cache, id: u64) -> User {
    make_user(id)
}

#[cached(ttl = 3600, stale = 600, key_prefix = "bench:", cache = cache)]
async fn fresh(cache: &Cache, id: u64) -> User {
    make_user(id)
}

#[cached(ttl = 3600, fail_safe = 86400, key_prefix = "bench:", cache = cache)]
async fn kept(cache: &Cache, id: u64) -> Result<User, String> {
    Ok(make_user(id))
}

/// Open once the measurement is over: the refreshes of `served` wait for it,
/// so every read of a stale key during the run is a stale serve.
static GATE: std::sync::LazyLock<watch::Sender<bool>> =
    std::sync::LazyLock::new(|| watch::Sender::new(true));

#[cached(ttl = 3600, stale = 600, key_prefix = "bench:", cache = cache)]
async fn served(cache: &Cache, id: u64) -> User {
    let _ = GATE.subscribe().wait_for(|open| *open).await;
    make_user(id)
}

fn raw_key(id: u64) -> String {
    format!("bench:raw:user:{id}")
}

async fn p50s(variants: &[(&str, Variant)], calls: u64) -> Vec<(Duration, Duration)> {
    let mut samples = vec![Vec::with_capacity(calls as usize); variants.len()];
    for i in 0..calls {
        for v in round_order(variants.len(), i) {
            let start = Instant::now();
            variants[v].1(i % IDS).await;
            samples[v].push(start.elapsed());
        }
    }
    samples
        .iter_mut()
        .map(|s| {
            s.sort_unstable();
            (s[s.len() / 2], s[s.len() * 99 / 100])
        })
        .collect()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let redis = support::TestRedis::start();
    let cache = redis.cache().await;
    let mux: MultiplexedConnection = redis.client().await;
    let mut conn = mux.clone();
    for id in 0..IDS {
        store_user(&mux, &raw_key(id), &make_user(id)).await;
        plain(&cache, id).await;
        fresh(&cache, id).await;
        kept(&cache, id).await.expect("kept");
        served(&cache, id).await;
        // Fresh until a minute ago: stale from now on.
        let key = served_key(&cache, id).await.expect("key");
        let bytes: Vec<u8> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("GET");
        let (_, _, inner) = support::reference::unenvelope(&bytes).expect("enveloped");
        let stale = support::reference::envelope(support::reference::now_ms() - 60_000, 0, inner);
        redis::cmd("SET")
            .arg(&key)
            .arg(stale)
            .arg("EX")
            .arg(300)
            .query_async::<()>(&mut conn)
            .await
            .expect("SET");
    }
    GATE.send_replace(false);

    let get = {
        let mux = mux.clone();
        variant(move |id| {
            let mut conn = mux.clone();
            async move {
                let bytes: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(raw_key(id))
                    .query_async(&mut conn)
                    .await
                    .expect("GET");
                let _: User = serde_json::from_slice(&bytes.expect("warm")).expect("JSON");
            }
        })
    };
    let get_pttl = {
        let mux = mux.clone();
        variant(move |id| {
            let mut conn = mux.clone();
            async move {
                let key = raw_key(id);
                let (bytes, _left): (Option<Vec<u8>>, i64) = redis::pipe()
                    .cmd("GET")
                    .arg(&key)
                    .cmd("PTTL")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .expect("GET+PTTL");
                let _: User = serde_json::from_slice(&bytes.expect("warm")).expect("JSON");
            }
        })
    };
    let memo = |f: fn(Cache, u64) -> Call| {
        let cache = cache.clone();
        variant(move |id| f(cache.clone(), id))
    };
    let variants: Vec<(&str, Variant)> = vec![
        ("raw-mux GET", get),
        ("raw-mux GET+PTTL", get_pttl),
        (
            "memo",
            memo(|c, id| {
                Box::pin(async move {
                    plain(&c, id).await;
                })
            }),
        ),
        (
            "memo stale, fresh",
            memo(|c, id| {
                Box::pin(async move {
                    fresh(&c, id).await;
                })
            }),
        ),
        (
            "memo fail_safe, fresh",
            memo(|c, id| {
                Box::pin(async move {
                    kept(&c, id).await.expect("a hit");
                })
            }),
        ),
        (
            "memo stale, serve",
            memo(|c, id| {
                Box::pin(async move {
                    served(&c, id).await;
                })
            }),
        ),
    ];

    let calls = env_or("BENCH_CALLS", 10_000.0) as u64;
    let seconds = env_or("BENCH_SECONDS", 3.0) as u64;
    let latency = p50s(&variants, calls).await;
    let throughput = throughputs(&variants, 64, seconds).await;
    let (base_p50, base_rate) = (latency[0].0.as_secs_f64(), throughput[0]);
    let plain_rate = throughput[2];
    println!(
        "variant                 p50 (x raw GET)      p99        hits/s @64 (x raw GET, x memo)"
    );
    for (i, (name, _)) in variants.iter().enumerate() {
        let (p50, p99) = latency[i];
        println!(
            "{name:<23} {:>7.1} us ({:.2}x)  {:>7.1} us  {:>9.0} ({:.2}x, {:.3}x)",
            p50.as_secs_f64() * 1e6,
            p50.as_secs_f64() / base_p50,
            p99.as_secs_f64() * 1e6,
            throughput[i],
            throughput[i] / base_rate,
            throughput[i] / plain_rate,
        );
    }
    let stats = cache.stats();
    println!(
        "stale serves {}, hits {}, misses {}, errors {}",
        stats.stale, stats.hits, stats.misses, stats.errors
    );
    GATE.send_replace(true);
}
