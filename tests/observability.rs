//! What a service sees of its cache: per-function stats and (feature
//! `metrics`) counters and a latency histogram. The span per call is checked
//! in `tracing_span.rs`, a binary of its own so that no other test registers
//! the span's callsite without a subscriber at the same time.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

mod common;

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
    let redis = common::TestRedis::start();
    let cache = redis.cache().await;
    cache.invalidate_prefix("obs:").await.unwrap();
    let runs = AtomicUsize::new(0);
    lookup(&cache, &runs, 1, false).await; // miss
    lookup(&cache, &runs, 1, false).await; // hit
    lookup(&cache, &runs, 1, true).await; // skipped
    let key = lookup_key(&cache, 2, false).await.unwrap();
    cache.set_raw(&key, b"not json", None).await.unwrap();
    lookup(&cache, &runs, 2, false).await; // corrupt
    other(&cache, 1).await; // miss
    assert!(lookup_invalidate(&cache, 1, false).await.unwrap());

    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.corrupt), (1, 3, 1));
    assert_eq!(stats.invalidations, 1);
    let names: Vec<&str> = stats.functions.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["observability::lookup", "observability::other"]);
    let f = &stats.functions[0];
    assert_eq!(
        (f.hits, f.misses, f.corrupt, f.errors, f.skipped),
        (1, 1, 1, 0, 1)
    );
    assert_eq!((stats.functions[1].hits, stats.functions[1].misses), (0, 1));
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
