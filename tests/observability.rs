//! What a service sees of its cache: per-function stats and (feature
//! `metrics`) counters and a latency histogram. The span per call is checked
//! in `tracing_span.rs`, a binary of its own so that no other test registers
//! the span's callsite without a subscriber at the same time.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use redis_memo_test_support as support;

use redis_memo::{Cache, cached};

#[cached(ttl = 60, key_prefix = "obs:", cache = cache, skip_cache = fresh, ignore(runs))]
async fn lookup(cache: &Cache, runs: &AtomicUsize, id: u64, fresh: bool) -> u64 {
    runs.fetch_add(1, SeqCst);
    id
}

#[cached(ttl = 60, key_prefix = "obs:", cache = cache)]
async fn other(cache: &Cache, id: u64) -> u64 {
    id
}

#[tokio::test]
async fn stats_break_calls_down_by_function_and_outcome() {
    let harness = support::Harness::redis().await;
    let cache = harness.cache.clone();
    let runs = AtomicUsize::new(0);
    lookup(&cache, &runs, 1, false).await; // miss
    lookup(&cache, &runs, 1, false).await; // hit
    lookup(&cache, &runs, 1, true).await; // skipped
    let key = lookup_key(&cache, 2).await.unwrap();
    cache.set_raw(&key, b"not json", None).await.unwrap();
    lookup(&cache, &runs, 2, false).await; // corrupt
    other(&cache, 1).await; // miss
    assert!(lookup_invalidate(&cache, 1).await.unwrap());

    let stats = cache.stats();
    // Each call in exactly one outcome; corrupt reads are not misses.
    assert_eq!((stats.hits, stats.misses, stats.corrupt), (1, 2, 1));
    assert_eq!(
        (stats.skipped, stats.breaker_skipped, stats.errors),
        (1, 0, 0)
    );
    assert_eq!(stats.calls(), 5);
    // The miss of lookup(1), the overwrite of lookup(2), the miss of other(1).
    assert_eq!((stats.stores, stats.write_errors), (3, 0));
    assert_eq!(stats.invalidations, 1);
    let names: Vec<&str> = stats.functions.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["observability::lookup", "observability::other"]);
    let f = &stats.functions[0];
    assert_eq!(
        (
            f.hits,
            f.misses,
            f.corrupt,
            f.errors,
            f.skipped,
            f.stores,
            f.invalidations
        ),
        (1, 1, 1, 0, 1, 2, 1)
    );
    let g = &stats.functions[1];
    assert_eq!((g.hits, g.misses, g.stores), (0, 1, 1));
}

/// Every total is the sum of the per-family figures, and every operation
/// lands in the counter the docs give it.
#[tokio::test]
async fn totals_are_the_sums_of_the_families_and_every_kind_of_invalidation_counts() {
    let harness = support::Harness::redis().await;
    let cache = harness.cache.clone();
    let p = harness.prefix("direct");
    let runs = AtomicUsize::new(0);
    lookup(&cache, &runs, 1, false).await; // lookup: miss, store
    lookup(&cache, &runs, 1, false).await; // lookup: hit
    lookup_prime(&cache, 2, &5).await.unwrap(); // lookup: store
    assert!(lookup_invalidate(&cache, 2).await.unwrap()); // lookup: invalidation
    cache
        .get_or_set(&format!("{p}a"), 60, || async { 1u8 })
        .await; // direct: miss, store
    cache.get::<u8>(&format!("{p}a")).await.unwrap(); // direct: hit
    cache.get::<u8>(&format!("{p}b")).await.unwrap(); // direct: miss
    cache.set(&format!("{p}c"), &3u8, 60).await.unwrap(); // direct: store
    assert_eq!(cache.delete(&[&format!("{p}c")]).await.unwrap(), 1); // direct: invalidation
    assert_eq!(cache.invalidate_prefix(&p).await.unwrap(), 1); // direct: invalidation
    cache.invalidate_group("grp:").await.unwrap(); // grp: invalidation

    let stats = cache.stats();
    let sum = |field: fn(&redis_memo::FunctionStats) -> u64| -> u64 {
        stats.functions.iter().map(field).sum()
    };
    assert_eq!(stats.hits, sum(|f| f.hits));
    assert_eq!(stats.shared, sum(|f| f.shared));
    assert_eq!(stats.misses, sum(|f| f.misses));
    assert_eq!(stats.corrupt, sum(|f| f.corrupt));
    assert_eq!(stats.errors, sum(|f| f.errors));
    assert_eq!(stats.skipped, sum(|f| f.skipped));
    assert_eq!(stats.breaker_skipped, sum(|f| f.breaker_skipped));
    assert_eq!(stats.stores, sum(|f| f.stores));
    assert_eq!(stats.write_errors, sum(|f| f.write_errors));
    assert_eq!(stats.invalidations, sum(|f| f.invalidations));
    assert_eq!(stats.calls(), sum(|f| f.calls()));

    let family = |name: &str| {
        stats
            .functions
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("no family {name}: {stats:?}"))
            .clone()
    };
    let lookup = family("observability::lookup");
    assert_eq!(
        (
            lookup.hits,
            lookup.misses,
            lookup.stores,
            lookup.invalidations
        ),
        (1, 1, 2, 1)
    );
    let direct = family("direct:");
    assert_eq!(
        (
            direct.hits,
            direct.misses,
            direct.stores,
            direct.invalidations
        ),
        (1, 2, 2, 2)
    );
    assert_eq!(family("grp:").invalidations, 1);
    assert_eq!((stats.hits, stats.misses, stats.invalidations), (2, 3, 4));

    // `invalidate_all_keys` counts too (a server of its own: it empties it).
    let redis = support::TestRedis::spawn(&[]);
    let own = redis.cache().await;
    own.set("a:1", &1u8, 60).await.unwrap();
    own.set("b:1", &1u8, 60).await.unwrap();
    assert_eq!(own.invalidate_all_keys().await.unwrap(), 2);
    assert_eq!(own.stats().invalidations, 2);
}

#[cfg(feature = "metrics")]
mod metrics_facade {
    use super::*;
    use metrics::{
        Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
        SharedString, Unit,
    };
    use std::sync::{Arc, Mutex};

    /// A recorder that keeps counter totals and histogram sample counts by key.
    #[derive(Default, Clone)]
    struct Collect(Arc<Mutex<Vec<(String, f64)>>>);

    struct Handle(String, Collect);

    impl CounterFn for Handle {
        fn increment(&self, value: u64) {
            self.1
                .0
                .lock()
                .unwrap()
                .push((self.0.clone(), value as f64));
        }
        fn absolute(&self, _: u64) {}
    }

    impl HistogramFn for Handle {
        fn record(&self, value: f64) {
            self.1.0.lock().unwrap().push((self.0.clone(), value));
        }
    }

    fn describe(key: &Key) -> String {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        format!("{}{{{}}}", key.name(), labels.join(","))
    }

    impl Recorder for Collect {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(Arc::new(Handle(describe(key), self.clone())))
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::from_arc(Arc::new(Handle(describe(key), self.clone())))
        }
    }

    #[test]
    fn calls_are_counted_and_timed_through_the_metrics_facade() {
        let collect = Collect::default();
        let cache = Cache::in_memory();
        let runs = AtomicUsize::new(0);
        metrics::with_local_recorder(&collect, || {
            // The recorder is thread-local: poll the calls to completion here.
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(async {
                lookup(&cache, &runs, 9, false).await;
                lookup(&cache, &runs, 9, false).await;
            });
        });
        let seen = collect.0.lock().unwrap().clone();
        let count = |name: &str| seen.iter().filter(|(k, _)| k == name).count();
        assert_eq!(
            count("redis_memo_calls_total{function=observability::lookup,outcome=miss}"),
            1,
            "{seen:?}"
        );
        assert_eq!(
            count("redis_memo_calls_total{function=observability::lookup,outcome=hit}"),
            1,
            "{seen:?}"
        );
        assert_eq!(
            count("redis_memo_call_duration_seconds{function=observability::lookup,outcome=hit}"),
            1,
            "{seen:?}"
        );
    }
}
