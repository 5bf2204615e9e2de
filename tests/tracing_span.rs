//! Each cached call runs in a debug-level span naming the function and its
//! outcome. Alone in its binary: tracing caches per-callsite interest, and a
//! test calling without a subscriber on another thread could race with it.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use common::Captured;
use redis_memo::{Cache, cached};

#[cached(ttl = 60, key_prefix = "obs:", cache = cache, skip_cache = fresh, ignore(runs))]
async fn lookup(cache: &Cache, runs: &AtomicUsize, id: u64, fresh: bool) -> u64 {
    runs.fetch_add(1, SeqCst);
    id
}

#[tokio::test]
async fn each_call_has_a_debug_span_with_the_function_and_its_outcome() {
    let cache = Cache::in_memory();
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let runs = AtomicUsize::new(0);
    {
        let _guard = tracing::subscriber::set_default(subscriber);
        lookup(&cache, &runs, 5, false).await;
        lookup(&cache, &runs, 5, false).await;
        lookup(&cache, &runs, 5, true).await;
    }
    let text = logs.text();
    let done: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("cached call done") || l.contains("redis_memo::call"))
        .collect();
    assert!(
        done.iter()
            .any(|l| l.contains("function=tracing_span::lookup") && l.contains("outcome=\"miss\"")),
        "{text}"
    );
    assert!(done.iter().any(|l| l.contains("outcome=\"hit\"")), "{text}");
    assert!(!text.contains("WARN"), "{text}");
}
