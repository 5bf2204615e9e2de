//! Each cached call runs in a debug-level span naming the function (or the key
//! family) and its outcome, and every event has the target `redis_memo`, so
//! `RUST_LOG=redis_memo=debug` shows them all. Alone in its binary: tracing
//! caches per-callsite interest, and a test calling without a subscriber on
//! another thread could race with it.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use redis_memo::{Cache, cached};
use redis_memo_test_support::Logs;

#[cached(ttl = 60, key_prefix = "obs:", cache = cache, skip_cache = fresh, ignore(runs))]
async fn lookup(cache: &Cache, runs: &AtomicUsize, id: u64, fresh: bool) -> u64 {
    runs.fetch_add(1, SeqCst);
    id
}

/// A body during which its own entry is invalidated: its value is refused.
#[cached(ttl = 60, key_prefix = "obs:", cache = cache)]
async fn outrun(cache: &Cache, id: u64) -> u64 {
    outrun_invalidate(cache, id).await.unwrap();
    id
}

#[tokio::test]
async fn calls_have_a_debug_span_and_every_event_the_crate_target() {
    let cache = Cache::in_memory();
    let logs = Logs::default();
    let writer = logs.clone();
    // What `RUST_LOG=redis_memo=debug` selects, and nothing else.
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_env_filter(tracing_subscriber::EnvFilter::new("redis_memo=debug"))
        .with_target(true)
        .finish();
    let runs = AtomicUsize::new(0);
    {
        let _guard = tracing::subscriber::set_default(subscriber);
        lookup(&cache, &runs, 5, false).await;
        lookup(&cache, &runs, 5, false).await;
        lookup(&cache, &runs, 5, true).await;
        cache.get_or_set("span:1", 60, || async { 1u8 }).await;
        cache.set_raw("span:2", b"not json", None).await.unwrap();
        cache.get_or_set("span:2", 60, || async { 2u8 }).await;
        outrun(&cache, 1).await;
    }
    let text = logs.text();
    let done: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("cached call done"))
        .collect();
    assert_eq!(done.len(), 6, "{text}");
    for (function, outcome) in [
        ("tracing_span::lookup", "miss"),
        ("tracing_span::lookup", "hit"),
        ("tracing_span::lookup", "skipped"),
        ("span:", "miss"),
        ("span:", "corrupt"),
    ] {
        assert!(
            done.iter()
                .any(|l| l.contains(&format!("function={function}"))
                    && l.contains(&format!("outcome=\"{outcome}\""))),
            "{function} {outcome}: {text}"
        );
    }
    // A value its key's invalidation refused: the span says so, and one line
    // at info level says what it means.
    assert!(
        done.iter()
            .any(|l| l.contains("function=tracing_span::outrun")
                && l.contains("outcome=\"miss\"")
                && l.contains("fill=\"refused\"")),
        "{text}"
    );
    assert!(
        done.iter()
            .any(|l| l.contains("function=tracing_span::lookup") && l.contains("fill=\"stored\"")),
        "{text}"
    );
    let refused: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("INFO") && l.contains("not stored"))
        .collect();
    assert_eq!(refused.len(), 1, "{text}");
    assert!(refused[0].contains("fills_refused"), "{text}");
    // The corrupt value's warning, under the crate's target like the rest.
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(warnings[0].contains("redis_memo:"), "{text}");
    assert!(warnings[0].contains("span:2"), "{text}");
    assert!(
        text.lines().all(|l| l.contains("redis_memo")),
        "every line comes from the crate's target: {text}"
    );
}
