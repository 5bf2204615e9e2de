//! Cross-process stampede control: with `lease = ...`, two independent
//! processes (here: two `Cache` handles on two runtimes in two threads) that
//! miss the same key run the body once between them. The lease is the
//! placeholder the first one's miss writes into the key.

use redis_memo_test_support as support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use redis_memo::{Cache, cached};
use support::{TestRedis, command_counts, until};
use tokio::sync::Semaphore;

struct Probe {
    runs: AtomicUsize,
    gate: Semaphore,
}

#[cached(ttl = 60, key_prefix = "lease:", lease = 30, cache = cache, ignore(probe))]
async fn expensive(cache: &Cache, probe: &Probe, id: u64) -> u64 {
    if probe.runs.fetch_add(1, SeqCst) == 0 {
        let _permit = probe.gate.acquire().await;
    }
    id * 100
}

/// Runs `expensive` in a thread with its own runtime and its own connection.
fn process(url: String, probe: Arc<Probe>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let cache = Cache::connect(&url).await.unwrap();
            expensive(&cache, &probe, 1).await
        })
    })
}

#[tokio::test]
async fn two_processes_missing_one_key_run_the_body_once() {
    let redis = TestRedis::spawn(&[]);
    let mut conn = redis.client().await;
    let key = expensive_key(&Cache::in_memory(), 1).await.unwrap();
    let probe = Arc::new(Probe {
        runs: AtomicUsize::new(0),
        gate: Semaphore::new(0),
    });

    let first = process(redis.url().to_string(), probe.clone());
    until(
        "the first process holds the key with its placeholder",
        async || placeholder_in(&mut conn, &key).await,
    )
    .await;
    let gets_before = gets(&mut conn).await;
    let second = process(redis.url().to_string(), probe.clone());
    until("the second process waits, polling the key", async || {
        gets(&mut conn).await > gets_before + 2
    })
    .await;

    probe.gate.add_permits(1);
    assert_eq!(first.join().unwrap(), 100);
    assert_eq!(
        second.join().unwrap(),
        100,
        "the second process got the first one's value"
    );
    assert_eq!(
        probe.runs.load(SeqCst),
        1,
        "one run of the body across both processes"
    );
    let stored: Option<Vec<u8>> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        stored.as_deref(),
        Some(&b"100"[..]),
        "the value replaced the placeholder"
    );
}

#[cached(ttl = 60, key_prefix = "lease2:", lease = 30, cache = cache, ignore(runs))]
async fn failing(cache: &Cache, runs: &AtomicUsize) -> Result<u64, String> {
    runs.fetch_add(1, SeqCst);
    Err("no value".into())
}

#[tokio::test]
async fn a_lease_is_released_when_the_body_fails() {
    let redis = TestRedis::spawn(&[]);
    let cache = redis.cache().await;
    let other = redis.cache().await;
    let runs = AtomicUsize::new(0);
    assert!(failing(&cache, &runs).await.is_err());
    let mut conn = redis.client().await;
    let key = failing_key(&cache).await.unwrap();
    assert!(
        !placeholder_in(&mut conn, &key).await,
        "the failed body's placeholder is taken back"
    );
    // Another process does not wait out the lease's 30 s.
    assert!(failing(&other, &runs).await.is_err());
    assert!(failing(&cache, &runs).await.is_err());
    assert_eq!(
        runs.load(SeqCst),
        3,
        "no lease left behind blocks the next call"
    );
}

/// How many `GET`s the server ran.
async fn gets(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    command_counts(conn).await.get("get").copied().unwrap_or(0)
}

/// Whether `key` holds a placeholder (a miss running its body).
async fn placeholder_in(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> bool {
    let held: Option<Vec<u8>> = redis::cmd("GET").arg(key).query_async(conn).await.unwrap();
    held.is_some_and(|bytes| redis_memo::is_placeholder(&bytes))
}
