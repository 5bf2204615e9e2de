//! Per-call helpers (`{fn}_key`, `{fn}_invalidate`, `{fn}_prime`,
//! `redis_memo::refresh`), versions and group invalidation, checked against
//! what is stored, on Redis and in memory.

use redis_memo_test_support as support;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use redis_memo::{Cache, cached};
use support::Harness;
use support::reference::Encoded;

#[cached(ttl = 60, key_prefix = "pc:", cache = cache, ignore(runs))]
async fn price(cache: &Cache, runs: &AtomicUsize, item: &str, qty: u32) -> Result<u64, String> {
    runs.fetch_add(1, SeqCst);
    Ok(item.len() as u64 * u64::from(qty) + runs.load(SeqCst) as u64 * 1000)
}

#[cached(ttl = 60, key_prefix = "pcv:", version = 2, cache = cache, ignore(runs))]
async fn versioned(cache: &Cache, runs: &AtomicUsize, id: u64) -> u64 {
    runs.fetch_add(1, SeqCst);
    id
}

#[cached(ttl = 60, key_prefix = "pcd:", cache = cache, ignore(runs))]
async fn default_versioned(cache: &Cache, runs: &AtomicUsize, id: u64) -> u64 {
    runs.fetch_add(1, SeqCst);
    id
}

#[cached(ttl = 60, key_prefix = "grp:", grouped, cache = cache, ignore(runs))]
async fn grouped_a(cache: &Cache, runs: &AtomicUsize, id: u64) -> u64 {
    runs.fetch_add(1, SeqCst);
    id
}

#[cached(ttl = 60, key_prefix = "grp:", grouped = true, cache = cache, ignore(runs))]
async fn grouped_b(cache: &Cache, runs: &AtomicUsize, id: u64) -> u64 {
    runs.fetch_add(1, SeqCst);
    id + 1
}

struct Repo {
    cache: Cache,
    runs: AtomicUsize,
}

impl Repo {
    #[cached(ttl = 60, key_prefix = "pcm:", cache = self.cache, helpers)]
    async fn get(&self, id: u64) -> String {
        self.runs.fetch_add(1, SeqCst);
        format!("row {id}")
    }
}

async fn key_helper_names_the_key_the_call_writes(h: &Harness) {
    let runs = AtomicUsize::new(0);
    let key = price_key(&h.cache, "pen", 2).await.unwrap();
    assert_eq!(
        key,
        h.expected_key("pc:", "per_call::price", &Encoded::new().str("pen").int(2))
    );
    assert_eq!(h.raw_get(&key).await, None);
    price(&h.cache, &runs, "pen", 2).await.unwrap();
    assert_eq!(h.raw_get(&key).await.as_deref(), Some(&b"1006"[..]));
}

async fn invalidate_helper_drops_exactly_one_call(h: &Harness) {
    let runs = AtomicUsize::new(0);
    price(&h.cache, &runs, "pen", 1).await.unwrap();
    price(&h.cache, &runs, "pen", 2).await.unwrap();
    assert!(price_invalidate(&h.cache, "pen", 1).await.unwrap());
    assert!(
        !price_invalidate(&h.cache, "pen", 1).await.unwrap(),
        "nothing left to drop"
    );
    assert_eq!(
        h.raw_get(&price_key(&h.cache, "pen", 1).await.unwrap())
            .await,
        None
    );
    assert!(
        h.raw_get(&price_key(&h.cache, "pen", 2).await.unwrap())
            .await
            .is_some()
    );
    price(&h.cache, &runs, "pen", 2).await.unwrap();
    assert_eq!(runs.load(SeqCst), 2, "the other call still hits");
    price(&h.cache, &runs, "pen", 1).await.unwrap();
    assert_eq!(runs.load(SeqCst), 3, "the dropped call runs again");
}

async fn prime_helper_stores_a_value_the_call_then_returns(h: &Harness) {
    let runs = AtomicUsize::new(0);
    price_prime(&h.cache, "gold", 1, &42).await.unwrap();
    let key = price_key(&h.cache, "gold", 1).await.unwrap();
    assert_eq!(h.raw_get(&key).await.as_deref(), Some(&b"42"[..]));
    assert!(
        (58..=60).contains(&h.ttl(&key).await),
        "primed with the function's ttl"
    );
    assert_eq!(price(&h.cache, &runs, "gold", 1).await, Ok(42));
    assert_eq!(runs.load(SeqCst), 0, "served from the primed value");
}

async fn refresh_runs_the_body_and_overwrites(h: &Harness) {
    let runs = AtomicUsize::new(0);
    assert_eq!(price(&h.cache, &runs, "ink", 1).await, Ok(1003));
    assert_eq!(price(&h.cache, &runs, "ink", 1).await, Ok(1003));
    let fresh = redis_memo::refresh(price(&h.cache, &runs, "ink", 1)).await;
    assert_eq!(fresh, Ok(2003), "the body ran again");
    let key = price_key(&h.cache, "ink", 1).await.unwrap();
    assert_eq!(h.raw_get(&key).await.as_deref(), Some(&b"2003"[..]));
    assert_eq!(
        price(&h.cache, &runs, "ink", 1).await,
        Ok(2003),
        "later calls hit the new value"
    );
    assert_eq!(runs.load(SeqCst), 2);
}

async fn method_helpers_are_associated_functions(h: &Harness) {
    let repo = Repo {
        cache: h.cache.clone(),
        runs: AtomicUsize::new(0),
    };
    repo.get(5).await;
    let key = Repo::get_key(&h.cache, 5).await.unwrap();
    assert_eq!(
        key,
        h.expected_key("pcm:", "per_call::Repo::get", &Encoded::new().int(5))
    );
    assert_eq!(h.raw_get(&key).await.as_deref(), Some(&br#""row 5""#[..]));
    assert!(Repo::get_invalidate(&h.cache, 5).await.unwrap());
    Repo::get_prime(&h.cache, 6, &"primed".to_string())
        .await
        .unwrap();
    assert_eq!(repo.get(6).await, "primed");
    repo.get(5).await;
    assert_eq!(repo.runs.load(SeqCst), 2);
}

async fn a_version_is_part_of_the_key(h: &Harness) {
    let runs = AtomicUsize::new(0);
    versioned_invalidate(&h.cache, 1).await.unwrap(); // left by an earlier run on a shared server
    versioned(&h.cache, &runs, 1).await;
    let key = versioned_key(&h.cache, 1).await.unwrap();
    let digest = &key[key.len() - 64..];
    assert_eq!(key, format!("pcv:per_call::versioned:v2:{digest}"));
    assert!(h.raw_get(&key).await.is_some());
}

async fn a_cache_default_version_retires_old_entries_without_a_scan(h: &Harness) {
    let runs = AtomicUsize::new(0);
    let v1 = h.cache.with_default_version(1);
    // Left by an earlier run on a shared server.
    default_versioned_invalidate(&v1, 7).await.unwrap();
    default_versioned_invalidate(&h.cache.with_default_version(2), 7)
        .await
        .unwrap();
    default_versioned(&v1, &runs, 7).await;
    default_versioned(&v1, &runs, 7).await;
    assert_eq!(runs.load(SeqCst), 1);
    let old_key = default_versioned_key(&v1, 7).await.unwrap();
    assert!(old_key.contains(":v1:"));

    let v2 = h.cache.with_default_version(2);
    default_versioned(&v2, &runs, 7).await;
    assert_eq!(
        runs.load(SeqCst),
        2,
        "version 2 does not read version 1's entry"
    );
    assert!(
        h.raw_get(&old_key).await.is_some(),
        "the old entry stays until its TTL"
    );
    // A function's own `version` wins over the cache's default.
    let key = versioned_key(&v2.with_default_version(9), 1).await.unwrap();
    assert!(key.contains(":v2:"));
    // Old versions can still be dropped by prefix.
    let old_prefix = &old_key[..old_key.len() - 64];
    assert_eq!(h.cache.invalidate_prefix(old_prefix).await.unwrap(), 1);
}

async fn a_group_is_invalidated_in_one_step(h: &Harness) {
    let runs = AtomicUsize::new(0);
    // A generation of this test's own (1 on a fresh server).
    let g = h.cache.invalidate_group("grp:").await.unwrap();
    for id in 0..50 {
        grouped_a(&h.cache, &runs, id).await;
        grouped_b(&h.cache, &runs, id).await;
    }
    assert_eq!(runs.load(SeqCst), 100);
    let key = grouped_a_key(&h.cache, 3).await.unwrap();
    assert!(
        key.starts_with(&format!("grp:@{g}:per_call::grouped_a:")),
        "{key}"
    );
    assert!(h.raw_get(&key).await.is_some());
    grouped_a(&h.cache, &runs, 3).await;
    assert_eq!(runs.load(SeqCst), 100, "grouped calls hit");

    assert_eq!(h.cache.invalidate_group("grp:").await.unwrap(), g + 1);
    assert!(
        grouped_a_key(&h.cache, 3)
            .await
            .unwrap()
            .starts_with(&format!("grp:@{}:", g + 1))
    );
    for id in 0..50 {
        assert_eq!(grouped_a(&h.cache, &runs, id).await, id);
        assert_eq!(grouped_b(&h.cache, &runs, id).await, id + 1);
    }
    assert_eq!(
        runs.load(SeqCst),
        200,
        "every entry of the group was dropped"
    );
    grouped_b(&h.cache, &runs, 9).await;
    assert_eq!(
        runs.load(SeqCst),
        200,
        "and the new generation caches again"
    );
    assert!(
        h.raw_get(&key).await.is_some(),
        "old entries are left to their TTL"
    );
}

support::on_both_backends! {
    #[tokio::test]
    key_helper_names_the_key_the_call_writes,
    invalidate_helper_drops_exactly_one_call,
    prime_helper_stores_a_value_the_call_then_returns,
    refresh_runs_the_body_and_overwrites,
    method_helpers_are_associated_functions,
    a_version_is_part_of_the_key,
    a_cache_default_version_retires_old_entries_without_a_scan,
    a_group_is_invalidated_in_one_step,
}
