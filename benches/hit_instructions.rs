//! Instructions per hit held in this process, counted by callgrind (no
//! noise, no timing): a local-tier hit, an in-memory backend hit, and the
//! floor, a moka `get_with` + clone keyed by the `u64` id, on the workload of
//! the `local_tier` bench (a ~90-byte struct, 1,000 warm ids); and the
//! client's side of a Redis hit (the server's work and the wait are not
//! counted), to see what the library adds to a round trip.
//!
//! `bash scripts/hit-instructions.sh` runs each variant twice under
//! `valgrind --tool=callgrind` (N and 2N hits after the same warm-up) and
//! prints the difference per hit: setup, connections and warm-up cancel
//! out. Run by hand, the binary takes the variant and the number of hits:
//!
//! `target/release/deps/hit_instructions-* local 100000`
//!
//! valgrind hides SHA-NI, so SHA-256 runs in software under it: a path that
//! computes the Redis key pays more here than on hardware.

mod common;
use redis_memo_test_support as support;

use common::*;
use redis_memo::{Cache, cached as memo};

#[memo(ttl = 3600, key_prefix = "benchinstr:", cache = cache)]
async fn memo_get_user(cache: &Cache, id: u64) -> User {
    make_user(id)
}

#[memo(ttl = 3600, key_prefix = "benchinstr:", name = "users", batch = ids, cache = cache)]
async fn memo_users(cache: &Cache, ids: Vec<u64>) -> std::collections::HashMap<u64, User> {
    ids.into_iter().map(|id| (id, make_user(id))).collect()
}

/// Ids per batch in the batch variants.
const BATCH: u64 = 100;

/// The ids of batch `i`: `BATCH` consecutive warm ids.
fn batch_ids(i: u64) -> Vec<u64> {
    let first = (i * BATCH) % IDS;
    (first..first + BATCH).collect()
}

/// A hand-written warm batch on redis-memo's keys: `MGET`, then decode.
async fn raw_batch(
    conn: &mut redis::aio::MultiplexedConnection,
    ids: &[u64],
) -> std::collections::HashMap<u64, User> {
    let keys: Vec<String> = ids
        .iter()
        .map(|id| {
            let mut args = redis_memo::key::KeyBuilder::new();
            args.arg(id);
            args.finish("benchinstr:", &redis_memo::key::FnName::Custom("users"))
                .expect("key")
        })
        .collect();
    let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
        .arg(&keys)
        .query_async(conn)
        .await
        .expect("MGET");
    ids.iter()
        .zip(values)
        .filter_map(|(&id, value)| Some((id, serde_json::from_slice(&value?).ok()?)))
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(variant), Some(hits)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: hit_instructions <local|memory|redis|moka|batch|batch-raw> <hits>");
        std::process::exit(2);
    };
    let hits: u64 = hits.parse().expect("a number of hits");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        match variant.as_str() {
            "moka" => {
                let moka: moka::future::Cache<u64, User> = moka::future::Cache::new(10_000);
                for id in 0..IDS {
                    moka.get_with(id, async move { make_user(id) }).await;
                }
                for i in 0..hits {
                    let id = i % IDS;
                    let user = moka.get_with(id, async move { make_user(id) }).await;
                    std::hint::black_box(user);
                }
            }
            "memory" => hit(&Cache::in_memory(), hits).await,
            // The client's side of a Redis hit, for comparison: the round
            // trip itself is not counted.
            "redis" => {
                let redis = support::TestRedis::spawn(&[]);
                let cache = cache_on(&redis, None).await;
                hit(&cache, hits).await;
                assert_eq!(cache.stats().hits, hits + IDS, "every timed call is a hit");
            }
            "local" => {
                let redis = support::TestRedis::spawn(&[]);
                let cache = cache_on(&redis, Some(64 << 20)).await;
                // Tracking may take longer than `build` waits for here: its
                // entries would expire within `local_ttl` until it is on.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
                while !cache.stats().local_tracking {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "tracking never came on"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                hit(&cache, hits).await;
                // An entry filled before its prefix was tracked lives
                // `local_ttl`, which valgrind's pace can outlast: a Redis read
                // or two among the hits, each ~1 instruction per hit here.
                let local_hits = cache.stats().local_hits;
                assert!(
                    local_hits + 10 >= hits + IDS,
                    "the timed calls are local hits: {local_hits}"
                );
            }
            // Instructions per warm batch of `BATCH` ids.
            "batch" | "batch-raw" => {
                let redis = support::TestRedis::spawn(&[]);
                let cache = cache_on(&redis, None).await;
                for i in 0..IDS / BATCH {
                    memo_users(&cache, batch_ids(i)).await;
                }
                let mut conn = redis.client().await;
                for i in 0..hits {
                    let ids = batch_ids(i);
                    let users = if variant == "batch" {
                        memo_users(&cache, ids).await
                    } else {
                        raw_batch(&mut conn, &ids).await
                    };
                    assert_eq!(users.len() as u64, BATCH);
                    std::hint::black_box(users);
                }
            }
            other => panic!("unknown variant {other}"),
        }
    });
}

/// A cache on `redis`, with a local tier of `local` bytes. Under valgrind
/// everything is slow: a response timeout that the tracking connection's
/// pings cannot miss.
async fn cache_on(redis: &support::TestRedis, local: Option<u64>) -> Cache {
    let mut builder = Cache::builder()
        .url(redis.url())
        .response_timeout(std::time::Duration::from_secs(30));
    if let Some(bytes) = local {
        builder = builder.local_cache(bytes);
    }
    builder.build().await.expect("redis")
}

/// Warms every id (twice: the second read fills the local tier), then `hits` hits.
async fn hit(cache: &Cache, hits: u64) {
    for _ in 0..2 {
        for id in 0..IDS {
            memo_get_user(cache, id).await;
        }
    }
    for i in 0..hits {
        std::hint::black_box(memo_get_user(cache, i % IDS).await);
    }
}
