//! Behind Sentinel: the cache finds the primary through the sentinels, and
//! after a failover (`SENTINEL FAILOVER`, or the primary SIGKILLed) it finds
//! the new one by itself, under load, without a failed call or a wrong value.
//! Each test starts its own primary, replica and three sentinels.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use redis_memo::{Cache, Error};
use redis_memo_test_support::{TestRedis, TestSentinel, until};

/// Calls in flight at once during a failover.
const TASKS: u64 = 64;
/// Distinct keys the tasks cycle through.
const KEYS: u64 = 256;

/// Whether the installed redis-server speaks TLS; says the test is skipped when not.
fn tls_or_skip() -> bool {
    let supported = redis_memo_test_support::tls_supported();
    if !supported {
        eprintln!("skipped: this redis-server was built without TLS (BUILD_TLS=yes)");
    }
    supported
}

async fn start() -> TestSentinel {
    tokio::task::spawn_blocking(TestSentinel::start)
        .await
        .expect("the sentinel setup starts")
}

fn value_of(key: u64) -> String {
    format!("value-{key}")
}

async fn read(sentinel: &TestSentinel, port: u16, key: &str) -> Option<String> {
    let mut conn = sentinel.node_client(port).await;
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .expect("plain GET")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_sentinel_caches_in_the_primary_the_sentinels_name() {
    let sentinel = start().await;
    let cache = Cache::connect_sentinel(sentinel.sentinel_urls(), sentinel.service_name())
        .await
        .unwrap();
    assert_eq!(cache.backend_kind(), "redis-sentinel");
    cache.ping().await.unwrap();
    let runs = AtomicU64::new(0);
    for _ in 0..3 {
        let value = cache
            .get_or_set("sentinel:basic", 60, || async {
                runs.fetch_add(1, Ordering::Relaxed);
                value_of(1)
            })
            .await;
        assert_eq!(value, value_of(1));
    }
    assert_eq!(runs.load(Ordering::Relaxed), 1, "stored once, then hits");
    let stored = read(&sentinel, sentinel.primary_port(), "sentinel:basic").await;
    assert_eq!(
        stored.as_deref(),
        Some("\"value-1\""),
        "written to the primary"
    );
    assert_eq!(cache.stats().hits, 2);
    assert_eq!(cache.invalidate_prefix("sentinel:").await.unwrap(), 1);
    assert_eq!(
        read(&sentinel, sentinel.primary_port(), "sentinel:basic").await,
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_service_name_or_a_non_sentinel_address_is_a_clear_error() {
    let sentinel = start().await;
    match Cache::connect_sentinel(sentinel.sentinel_urls(), "no-such-service").await {
        Err(Error::NoPrimary { service, advice }) => {
            assert_eq!(service, "no-such-service");
            assert!(advice.contains("no Sentinel monitors"), "{advice}");
        }
        other => panic!("expected NoPrimary, got {other:?}"),
    }
    let plain = TestRedis::spawn(&[]);
    match Cache::connect_sentinel([plain.url()], sentinel.service_name()).await {
        Err(Error::WrongServer { found, advice }) => {
            assert_eq!(found, "not a Sentinel");
            assert!(advice.contains("Cache::connect"), "{advice}");
        }
        other => panic!("expected WrongServer, got {other:?}"),
    }
    let empty: [&str; 0] = [];
    assert!(matches!(
        Cache::connect_sentinel(empty, "x").await,
        Err(Error::InvalidUrl { .. })
    ));
    assert!(matches!(
        Cache::connect_sentinel(sentinel.sentinel_urls(), " ").await,
        Err(Error::InvalidUrl { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lazy_sentinel_cache_connects_in_the_background() {
    let sentinel = start().await;
    let cache = Cache::builder()
        .sentinel(sentinel.sentinel_urls(), sentinel.service_name())
        .build_lazy()
        .await
        .unwrap();
    until("the lazy cache reaches the primary", async || {
        cache.ping().await.is_ok()
    })
    .await;
    cache.set("sentinel:lazy", &5u8, 60).await.unwrap();
    let stored = read(&sentinel, sentinel.primary_port(), "sentinel:lazy").await;
    assert_eq!(stored.as_deref(), Some("5"));
}

/// What the calls under load saw.
#[derive(Default)]
struct Load {
    calls: AtomicU64,
    wrong: AtomicU64,
    runs: AtomicU64,
    stop: AtomicBool,
}

/// `TASKS` tasks calling `get_or_set` on `KEYS` keys until told to stop,
/// checking every value.
fn load(cache: &Cache, prefix: &'static str) -> (Arc<Load>, Vec<tokio::task::JoinHandle<()>>) {
    let load = Arc::new(Load::default());
    let tasks = (0..TASKS)
        .map(|task| {
            let (cache, load) = (cache.clone(), load.clone());
            tokio::spawn(async move {
                let mut i = task;
                while !load.stop.load(Ordering::Relaxed) {
                    let key = i % KEYS;
                    let value = cache
                        .get_or_set(&format!("{prefix}{key}"), 600, || async {
                            load.runs.fetch_add(1, Ordering::Relaxed);
                            value_of(key)
                        })
                        .await;
                    load.calls.fetch_add(1, Ordering::Relaxed);
                    if value != value_of(key) {
                        load.wrong.fetch_add(1, Ordering::Relaxed);
                    }
                    i += TASKS;
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    (load, tasks)
}

/// Runs the load across a failover done by `fail_over`, then checks that
/// no call failed or saw a wrong value, that writes land on the new primary
/// and that later calls hit.
/// With `tls`, the data nodes are reached over TLS with the test CA.
async fn survives_a_failover(
    prefix: &'static str,
    tls: bool,
    fail_over: impl FnOnce(&mut TestSentinel),
) {
    let mut sentinel = if tls {
        tokio::task::spawn_blocking(TestSentinel::start_tls)
            .await
            .unwrap()
    } else {
        start().await
    };
    let mut builder = Cache::builder().sentinel(sentinel.sentinel_urls(), sentinel.service_name());
    if let Some(certs) = sentinel.certs() {
        builder = builder
            .url("rediss://primary")
            .tls_ca_certificate(certs.ca.cert_pem.clone());
    }
    let cache = builder.build().await.unwrap();
    let old = sentinel.primary_port();
    let (load, tasks) = load(&cache, prefix);
    until("the load fills the cache", async || {
        cache.stats().hits > 1_000
    })
    .await;

    tokio::task::block_in_place(|| fail_over(&mut sentinel));
    let new = tokio::task::block_in_place(|| sentinel.wait_for_primary_change(old));
    assert_ne!(new, old);

    // Writes land on the new primary (read back with a plain client).
    let mut n = 0u64;
    until("a write lands on the new primary", async || {
        n += 1;
        let key = format!("{prefix}after:{n}");
        cache.get_or_set(&key, 600, || async { value_of(n) }).await;
        read(&sentinel, new, &key).await == Some(format!("\"{}\"", value_of(n)))
    })
    .await;
    // Later calls hit: stats grow and the body does not run again.
    let before = (cache.stats().hits, load.calls.load(Ordering::Relaxed));
    until("the calls hit on the new primary", async || {
        let stats = cache.stats();
        stats.hits > before.0 + 1_000 && load.calls.load(Ordering::Relaxed) > before.1 + 1_000
    })
    .await;
    let runs = load.runs.load(Ordering::Relaxed);
    let hits = cache.stats().hits;
    until("a stretch of calls with no body run", async || {
        cache.stats().hits > hits + 2_000
    })
    .await;
    load.stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("no call panicked");
    }
    assert_eq!(
        load.runs.load(Ordering::Relaxed),
        runs,
        "the bodies did not run again once the new primary served the keys"
    );
    assert_eq!(load.wrong.load(Ordering::Relaxed), 0, "no wrong value");
    let stats = cache.stats();
    assert!(
        load.calls.load(Ordering::Relaxed) > 5_000,
        "the load ran: {stats:?}"
    );
    let stored = read(&sentinel, new, &format!("{prefix}0")).await;
    assert_eq!(stored, Some(format!("\"{}\"", value_of(0))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_under_load_loses_no_call_and_moves_to_the_new_primary() {
    survives_a_failover("failover:", false, |sentinel| sentinel.failover()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_under_load_loses_no_call_and_moves_to_the_new_primary() {
    survives_a_failover("killed:", false, |sentinel| {
        let primary = sentinel.primary_port();
        sentinel.kill(primary);
    })
    .await;
}

/// A plain command on `port`, authenticated with `password` when given.
async fn command(port: u16, password: Option<&str>, cmd: &redis::Cmd) -> redis::Value {
    let auth = password.map_or(String::new(), |p| format!(":{p}@"));
    let client = redis::Client::open(format!("redis://{auth}127.0.0.1:{port}")).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    cmd.query_async(&mut conn).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_nodes_password_and_db_come_from_the_url() {
    let sentinel = start().await;
    let service = sentinel.service_name();
    // The sentinels learn the password first, so that none of them takes the
    // primary for down when it starts asking for one.
    for port in sentinel.sentinel_ports() {
        let set = redis::cmd("SENTINEL")
            .arg("SET")
            .arg(service)
            .arg("auth-pass")
            .arg("secret")
            .clone();
        command(port, None, &set).await;
    }
    let (primary, replica) = (sentinel.primary_port(), sentinel.replica_port());
    let config = |name: &str| {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg("secret")
            .clone()
    };
    command(replica, None, &config("masterauth")).await;
    command(replica, None, &config("requirepass")).await;
    command(primary, None, &config("requirepass")).await;

    match Cache::connect_sentinel(sentinel.sentinel_urls(), service).await {
        Err(err @ Error::Connection(_)) => {
            assert!(err.to_string().contains("Authentication required"), "{err}")
        }
        other => panic!("expected an authentication error, got {other:?}"),
    }
    let cache = Cache::builder()
        .sentinel(sentinel.sentinel_urls(), service)
        .url("redis://:secret@primary/2")
        .build()
        .await
        .unwrap();
    cache.set("sentinel:auth", &3u8, 60).await.unwrap();
    let mut read = redis::pipe();
    read.cmd("SELECT")
        .arg(2)
        .ignore()
        .cmd("GET")
        .arg("sentinel:auth");
    let client = redis::Client::open(format!("redis://:secret@127.0.0.1:{primary}")).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let (stored,): (Option<String>,) = read.query_async(&mut conn).await.unwrap();
    assert_eq!(
        stored.as_deref(),
        Some("3"),
        "db 2 of the primary, as the URL says"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_the_data_nodes_through_sentinel_trusts_the_given_ca() {
    if !tls_or_skip() {
        return;
    }
    let sentinel = tokio::task::spawn_blocking(TestSentinel::start_tls)
        .await
        .unwrap();
    let ca = sentinel.certs().unwrap().ca.cert_pem.clone();
    let builder = Cache::builder()
        .sentinel(sentinel.sentinel_urls(), sentinel.service_name())
        .url("rediss://primary");
    match builder.clone().build().await {
        Err(Error::Tls { advice, .. }) => {
            assert!(advice.contains("tls_ca_certificate"), "{advice}")
        }
        other => panic!("expected the untrusted-CA error, got {other:?}"),
    }
    let cache = builder.tls_ca_certificate(ca).build().await.unwrap();
    assert_eq!(
        cache.get_or_set("sentinel:tls", 60, || async { 4u8 }).await,
        4
    );
    let primary = sentinel.primary_port();
    assert_ne!(
        primary,
        sentinel.plain_port(primary),
        "the sentinels name the TLS port"
    );
    let stored = read(&sentinel, primary, "sentinel:tls").await;
    assert_eq!(
        stored.as_deref(),
        Some("4"),
        "stored on the primary over TLS"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_over_tls_reconnects_with_the_same_certificates() {
    if !tls_or_skip() {
        return;
    }
    survives_a_failover("tls-failover:", true, |sentinel| sentinel.failover()).await;
}
