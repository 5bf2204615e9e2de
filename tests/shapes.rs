//! The function shapes `#[cached]` supports, each checked for a hit by counting
//! body runs: generics, `&mut self`, patterns, `impl Trait`, slices, and every
//! way of naming the cache.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis_memo::{Cache, cached};
use serde::Serialize;
use serde::de::DeserializeOwned;

static RUNS_STATIC: AtomicUsize = AtomicUsize::new(0);
static CACHE: LazyLock<Cache> = LazyLock::new(Cache::in_memory);
const TTL: Duration = Duration::from_secs(30);

#[cached(ttl = TTL, cache = CACHE)]
async fn from_static(id: u64) -> u64 {
    RUNS_STATIC.fetch_add(1, SeqCst);
    id
}

#[cached(cache = cache, ignore(runs))]
async fn from_arc(cache: Arc<Cache>, runs: &AtomicUsize, id: u64) -> u64 {
    runs.fetch_add(1, SeqCst);
    id
}

#[cached(cache = cache, ignore(runs))]
async fn generic<T: Serialize + DeserializeOwned + Clone>(
    cache: &Cache,
    runs: &AtomicUsize,
    value: T,
) -> Vec<T> {
    runs.fetch_add(1, SeqCst);
    vec![value.clone(), value]
}

#[cached(cache = cache, ignore(runs))]
async fn patterns(
    cache: &Cache,
    runs: &AtomicUsize,
    (a, b): (u32, u32),
    _: u32,
    items: &[String],
    by_name: &HashMap<String, u8>,
    extra: impl Serialize + Send,
) -> String {
    runs.fetch_add(1, SeqCst);
    let _ = serde_json::to_string(&extra);
    format!("{a}-{b}-{}-{}", items.len(), by_name.len())
}

#[cached(cache = cache, ignore(runs))]
async fn fallible(cache: &Cache, runs: &AtomicUsize, text: &str) -> std::io::Result<u64> {
    runs.fetch_add(1, SeqCst);
    let n: u64 = text
        .parse()
        .map_err(|_| std::io::Error::other("not a number"))?;
    if n == 0 {
        return Ok(0);
    }
    Ok(n * 2)
}

struct Counter {
    cache: Cache,
    calls: u32,
}

impl Counter {
    /// Docs and attributes stay on the method.
    #[cached(cache = self.cache.clone())]
    #[must_use]
    async fn bump(&mut self, by: u32) -> u32 {
        self.calls += 1;
        self.calls * 100 + by
    }

    #[cached(cache = cache)]
    async fn associated(cache: &Cache, id: u64) -> u64 {
        id + 1
    }
}

#[tokio::test]
async fn a_static_lazylock_cache_and_a_duration_ttl() {
    let before = RUNS_STATIC.load(SeqCst);
    assert_eq!(from_static(1).await, 1);
    assert_eq!(from_static(1).await, 1);
    assert_eq!(RUNS_STATIC.load(SeqCst) - before, 1);
}

#[tokio::test]
async fn an_arc_cache_parameter_is_not_part_of_the_key() {
    let runs = AtomicUsize::new(0);
    let cache = Arc::new(Cache::in_memory());
    from_arc(cache.clone(), &runs, 5).await;
    from_arc(cache.clone(), &runs, 5).await;
    assert_eq!(runs.load(SeqCst), 1);
}

#[tokio::test]
async fn generic_functions_key_each_type_apart() {
    let runs = AtomicUsize::new(0);
    let cache = Cache::in_memory();
    assert_eq!(generic(&cache, &runs, 3u8).await, vec![3, 3]);
    assert_eq!(generic(&cache, &runs, 3u8).await, vec![3, 3]);
    assert_eq!(
        generic(&cache, &runs, "x".to_string()).await,
        vec!["x", "x"]
    );
    assert_eq!(runs.load(SeqCst), 2);
}

#[tokio::test]
async fn patterns_slices_maps_and_impl_trait_are_keyed() {
    let runs = AtomicUsize::new(0);
    let cache = Cache::in_memory();
    let items = vec!["a".to_string(), "b".to_string()];
    let map = HashMap::from([("k".to_string(), 1u8)]);
    let first = patterns(&cache, &runs, (1, 2), 0, &items, &map, "e").await;
    assert_eq!(first, "1-2-2-1");
    // `_` binds no name, so it cannot change the result or the key.
    patterns(&cache, &runs, (1, 2), 99, &items, &map, "e").await;
    assert_eq!(runs.load(SeqCst), 1);
    patterns(&cache, &runs, (2, 1), 0, &items, &map, "e").await;
    patterns(&cache, &runs, (1, 2), 0, &items[..1], &map, "e").await;
    patterns(&cache, &runs, (1, 2), 0, &items, &map, "f").await;
    assert_eq!(runs.load(SeqCst), 4);
}

#[tokio::test]
async fn question_mark_and_early_return_work_in_the_body() {
    let runs = AtomicUsize::new(0);
    let cache = Cache::in_memory();
    assert!(fallible(&cache, &runs, "x").await.is_err());
    assert!(fallible(&cache, &runs, "x").await.is_err());
    assert_eq!(fallible(&cache, &runs, "0").await.unwrap(), 0);
    assert_eq!(fallible(&cache, &runs, "0").await.unwrap(), 0);
    assert_eq!(fallible(&cache, &runs, "21").await.unwrap(), 42);
    assert_eq!(
        runs.load(SeqCst),
        4,
        "errors run every time, Ok values once"
    );
}

#[tokio::test]
async fn mut_self_methods_and_associated_functions() {
    let mut counter = Counter {
        cache: Cache::in_memory(),
        calls: 0,
    };
    assert_eq!(counter.bump(1).await, 101);
    assert_eq!(
        counter.bump(1).await,
        101,
        "a hit: the body did not run again"
    );
    assert_eq!(counter.calls, 1);
    assert_eq!(counter.bump(2).await, 202);
    let cache = Cache::in_memory();
    assert_eq!(Counter::associated(&cache, 1).await, 2);
}

/// Holds 32 KiB across an `.await`: its future is at least that large.
#[cached(cache = cache, ignore(runs))]
async fn large_body(cache: &Cache, runs: &AtomicUsize, id: u8) -> u64 {
    runs.fetch_add(1, SeqCst);
    let buffer = [id; 32 * 1024];
    tokio::task::yield_now().await;
    buffer.iter().map(|b| u64::from(*b)).sum()
}

#[cached(cache = cache, ignore(runs))]
async fn small_body(cache: &Cache, runs: &AtomicUsize, id: u8) -> u64 {
    runs.fetch_add(1, SeqCst);
    u64::from(id)
}

#[tokio::test]
async fn a_call_future_does_not_hold_the_body_state() {
    let cache = Cache::in_memory();
    let runs = AtomicUsize::new(0);
    let large = large_body(&cache, &runs, 1);
    let small = small_body(&cache, &runs, 1);
    // The body's future is created only when the body runs, so both calls
    // move and poll a future of the same size.
    assert_eq!(size_of_val(&large), size_of_val(&small));
    assert!(size_of_val(&large) < 32 * 1024);
    drop(small);
    assert_eq!(large.await, 32 * 1024);
    assert_eq!(large_body(&cache, &runs, 1).await, 32 * 1024);
    assert_eq!(runs.load(SeqCst), 1, "the second call is a hit");
}

#[tokio::test]
async fn cached_futures_are_send() {
    fn assert_send<T: Send>(t: T) -> T {
        t
    }
    let runs = AtomicUsize::new(0);
    let cache = Cache::in_memory();
    let value = tokio::spawn(async move { assert_send(generic(&cache, &runs, 1u64)).await })
        .await
        .unwrap();
    assert_eq!(value, vec![1, 1]);
}
