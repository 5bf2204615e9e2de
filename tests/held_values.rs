//! Hits held in this process (the in-memory backend, a local tier) decode
//! the stored bytes once per entry for a `Clone` type and return clones of
//! that value afterwards; other types decode on every hit. Either way every
//! hit returns the stored value, and a new value replaces the kept one.
//!
//! Decodes are counted when a stored value becomes the returned type, per
//! test (tests run in parallel).

use std::collections::HashMap;
use std::sync::Mutex;

use redis_memo::{Cache, cached};
use redis_memo_test_support::{TestRedis, until};
use serde::{Deserialize, Serialize};

/// Decodes so far, by test.
static DECODES: Mutex<Option<HashMap<String, u64>>> = Mutex::new(None);

fn decodes(test: &str) -> u64 {
    let decodes = DECODES.lock().unwrap();
    decodes
        .as_ref()
        .and_then(|d| d.get(test))
        .copied()
        .unwrap_or(0)
}

fn count_decode(test: &str) {
    let mut decodes = DECODES.lock().unwrap();
    *decodes
        .get_or_insert_with(HashMap::new)
        .entry(test.to_owned())
        .or_default() += 1;
}

/// What is stored; decoding it into [`Shared`] or [`Unique`] counts.
#[derive(Deserialize)]
struct Fields {
    test: String,
    items: Vec<u64>,
}

/// A `Clone` value whose decodes are counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "Fields")]
struct Shared {
    test: String,
    items: Vec<u64>,
}

impl From<Fields> for Shared {
    fn from(Fields { test, items }: Fields) -> Self {
        count_decode(&test);
        Shared { test, items }
    }
}

/// The same, without `Clone`.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "Fields")]
struct Unique {
    test: String,
    items: Vec<u64>,
}

impl From<Fields> for Unique {
    fn from(Fields { test, items }: Fields) -> Self {
        count_decode(&test);
        Unique { test, items }
    }
}

#[cached(ttl = 300, key_prefix = "held:", cache = cache)]
async fn shared(cache: &Cache, test: &str, n: u64) -> Shared {
    Shared {
        test: test.to_owned(),
        items: (0..n).collect(),
    }
}

#[cached(ttl = 300, key_prefix = "held:", cache = cache)]
async fn unique(cache: &Cache, test: &str, n: u64) -> Unique {
    Unique {
        test: test.to_owned(),
        items: (0..n).collect(),
    }
}

#[cached(ttl = 300, key_prefix = "held:", cache = cache)]
async fn fallible(cache: &Cache, test: &str, n: u64) -> Result<Shared, String> {
    Ok(Shared {
        test: test.to_owned(),
        items: (0..n).collect(),
    })
}

#[cached(ttl = 300, key_prefix = "held:", cache = cache, cache_none = false)]
async fn maybe(cache: &Cache, test: &str, n: u64) -> Option<Shared> {
    Some(Shared {
        test: test.to_owned(),
        items: (0..n).collect(),
    })
}

#[cached(ttl = 300, key_prefix = "held:", cache = cache, result = false)]
async fn whole_result(cache: &Cache, test: &str, n: u64) -> Result<Shared, String> {
    Ok(Shared {
        test: test.to_owned(),
        items: (0..n).collect(),
    })
}

#[cached(ttl = 300, key_prefix = "held:", cache = cache)]
async fn generic<T: Clone + Send + Sync + 'static>(cache: &Cache, test: &str, n: u64) -> Shared {
    let _ = std::any::type_name::<T>();
    Shared {
        test: test.to_owned(),
        items: (0..n).collect(),
    }
}

/// The items of a value computed for `n`.
fn expected(n: u64) -> Vec<u64> {
    (0..n).collect()
}

#[tokio::test]
async fn in_memory_hits_of_a_clone_type_decode_once_per_entry() {
    let test = "memory-clone";
    let cache = Cache::in_memory();
    assert_eq!(shared(&cache, test, 3).await.items, expected(3));
    assert_eq!(decodes(test), 0, "a miss returns the body's value");
    for _ in 0..5 {
        let mut value = shared(&cache, test, 3).await;
        assert_eq!(value.items, expected(3));
        // The caller owns its value: changing it changes no later hit.
        value.items.push(99);
    }
    assert_eq!(decodes(test), 1, "decoded by the first hit only");
    assert_eq!(cache.stats().hits, 5);

    // A new value replaces the kept one.
    shared_prime(
        &cache,
        test,
        3,
        &Shared {
            test: test.to_owned(),
            items: vec![7],
        },
    )
    .await
    .expect("prime");
    assert_eq!(shared(&cache, test, 3).await.items, vec![7]);
    assert_eq!(shared(&cache, test, 3).await.items, vec![7]);
    assert_eq!(decodes(test), 2);
}

#[tokio::test]
async fn in_memory_hits_of_other_types_decode_every_time() {
    let test = "memory-unique";
    let cache = Cache::in_memory();
    unique(&cache, test, 2).await;
    for _ in 0..4 {
        assert_eq!(unique(&cache, test, 2).await.items, expected(2));
    }
    assert_eq!(decodes(test), 4);
}

#[tokio::test]
async fn every_return_shape_reuses_its_cached_part() {
    let cache = Cache::in_memory();
    for _ in 0..4 {
        assert_eq!(
            fallible(&cache, "shape-result", 2).await.unwrap().items,
            vec![0, 1]
        );
        assert_eq!(
            maybe(&cache, "shape-option", 2).await.unwrap().items,
            vec![0, 1]
        );
        assert_eq!(
            whole_result(&cache, "shape-whole", 2).await.unwrap().items,
            vec![0, 1]
        );
        assert_eq!(
            generic::<u8>(&cache, "shape-generic", 2).await.items,
            vec![0, 1]
        );
    }
    for test in ["shape-result", "shape-option", "shape-generic"] {
        assert_eq!(decodes(test), 1, "{test}");
    }
    // `result = false` caches the whole `Result` (a `Clone` type too),
    // which decodes into `Shared` through `Ok`: once as well.
    assert_eq!(decodes("shape-whole"), 1);
}

#[tokio::test]
async fn local_tier_hits_decode_once_and_follow_other_writers() {
    let test = "local-clone";
    let redis = TestRedis::start();
    let cache = Cache::builder()
        .url(redis.url())
        .local_cache(1 << 20)
        .build()
        .await
        .expect("connect with a local tier");
    shared_invalidate(&cache, test, 4)
        .await
        .expect("start clean");
    shared(&cache, test, 4).await;
    until("the value is held locally", async || {
        let before = cache.stats().local_hits;
        assert_eq!(shared(&cache, test, 4).await.items, expected(4));
        cache.stats().local_hits > before
    })
    .await;
    let after_fill = decodes(test);
    for _ in 0..10 {
        assert_eq!(shared(&cache, test, 4).await.items, expected(4));
    }
    assert!(
        decodes(test) <= after_fill + 1,
        "local hits reuse one decoded value"
    );

    // Another client replaces the stored value: the kept one goes with it.
    let key = shared_key(&cache, test, 4).await.expect("key");
    let mut plain = redis.client().await;
    let json = serde_json::to_string(&Shared {
        test: test.to_owned(),
        items: vec![42],
    })
    .unwrap();
    let () = redis::cmd("SET")
        .arg(&key)
        .arg(json)
        .query_async(&mut plain)
        .await
        .expect("SET");
    until("the other writer's value is served", async || {
        shared(&cache, test, 4).await.items == vec![42]
    })
    .await;
    assert_eq!(shared(&cache, test, 4).await.items, vec![42]);
}
