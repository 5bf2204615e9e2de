//! Reading through a cache's local tier: a cache with one, and its tracking
//! connections; a test waits until a key is held there (a local hit), or
//! until a change reached it.

use redis_memo::Cache;

use crate::{TestRedis, until};

/// A cache on `redis` with a 1 MiB local tier.
pub async fn local_cache(redis: &TestRedis) -> Cache {
    Cache::builder()
        .url(redis.url())
        .local_cache(1 << 20)
        .build()
        .await
        .expect("connect with a local tier")
}

/// The `CLIENT LIST` ids of the tracking connections on `redis` (named
/// `redis-memo-tracking`), to kill them.
pub async fn tracking_client_ids(redis: &TestRedis) -> Vec<String> {
    let list = match redis.command(&["CLIENT", "LIST"]).await {
        redis::Value::BulkString(bytes) => String::from_utf8(bytes).expect("CLIENT LIST is text"),
        redis::Value::VerbatimString { text, .. } => text,
        other => panic!("CLIENT LIST: {other:?}"),
    };
    list.lines()
        .filter(|line| line.contains("name=redis-memo-tracking"))
        .filter_map(|line| line.split(' ').find_map(|f| f.strip_prefix("id=")))
        .map(str::to_owned)
        .collect()
}

/// What `key` holds for `cache`: its value, or 0 when there is none (the
/// body runs and stores 0).
pub async fn read(cache: &Cache, key: &str) -> u64 {
    cache.get_or_set(key, 300, || async { 0 }).await
}

/// Reads `key` on `cache` until a read is a local hit, checking each read
/// gives `value`. (A write's invalidation can reach a handle after its next
/// read began; that read then leaves the tier as it was.)
pub async fn hold_locally(cache: &Cache, key: &str, value: u64) {
    until_local_hit(cache, key, async || read(cache, key).await, value).await;
}

/// Calls `call` on `cache` until a call is a local hit, checking each call
/// gives `value`.
pub async fn until_local_hit(
    cache: &Cache,
    what: &str,
    mut call: impl AsyncFnMut() -> u64,
    value: u64,
) {
    until(&format!("{what} is held locally"), async || {
        let before = cache.stats().local_hits;
        assert_eq!(call().await, value, "{what}");
        cache.stats().local_hits > before
    })
    .await;
}

/// `cache` eventually stops serving `old` for `key`.
pub async fn stops_serving(cache: &Cache, key: &str, old: u64, what: &str) {
    until(what, async || read(cache, key).await != old).await;
}

/// Four tasks read `keys` through `reader`'s local tier while `writer`
/// writes higher and higher values to them, before and all through `fault`
/// (which returns once the cache may work again: a failover done and
/// tracked); then every key is written once more, with a last value.
/// Checks that every value read was one written (never one from nowhere),
/// and that the reader ends up serving the last value of every key, and
/// keeps serving it (nothing older came back into the tier).
pub async fn load_through(
    writer: &Cache,
    reader: &Cache,
    keys: &[String],
    fault: impl AsyncFnOnce(),
) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
    use std::time::Duration;

    let keys: Arc<Vec<String>> = Arc::new(keys.to_vec());
    // The highest value written to each key so far.
    let written: Arc<Vec<AtomicU64>> = Arc::new(keys.iter().map(|_| AtomicU64::new(0)).collect());
    for key in keys.iter() {
        writer.set(key, &0u64, 300).await.unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (reads, unknown) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut tasks = Vec::new();
    for task in 0..4 {
        let (reader, keys, written) = (reader.clone(), keys.clone(), written.clone());
        let (stop, reads, unknown) = (stop.clone(), reads.clone(), unknown.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = task;
            while !stop.load(SeqCst) {
                let k = i % keys.len();
                // 0 is also what the body returns when the key is missing.
                if read(&reader, &keys[k]).await > written[k].load(SeqCst) {
                    unknown.fetch_add(1, SeqCst);
                }
                reads.fetch_add(1, SeqCst);
                i += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }));
    }
    let write_all = async |value: u64| {
        for (k, key) in keys.iter().enumerate() {
            written[k].fetch_max(value, SeqCst);
            // Fails open while the key's server is down.
            let _ = writer.set(key, &value, 300).await;
        }
    };
    for value in 1..=20 {
        write_all(value).await;
    }
    let recovered = AtomicBool::new(false);
    let faulted = async {
        fault().await;
        recovered.store(true, SeqCst);
    };
    let writing = async {
        let mut value = 21;
        while !recovered.load(SeqCst) {
            write_all(value).await;
            value += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::join!(faulted, writing);
    let last = 1_000_000;
    for (k, key) in keys.iter().enumerate() {
        written[k].fetch_max(last, SeqCst);
        until(&format!("{key} is written"), async || {
            writer.set(key, &last, 300).await.is_ok()
        })
        .await;
    }
    stop.store(true, SeqCst);
    for task in tasks {
        task.await.expect("no reader panicked");
    }
    assert!(reads.load(SeqCst) > 100, "the readers ran");
    assert_eq!(
        unknown.load(SeqCst),
        0,
        "a value that was never written was served"
    );
    for key in keys.iter() {
        until(
            &format!("the reader serves the last value of {key}"),
            async || read(reader, key).await == last,
        )
        .await;
        hold_locally(reader, key, last).await;
    }
    for _ in 0..20 {
        for key in keys.iter() {
            assert_eq!(read(reader, key).await, last, "{key}");
        }
    }
}
