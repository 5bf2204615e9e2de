//! An invalidation always wins: a body that began before an invalidation (or
//! a write) of its key never stores its value over it, and no call that
//! begins after it receives that value. Every path, on a standalone server,
//! with a local tier, from another process, without `+@scripting`, and in
//! memory. (A Redis Cluster and Sentinel: `coherence_cluster.rs`,
//! `coherence_sentinel.rs`.)

use redis_memo_test_support as support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use redis_memo::{Cache, cached};
use support::race::{
    Db, Path, Plain, Via, race, race_every_path, race_without_scripts, versioned, versioned_key,
};
use support::{TestRedis, until};

async fn plain(redis: &TestRedis) -> Plain {
    Plain::Single(redis.client().await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_wins_over_a_running_body_on_a_standalone_server() {
    let redis = TestRedis::spawn(&[]);
    let cache = redis.cache().await;
    let other = redis.cache().await;
    let mut plain = plain(&redis).await;
    race_every_path(&cache, &other, &mut plain, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_wins_with_a_local_tier() {
    let redis = TestRedis::spawn(&[]);
    let local = |redis: &TestRedis| {
        Cache::builder()
            .url(redis.url())
            .local_cache(1 << 20)
            .build()
    };
    let cache = local(&redis).await.unwrap();
    let other = local(&redis).await.unwrap();
    let mut plain = plain(&redis).await;
    for (id, path) in Path::API.into_iter().chain(Path::FOREIGN).enumerate() {
        race(&cache, Via::This, &mut plain, path, id as u64).await;
    }
    for (id, path) in Path::API.into_iter().enumerate() {
        race(
            &cache,
            Via::Other(&other),
            &mut plain,
            path,
            100 + id as u64,
        )
        .await;
    }
    assert!(cache.stats().local_tracking);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_wins_in_memory() {
    let cache = Cache::in_memory();
    for (id, path) in Path::API.into_iter().enumerate() {
        race(&cache, Via::This, &mut Plain::None, path, id as u64).await;
    }
}

/// A Redis user limited to the cache's prefixes, without `+@scripting`:
/// the value replaces its placeholder with `SET XX GET`, which never brings
/// a deleted key back, and deletes the key when it replaced a newer value.
#[tokio::test]
async fn without_scripting_no_invalidation_is_undone() {
    let redis = TestRedis::spawn(&[]);
    redis
        .acl_setuser(
            "app",
            &[
                "on",
                ">secret",
                "resetkeys",
                "~race:*",
                "~raceg:*",
                "-@all",
                "+@read",
                "+@write",
                "+@keyspace",
            ],
        )
        .await;
    let url = format!("redis://app:secret@127.0.0.1:{}", redis.port());
    let (logs, dispatch) = support::Logs::capture(tracing::Level::INFO);
    let _logs = tracing::dispatcher::set_default(&dispatch);
    let cache = Cache::connect(&url).await.unwrap();
    let mut plain = plain(&redis).await;
    for (id, path) in [
        Path::Invalidate,
        Path::InvalidateAll,
        Path::InvalidatePrefix,
        Path::InvalidateGroup,
        Path::Delete,
        Path::Prime,
        Path::Del,
        Path::Unlink,
        Path::FlushDb,
    ]
    .into_iter()
    .enumerate()
    {
        race_without_scripts(&cache, &mut plain, path, id as u64).await;
    }
    assert!(
        logs.text().contains("may not run scripts"),
        "the fallback is logged, and says what it gives up"
    );
    // A rewrite by another client during the body: the older value may be
    // seen for a round trip, then the key is deleted, never kept.
    let db = Arc::new(Db::new());
    let release = db.hold_next();
    let first = tokio::spawn({
        let (cache, db) = (cache.clone(), db.clone());
        async move { versioned(&cache, &db, 50).await }
    });
    until("the body runs", async || db.runs() == 1).await;
    let key = versioned_key(&cache, 50).await.unwrap();
    let Plain::Single(conn) = &mut plain else {
        unreachable!()
    };
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("2")
        .query_async(conn)
        .await
        .unwrap();
    release.send(()).unwrap();
    assert_eq!(first.await.unwrap(), 1);
    let left: Option<String> = redis::cmd("GET").arg(&key).query_async(conn).await.unwrap();
    assert_eq!(left, None, "the older value did not stay");
    assert!(cache.stats().fills_refused >= 9, "{:?}", cache.stats());
    assert_eq!(cache.stats().misconfigured, 0);
}

// --- a late caller, and flights across processes ---------------------------------------

/// A call that begins after another client deleted the key does not join
/// the flight of a body that began before: it sees the key changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_after_another_clients_delete_does_not_join_the_older_flight() {
    let redis = TestRedis::spawn(&[]);
    let cache = redis.cache().await;
    let mut conn = redis.client().await;
    let db = Arc::new(Db::new());
    let release = db.hold_next();
    let first = tokio::spawn({
        let (cache, db) = (cache.clone(), db.clone());
        async move { versioned(&cache, &db, 1).await }
    });
    until("the body runs", async || db.runs() == 1).await;
    db.set_version(2);
    let key = versioned_key(&cache, 1).await.unwrap();
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    // Not the older flight's value, and not waiting for it.
    let late = tokio::time::timeout(Duration::from_secs(10), versioned(&cache, &db, 1))
        .await
        .expect("the late call does not wait for the older body");
    assert_eq!(late, 2);
    assert_eq!(
        cache.in_flight(),
        0,
        "the late call's flight took the older one's place, and ended"
    );
    release.send(()).unwrap();
    assert_eq!(first.await.unwrap(), 1);
    assert_eq!(versioned(&cache, &db, 1).await, 2);
    assert_eq!(db.runs(), 2);
    assert_eq!(cache.in_flight(), 0);
}

/// Callers that begin while a body runs, before any invalidation, still
/// share it: one run, one value (single-flight is kept).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_during_a_body_share_it() {
    let redis = TestRedis::spawn(&[]);
    let cache = redis.cache().await;
    let db = Arc::new(Db::new());
    let release = db.hold_next();
    let mut calls = Vec::new();
    for _ in 0..50 {
        let (cache, db) = (cache.clone(), db.clone());
        calls.push(tokio::spawn(async move { versioned(&cache, &db, 7).await }));
    }
    until("every caller waits", async || {
        cache.in_flight_waiters(&versioned_key(&cache, 7).await.unwrap()) == 49
    })
    .await;
    release.send(()).unwrap();
    for call in calls {
        assert_eq!(call.await.unwrap(), 1);
    }
    assert_eq!(db.runs(), 1);
    assert_eq!(cache.stats().fills_refused, 0);
}

// --- stale values and refresh -------------------------------------------------------------

static STALE_DB: std::sync::LazyLock<Db> = std::sync::LazyLock::new(Db::new);

#[cached(ttl = 1, stale = 60, key_prefix = "stale:", cache = cache)]
async fn stale_versioned(cache: &Cache, id: u64) -> u64 {
    let _ = id;
    STALE_DB.body().await
}

/// The background refresh of a stale value that began before an
/// invalidation stores nothing over it; a `refresh(call)` likewise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_racing_an_invalidation_stores_nothing() {
    let redis = TestRedis::spawn(&[]);
    let cache = redis.cache().await;
    let db = &*STALE_DB;
    assert_eq!(stale_versioned(&cache, 1).await, 1);
    let key = stale_versioned_key(&cache, 1).await.unwrap();
    until("the value is stale", async || {
        matches!(cache.ttl(&key).await.unwrap(), redis_memo::KeyTtl::ExpiresIn(left) if left <= Duration::from_secs(60))
    })
    .await;
    let release = db.hold_next();
    assert_eq!(
        stale_versioned(&cache, 1).await,
        1,
        "the stale value, at once"
    );
    until("the background refresh runs", async || db.runs() == 2).await;
    db.set_version(2);
    assert!(stale_versioned_invalidate(&cache, 1).await.unwrap());
    release.send(()).unwrap();
    until("the refresh's value is refused", async || {
        cache.stats().fills_refused == 1
    })
    .await;
    assert_eq!(
        cache.get_raw(&key).await.unwrap(),
        None,
        "the refresh stored nothing"
    );
    assert_eq!(stale_versioned(&cache, 1).await, 2);

    // `refresh(call)` of a plain function: its value replaces the value it
    // read only if nothing changed the key meanwhile.
    let db = Arc::new(Db::new());
    assert_eq!(versioned(&cache, &db, 5).await, 1);
    let release = db.hold_next();
    let refreshing = tokio::spawn({
        let (cache, db) = (cache.clone(), db.clone());
        async move { redis_memo::refresh(versioned(&cache, &db, 5)).await }
    });
    until("the refresh runs", async || db.runs() == 2).await;
    db.set_version(2);
    let key = versioned_key(&cache, 5).await.unwrap();
    assert_eq!(cache.delete(&[&key]).await.unwrap(), 1);
    release.send(()).unwrap();
    assert_eq!(refreshing.await.unwrap(), 1);
    assert_eq!(cache.get_raw(&key).await.unwrap(), None);
    assert_eq!(versioned(&cache, &db, 5).await, 2);
    assert_eq!(cache.stats().fills_refused, 2);
}

// --- the placeholder ---------------------------------------------------------------------

/// While a body runs, the key holds a placeholder: other processes' calls,
/// `get` and `get_raw` never take it for a value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placeholder_is_never_read_as_a_value() {
    let redis = TestRedis::spawn(&[]);
    let cache = redis.cache().await;
    let other = redis.cache().await;
    let mut conn = redis.client().await;
    let db = Arc::new(Db::new());
    let release = db.hold_next();
    let first = tokio::spawn({
        let (cache, db) = (cache.clone(), db.clone());
        async move { versioned(&cache, &db, 3).await }
    });
    until("the body runs", async || db.runs() == 1).await;
    let key = versioned_key(&cache, 3).await.unwrap();
    let held: Vec<u8> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(redis_memo::is_placeholder(&held), "{held:?}");
    assert_eq!(other.get_raw(&key).await.unwrap(), None);
    assert_eq!(other.get::<u64>(&key).await.unwrap(), None);
    assert_eq!(other.stats().corrupt, 0, "not a corrupt value either");
    // Another process runs the body itself (no lease) and stores its value
    // over the placeholder; the first body's value then finds a value there.
    db.set_version(2);
    assert_eq!(versioned(&other, &db, 3).await, 2);
    release.send(()).unwrap();
    assert_eq!(first.await.unwrap(), 1);
    let stored: Vec<u8> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored, b"2");
    assert_eq!((other.stats().corrupt, cache.stats().corrupt), (0, 0));
}

/// A body that runs longer than `placeholder_ttl` keeps its key claimed
/// (the placeholder is renewed) and its value is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_longer_than_the_placeholder_ttl_is_still_cached() {
    let redis = TestRedis::spawn(&[]);
    let ttl = Duration::from_millis(300);
    for cache in [
        Cache::builder()
            .url(redis.url())
            .placeholder_ttl(ttl)
            .build()
            .await
            .unwrap(),
        Cache::builder().placeholder_ttl(ttl).build_in_memory(),
    ] {
        let db = Db::new();
        let slow = versioned(&cache, &db, 9);
        let release = db.hold_next();
        let (value, ()) = tokio::join!(slow, async {
            tokio::time::sleep(ttl * 4).await;
            release.send(()).unwrap();
        });
        assert_eq!(value, 1);
        assert_eq!(
            versioned(&cache, &db, 9).await,
            1,
            "{}",
            cache.backend_kind()
        );
        assert_eq!(db.runs(), 1, "the slow body's value was stored");
        assert_eq!(cache.stats().fills_refused, 0);
    }
}

#[cached(ttl = 300, key_prefix = "fails:", lease = 30, cache = cache, ignore(runs))]
async fn fails(cache: &Cache, runs: &AtomicUsize, id: u64) -> Result<u64, String> {
    runs.fetch_add(1, SeqCst);
    Err(format!("no value for {id}"))
}

/// A body that fails takes its placeholder back: nothing is left behind for
/// other processes to wait on.
#[tokio::test]
async fn a_failed_body_leaves_no_placeholder() {
    let redis = TestRedis::spawn(&[]);
    let cache = redis.cache().await;
    let runs = AtomicUsize::new(0);
    assert!(fails(&cache, &runs, 1).await.is_err());
    let mut conn = redis.client().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("fails:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys, Vec::<String>::new());
}

// --- a process killed mid-body ---------------------------------------------------------

#[cached(ttl = 300, key_prefix = "killed:", lease = 2, cache = cache, ignore(hang))]
async fn leased_version(cache: &Cache, hang: bool, id: u64) -> u64 {
    if hang {
        std::future::pending::<()>().await;
    }
    id * 10
}

#[cached(ttl = 300, key_prefix = "killed:", cache = cache, ignore(hang))]
async fn plain_version(cache: &Cache, hang: bool, id: u64) -> u64 {
    if hang {
        std::future::pending::<()>().await;
    }
    id * 10
}

/// The child half of `a_process_killed_mid_body_holds_the_key_up_at_most_its_lease`:
/// runs only when that test starts this binary with `COHERENCE_CHILD_URL`.
#[tokio::test]
async fn child_process_that_hangs_in_its_body() {
    let Ok(url) = std::env::var("COHERENCE_CHILD_URL") else {
        return;
    };
    let cache = Cache::connect(&url).await.unwrap();
    tokio::join!(
        leased_version(&cache, true, 1),
        plain_version(&cache, true, 2)
    );
}

/// A process that dies mid-body leaves its placeholder behind. Another
/// process's call of a function without `lease` runs the body and stores
/// its value over it at once; with `lease`, it waits at most the lease first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_mid_body_holds_the_key_up_at_most_its_lease() {
    let redis = TestRedis::spawn(&[]);
    let cache = redis.cache().await;
    let mut conn = redis.client().await;
    let leased_key = leased_version_key(&cache, 1).await.unwrap();
    let plain_key = plain_version_key(&cache, 2).await.unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_process_that_hangs_in_its_body"])
        .env("COHERENCE_CHILD_URL", redis.url())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("run this test binary as the child process");
    until("the child holds both keys", async || {
        let held: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
            .arg(&leased_key)
            .arg(&plain_key)
            .query_async(&mut conn)
            .await
            .unwrap();
        held.iter()
            .all(|v| v.as_deref().is_some_and(redis_memo::is_placeholder))
    })
    .await;
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();

    assert_eq!(plain_version(&cache, false, 2).await, 20);
    let stored: Option<String> = redis::cmd("GET")
        .arg(&plain_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        stored.as_deref(),
        Some("20"),
        "cached at once, without a lease"
    );

    let start = Instant::now();
    assert_eq!(leased_version(&cache, false, 1).await, 10);
    let waited = start.elapsed();
    let stored: Option<String> = redis::cmd("GET")
        .arg(&leased_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored.as_deref(), Some("10"), "cached after the lease");
    assert!(
        waited < Duration::from_secs(10),
        "waited {waited:?}, the lease is 2 s"
    );
}

// --- a randomized history ---------------------------------------------------------------

#[cached(ttl = 300, key_prefix = "hist:", cache = cache, ignore(db))]
async fn history_read(cache: &Cache, db: &HistoryDb, key: u64) -> u64 {
    let version = db.versions[key as usize].load(SeqCst);
    let pause = db.pause(key);
    tokio::time::sleep(pause).await;
    version
}

/// Versions per key, and random body lengths.
struct HistoryDb {
    versions: Vec<AtomicU64>,
    seed: AtomicU64,
}

impl HistoryDb {
    fn pause(&self, key: u64) -> Duration {
        let n = self.random() ^ key;
        Duration::from_micros(n % 8_000)
    }

    fn random(&self) -> u64 {
        // xorshift: a fixed seed, so a failure can be replayed.
        let mut x = self.seed.load(SeqCst);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.seed.store(x, SeqCst);
        x
    }
}

/// Several processes (caches on their own connections, some with a local
/// tier) read a few keys while one writer moves their versions and
/// invalidates them by random paths. A read that began after an
/// invalidation returned never sees an older version: at once in the
/// writer's process and in every process without a local tier; in a local
/// tier of another process (or after another client's `DEL`) once the
/// invalidation reached it (the tracking push, which this allows 500 ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_history_has_no_stale_reads() {
    const KEYS: u64 = 3;
    const BOUND: Duration = Duration::from_millis(500);
    let redis = TestRedis::spawn(&[]);
    let with_local = || {
        Cache::builder()
            .url(redis.url())
            .local_cache(1 << 20)
            .build()
    };
    let caches = [
        with_local().await.unwrap(),
        redis.cache().await,
        with_local().await.unwrap(),
        redis.cache().await,
    ];
    let db = Arc::new(HistoryDb {
        versions: (0..KEYS).map(|_| AtomicU64::new(1)).collect(),
        seed: AtomicU64::new(0x9e37_79b9_7f4a_7c15),
    });
    // When each version's invalidation returned, per key, and whether the
    // writer's process made it (rather than another client).
    type Settled = HashMap<(u64, u64), (Instant, bool)>;
    let settled: Arc<std::sync::Mutex<Settled>> = Default::default();
    let stop = Arc::new(AtomicBool::new(false));
    let checked = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for (process, cache) in caches.iter().enumerate() {
        for task in 0..3u64 {
            let (cache, db, settled, stop, checked) = (
                cache.clone(),
                db.clone(),
                settled.clone(),
                stop.clone(),
                checked.clone(),
            );
            readers.push(tokio::spawn(async move {
                let mut n = task;
                while !stop.load(SeqCst) {
                    n = n
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let key = (n >> 33) % KEYS;
                    let began = Instant::now();
                    let value = history_read(&cache, &db, key).await;
                    // Every version whose invalidation returned before this
                    // read began (less the bound, for a local tier it reaches
                    // through tracking).
                    let local_tier = process % 2 == 0;
                    let floor = settled
                        .lock()
                        .unwrap()
                        .iter()
                        .filter(|((k, _), (at, own))| {
                            let bound = if local_tier && !(process == 0 && *own) {
                                BOUND
                            } else {
                                Duration::ZERO
                            };
                            *k == key && *at + bound <= began
                        })
                        .map(|((_, v), _)| *v)
                        .max()
                        .unwrap_or(1);
                    assert!(
                        value >= floor,
                        "process {process} read version {value} of key {key} after \
                         version {floor} was invalidated"
                    );
                    checked.fetch_add(1, SeqCst);
                }
            }));
        }
    }
    let writer = &caches[0];
    let mut conn = redis.client().await;
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut paths = HashMap::<&str, u32>::new();
    while Instant::now() < deadline {
        let key = db.random() % KEYS;
        let version = db.versions[key as usize].fetch_add(1, SeqCst) + 1;
        let entry = history_read_key(writer, key).await.unwrap();
        let (path, own) = match db.random() % 6 {
            0 => {
                history_read_invalidate(writer, key).await.unwrap();
                ("invalidate", true)
            }
            1 => {
                history_read_prime(writer, key, &version).await.unwrap();
                ("prime", true)
            }
            2 => {
                writer.delete(&[&entry]).await.unwrap();
                ("delete", true)
            }
            3 => {
                writer.invalidate_prefix("hist:").await.unwrap();
                ("invalidate_prefix", true)
            }
            4 => {
                writer.set(&entry, &version, 300).await.unwrap();
                ("set", true)
            }
            _ => {
                let _: () = redis::cmd("DEL")
                    .arg(&entry)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                ("another client's DEL", false)
            }
        };
        *paths.entry(path).or_default() += 1;
        settled
            .lock()
            .unwrap()
            .insert((key, version), (Instant::now(), own));
        tokio::time::sleep(Duration::from_micros(db.random() % 3_000)).await;
    }
    stop.store(true, SeqCst);
    for reader in readers {
        reader.await.expect("no stale read");
    }
    let refused: u64 = caches.iter().map(|c| c.stats().fills_refused).sum();
    assert!(
        checked.load(SeqCst) > 1_000,
        "{} reads checked",
        checked.load(SeqCst)
    );
    assert!(refused > 0, "the race happened: {refused} values refused");
    assert_eq!(paths.len(), 6, "{paths:?}");
}
