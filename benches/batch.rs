//! Batches: `#[cached(batch = ids)]` against a hand-written redis-rs batch
//! (`MGET` + decode, the loader for the misses, a pipelined `SET EX`), and
//! against 100 calls of a one-element `#[cached]` function (all at once), on
//! the same server in the same run, variants in alternating rounds.
//!
//! `cargo bench -p redis-memo-benches --bench batch`
//!
//! Workload: batches of 100 ids, every id warm, then half of them warm and
//! half never seen before (so each batch loads and stores 50). 16 tasks.
//! Environment: `BENCH_SECONDS` (per variant and workload, default 5),
//! `REDIS_URL` (use that server instead of starting one).

mod common;
use redis_memo_test_support as support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::*;
use futures_util::future::join_all;
use redis::aio::MultiplexedConnection;
use redis_memo::{Cache, cached};

/// Ids in one batch.
const BATCH: u64 = 100;
/// Warm ids the batches are taken from.
const WARM: u64 = 10_000;
/// Tasks calling at once.
const TASKS: usize = 16;

#[cached(ttl = 3600, key_prefix = "benchb:", name = "users", batch = ids, cache = cache)]
async fn memo_users(cache: &Cache, ids: &[u64]) -> HashMap<u64, User> {
    ids.iter().map(|&id| (id, make_user(id))).collect()
}

#[cached(ttl = 3600, key_prefix = "benchb:", name = "users", cache = cache)]
async fn memo_user(cache: &Cache, id: u64) -> User {
    make_user(id)
}

fn raw_key(id: u64) -> String {
    format!("benchb:raw:user:{id}")
}

/// redis-memo's key of one element (`name = "users"`, `key_prefix = "benchb:"`).
fn memo_key(id: u64) -> String {
    let mut args = redis_memo::key::KeyBuilder::new();
    args.arg(&id);
    args.finish("benchb:", &redis_memo::key::FnName::Custom("users"))
        .expect("key")
}

/// A hand-written batch: `MGET`, decode the hits, load the misses, store
/// them in one pipeline of `SET EX`; keys made by `key`.
async fn raw_batch(
    conn: &MultiplexedConnection,
    ids: &[u64],
    key: fn(u64) -> String,
) -> HashMap<u64, User> {
    let mut conn = conn.clone();
    let keys: Vec<String> = ids.iter().map(|&id| key(id)).collect();
    let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .expect("MGET");
    let mut found = HashMap::with_capacity(ids.len());
    let mut missing = Vec::new();
    for (&id, value) in ids.iter().zip(values) {
        match value.and_then(|bytes| serde_json::from_slice::<User>(&bytes).ok()) {
            Some(user) => {
                found.insert(id, user);
            }
            None => missing.push(id),
        }
    }
    if !missing.is_empty() {
        let mut pipe = redis::pipe();
        for &id in &missing {
            let user = make_user(id);
            pipe.cmd("SET")
                .arg(key(id))
                .arg(serde_json::to_vec(&user).expect("JSON"))
                .arg("EX")
                .arg(3600)
                .ignore();
            found.insert(id, user);
        }
        pipe.query_async::<()>(&mut conn)
            .await
            .expect("SET pipeline");
    }
    found
}

/// The ids of one batch: `BATCH` warm ids from `seed`, or half of them
/// replaced by ids never used before (`fresh`).
fn batch_ids(seed: u64, fresh: Option<&AtomicU64>) -> Vec<u64> {
    let first = (seed * 7919 * BATCH) % WARM;
    (0..BATCH)
        .map(|i| match fresh {
            Some(next) if i % 2 == 1 => next.fetch_add(1, Ordering::Relaxed),
            _ => (first + i) % WARM,
        })
        .collect()
}

fn variants(
    cache: &Cache,
    mux: &MultiplexedConnection,
    half_warm: bool,
) -> Vec<(&'static str, Variant)> {
    // Never-seen ids, a range per variant.
    let fresh = |base: u64| half_warm.then(|| Arc::new(AtomicU64::new(base)));
    let (raw_fresh, same_fresh, memo_fresh, one_fresh) = (
        fresh(1 << 40),
        fresh(4 << 40),
        fresh(2 << 40),
        fresh(3 << 40),
    );
    vec![
        ("hand-written MGET", {
            let mux = mux.clone();
            variant(move |seed| {
                let (mux, ids) = (mux.clone(), batch_ids(seed, raw_fresh.as_deref()));
                async move {
                    assert_eq!(raw_batch(&mux, &ids, raw_key).await.len(), ids.len());
                }
            })
        }),
        ("hand-written, same keys", {
            let mux = mux.clone();
            variant(move |seed| {
                let (mux, ids) = (mux.clone(), batch_ids(seed, same_fresh.as_deref()));
                async move {
                    assert_eq!(raw_batch(&mux, &ids, memo_key).await.len(), ids.len());
                }
            })
        }),
        ("batch = ids", {
            let cache = cache.clone();
            variant(move |seed| {
                let (cache, ids) = (cache.clone(), batch_ids(seed, memo_fresh.as_deref()));
                async move {
                    assert_eq!(memo_users(&cache, &ids).await.len(), ids.len());
                }
            })
        }),
        ("100 one-element calls", {
            let cache = cache.clone();
            variant(move |seed| {
                let (cache, ids) = (cache.clone(), batch_ids(seed, one_fresh.as_deref()));
                async move {
                    let calls = ids.iter().map(|&id| memo_user(&cache, id));
                    assert_eq!(join_all(calls).await.len(), ids.len());
                }
            })
        }),
    ]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds = env_or("BENCH_SECONDS", 5.0) as u64;
    let redis = support::TestRedis::start();
    let mux = redis.client().await;
    let cache = redis.cache().await;
    cache.invalidate_prefix("benchb:").await.expect("clean");
    let warm: Vec<u64> = (0..WARM).collect();
    for chunk in warm.chunks(1000) {
        raw_batch(&mux, chunk, raw_key).await;
        memo_users(&cache, chunk).await;
    }
    for (workload, half_warm) in [("every id warm", false), ("half the ids warm", true)] {
        let variants = variants(&cache, &mux, half_warm);
        let rates = throughputs(&variants, TASKS, seconds).await;
        println!(
            "\nbatches of {BATCH} ids, {workload}: {TASKS} tasks, {seconds} s per variant in \
             0.25 s alternating rounds"
        );
        println!(
            "{:<24} {:>10} {:>12} {:>8} {:>9}",
            "variant", "batches/s", "elements/s", "ratio", "same-key"
        );
        for ((name, _), rate) in variants.iter().zip(&rates) {
            println!(
                "{name:<24} {rate:>10.0} {:>12.0} {:>7.3}x {:>8.3}x",
                rate * BATCH as f64,
                rate / rates[0],
                rate / rates[1]
            );
        }
    }
}
