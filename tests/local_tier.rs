//! The local tier (`CacheBuilder::local_cache`): hits without a network call,
//! kept coherent with Redis across handles and processes by client tracking,
//! read-your-own-writes, a bounded size, and cooperative hits.
//!
//! Two `Cache` handles on one test server have separate connections and
//! separate local tiers, like two processes; one test runs a real second
//! process (this test binary, re-invoked).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use redis_memo::{Cache, Policy, cached, refresh};
use redis_memo_test_support::tier::{
    hold_locally, local_cache, read, stops_serving, tracking_client_ids, until_local_hit,
};
use redis_memo_test_support::{TestRedis, TlsOptions, command_counts, tls_supported, until};

static RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(ttl = 300, key_prefix = "lt:", cache = cache)]
async fn square(cache: &Cache, x: u64) -> u64 {
    RUNS.fetch_add(1, SeqCst);
    x * x
}

#[cached(ttl = 300, key_prefix = "ltg:", cache = cache, grouped)]
async fn grouped_square(cache: &Cache, x: u64) -> u64 {
    x * x + RUNS.fetch_add(1, SeqCst)
}

#[cached(ttl = 300, key_prefix = "ltr:", cache = cache, local = false)]
async fn remote_only(cache: &Cache, x: u64) -> u64 {
    x + 1
}

#[cached(ttl = 300, key_prefix = "ltl:", cache = cache)]
async fn local_ok(cache: &Cache, x: u64) -> u64 {
    x + 1
}

#[tokio::test]
async fn a_local_hit_makes_no_network_call_and_is_counted() {
    let redis = TestRedis::spawn(&[]);
    let mut plain = redis.client().await;
    // Written before the cache tracks: no invalidation of it can arrive late.
    let _: () = redis::cmd("SET")
        .arg("k:1")
        .arg("0")
        .query_async(&mut plain)
        .await
        .unwrap();
    let cache = local_cache(&redis).await;
    assert!(cache.stats().local_tracking, "tracking is on once built");
    assert_eq!(read(&cache, "k:1").await, 0); // a Redis hit, kept locally
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut plain)
        .await
        .unwrap();
    for _ in 0..100 {
        assert_eq!(read(&cache, "k:1").await, 0);
    }
    let counts = command_counts(&mut plain).await;
    assert_eq!(counts.get("get"), None, "no GET for local hits: {counts:?}");
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.local_hits, stats.misses), (101, 100, 0));
    assert_eq!(
        stats.calls(),
        101,
        "local hits are inside the partition of calls"
    );
    assert_eq!(stats.functions[0].local_hits, 100);
    assert_eq!(stats.local_entries, 1);
    assert_eq!(
        stats.local_bytes,
        ("k:1".len() + 2 * "0".len()) as u64,
        "key + value bytes + the decoded copy, weighed as the value"
    );
}

#[tokio::test]
async fn local_false_reads_redis_on_every_call() {
    let redis = TestRedis::spawn(&[]);
    let cache = local_cache(&redis).await;
    let mut plain = redis.client().await;
    remote_only(&cache, 1).await;
    local_ok(&cache, 1).await;
    cache
        .get_or_set("p:1", Policy::ttl(60).local(false), || async { 1 })
        .await;
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut plain)
        .await
        .unwrap();
    for _ in 0..10 {
        assert_eq!(remote_only(&cache, 1).await, 2);
        assert_eq!(local_ok(&cache, 1).await, 2);
        let v: u64 = cache
            .get_or_set("p:1", Policy::ttl(60).local(false), || async { 1 })
            .await;
        assert_eq!(v, 1);
    }
    let counts = command_counts(&mut plain).await;
    assert_eq!(counts.get("get"), Some(&20), "{counts:?}");
    assert_eq!(cache.stats().local_hits, 10);
}

#[tokio::test]
async fn another_handles_changes_reach_this_one() {
    let redis = TestRedis::spawn(&[]);
    let (a, b) = (local_cache(&redis).await, local_cache(&redis).await);
    let mut plain = redis.client().await;

    // A write.
    a.set("w:1", &1u64, 300).await.unwrap();
    hold_locally(&b, "w:1", 1).await;
    a.set("w:1", &2u64, 300).await.unwrap();
    stops_serving(&b, "w:1", 1, "b sees a's write").await;
    assert_eq!(read(&b, "w:1").await, 2);

    // invalidate_prefix.
    a.set("pre:1", &5u64, 300).await.unwrap();
    hold_locally(&b, "pre:1", 5).await;
    a.invalidate_prefix("pre:").await.unwrap();
    stops_serving(&b, "pre:1", 5, "b sees a's invalidate_prefix").await;

    // A per-call helper.
    assert_eq!(square(&a, 3).await, 9);
    assert_eq!(square(&b, 3).await, 9);
    let runs = RUNS.load(SeqCst);
    assert_eq!(square(&b, 3).await, 9);
    assert_eq!(RUNS.load(SeqCst), runs, "b holds square(3)");
    square_prime(&a, 3, &10).await.unwrap();
    until("b sees a's square_prime", async || {
        square(&b, 3).await == 10
    })
    .await;
    assert!(square_invalidate(&a, 3).await.unwrap());
    until("b sees a's square_invalidate", async || {
        square(&b, 3).await == 9
    })
    .await;

    // A plain client's DEL.
    a.set("del:1", &7u64, 300).await.unwrap();
    hold_locally(&b, "del:1", 7).await;
    let _: u64 = redis::cmd("DEL")
        .arg("del:1")
        .query_async(&mut plain)
        .await
        .unwrap();
    stops_serving(&b, "del:1", 7, "b sees a plain DEL").await;

    // redis-cli DEL.
    a.set("cli:1", &8u64, 300).await.unwrap();
    hold_locally(&b, "cli:1", 8).await;
    let cli = std::env::var("REDIS_CLI").unwrap_or_else(|_| "redis-cli".into());
    let status = std::process::Command::new(&cli)
        .args(["-p", &redis.port().to_string(), "DEL", "cli:1"])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|err| panic!("cannot run {cli}: {err}"));
    assert!(status.success());
    stops_serving(&b, "cli:1", 8, "b sees redis-cli DEL").await;

    // Expiry.
    a.set("exp:1", &9u64, Duration::from_millis(300))
        .await
        .unwrap();
    hold_locally(&b, "exp:1", 9).await;
    stops_serving(&b, "exp:1", 9, "b sees the key expire").await;
}

#[tokio::test]
async fn an_eviction_reaches_the_other_handle() {
    let redis = TestRedis::spawn(&["--maxmemory", "8mb", "--maxmemory-policy", "allkeys-random"]);
    let (a, b) = (local_cache(&redis).await, local_cache(&redis).await);
    let mut plain = redis.client().await;
    a.set("ev:1", &3u64, 0).await.unwrap();
    hold_locally(&b, "ev:1", 3).await;
    let filler = vec![b'x'; 64 * 1024];
    let mut n = 0u64;
    loop {
        let exists: u64 = redis::cmd("EXISTS")
            .arg("ev:1")
            .query_async(&mut plain)
            .await
            .unwrap();
        if exists == 0 {
            break;
        }
        for _ in 0..16 {
            n += 1;
            let _: () = redis::cmd("SET")
                .arg(format!("fill:{n}"))
                .arg(&filler)
                .query_async(&mut plain)
                .await
                .unwrap();
        }
        assert!(n < 100_000, "the key was never evicted");
    }
    stops_serving(&b, "ev:1", 3, "b sees the eviction").await;
}

#[tokio::test]
async fn flushall_clears_the_tier() {
    let redis = TestRedis::spawn(&[]);
    let (a, b) = (local_cache(&redis).await, local_cache(&redis).await);
    a.set("fl:1", &4u64, 300).await.unwrap();
    hold_locally(&b, "fl:1", 4).await;
    redis.command(&["FLUSHALL"]).await;
    until("b's tier is empty after FLUSHALL", async || {
        b.stats().local_entries == 0
    })
    .await;
    assert_eq!(read(&b, "fl:1").await, 0);
}

#[tokio::test]
async fn a_killed_tracking_connection_clears_the_tier_and_tracking_resumes() {
    let redis = TestRedis::spawn(&[]);
    let (a, b) = (local_cache(&redis).await, local_cache(&redis).await);
    for i in 0..10 {
        a.set(&format!("kill:{i}"), &i, 300).await.unwrap();
        hold_locally(&b, &format!("kill:{i}"), i).await;
    }
    let ids = tracking_client_ids(&redis).await;
    assert_eq!(ids.len(), 2, "one tracking connection per cache: {ids:?}");
    for id in &ids {
        redis.command(&["CLIENT", "KILL", "ID", id]).await;
    }
    until("b's tier is cleared", async || b.stats().local_entries == 0).await;
    until("b tracks again", async || b.stats().local_tracking).await;
    until("a tracks again", async || a.stats().local_tracking).await;
    // Coherent again.
    hold_locally(&b, "kill:1", 1).await;
    a.set("kill:1", &100u64, 300).await.unwrap();
    stops_serving(&b, "kill:1", 1, "b sees a's write after tracking resumed").await;
}

#[tokio::test]
async fn grouped_functions_hit_locally_and_see_another_handles_invalidate_group() {
    let redis = TestRedis::spawn(&[]);
    let (a, b) = (local_cache(&redis).await, local_cache(&redis).await);
    let first = grouped_square(&b, 5).await;
    let call = async || grouped_square(&b, 5).await;
    until_local_hit(&b, "grouped_square(5) and its generation", call, first).await;
    a.invalidate_group("ltg:").await.unwrap();
    until("b sees a's invalidate_group", async || {
        grouped_square(&b, 5).await != first
    })
    .await;
}

#[tokio::test]
async fn every_write_and_invalidation_is_read_back_at_once() {
    let redis = TestRedis::spawn(&[]);
    let cache = local_cache(&redis).await;

    // set
    cache.set("ryw:1", &1u64, 300).await.unwrap();
    hold_locally(&cache, "ryw:1", 1).await;
    cache.set("ryw:1", &2u64, 300).await.unwrap();
    assert_eq!(read(&cache, "ryw:1").await, 2);

    // invalidate_prefix
    cache.invalidate_prefix("ryw:").await.unwrap();
    assert_eq!(read(&cache, "ryw:1").await, 0);

    // delete
    cache.set("ryw:2", &1u64, 300).await.unwrap();
    hold_locally(&cache, "ryw:2", 1).await;
    cache.delete(&["ryw:2"]).await.unwrap();
    assert_eq!(read(&cache, "ryw:2").await, 0);

    // set_raw
    hold_locally(&cache, "ryw:2", 0).await;
    cache.set_raw("ryw:2", b"6", None).await.unwrap();
    assert_eq!(read(&cache, "ryw:2").await, 6);

    // _prime, _invalidate, refresh, _invalidate_all
    assert_eq!(square(&cache, 4).await, 16);
    square_prime(&cache, 4, &17).await.unwrap();
    assert_eq!(square(&cache, 4).await, 17);
    assert!(square_invalidate(&cache, 4).await.unwrap());
    assert_eq!(square(&cache, 4).await, 16);
    square_prime(&cache, 4, &18).await.unwrap();
    assert_eq!(refresh(square(&cache, 4)).await, 16);
    assert_eq!(square(&cache, 4).await, 16);
    square_prime(&cache, 4, &19).await.unwrap();
    square_invalidate_all(&cache).await.unwrap();
    assert_eq!(square(&cache, 4).await, 16);

    // invalidate_group, with the generation and the value held locally
    let first = grouped_square(&cache, 2).await;
    let call = async || grouped_square(&cache, 2).await;
    until_local_hit(&cache, "grouped_square(2)", call, first).await;
    cache.invalidate_group("ltg:").await.unwrap();
    assert_ne!(grouped_square(&cache, 2).await, first);

    // invalidate_all_keys
    hold_locally(&cache, "ryw:3", 0).await;
    cache.set("ryw:3", &3u64, 300).await.unwrap();
    cache.invalidate_all_keys().await.unwrap();
    assert_eq!(read(&cache, "ryw:3").await, 0);

    // A miss's write: the value read back is the one the body returned.
    let v: u64 = cache.get_or_set("ryw:4", 300, || async { 44 }).await;
    assert_eq!(v, 44);
    assert_eq!(read(&cache, "ryw:4").await, 44);
}

/// Readers keep filling the tier while the same process writes: once a
/// write returns, no read returns an older value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fills_racing_writes_never_bring_an_old_value_back() {
    let redis = TestRedis::spawn(&[]);
    let (writer, other) = (local_cache(&redis).await, local_cache(&redis).await);
    writer.set("race:1", &0u64, 300).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for cache in [writer.clone(), other.clone()] {
        for _ in 0..8 {
            let (cache, stop) = (cache.clone(), stop.clone());
            readers.push(tokio::spawn(async move {
                while !stop.load(SeqCst) {
                    read(&cache, "race:1").await;
                    tokio::task::yield_now().await;
                }
            }));
        }
    }
    const LAST: u64 = 300;
    for v in 1..=LAST {
        if v % 2 == 0 {
            writer.set("race:1", &v, 300).await.unwrap();
        } else {
            other.set("race:1", &v, 300).await.unwrap();
        }
        let own = if v % 2 == 0 { &writer } else { &other };
        assert_eq!(read(own, "race:1").await, v, "a handle reads its own write");
    }
    stop.store(true, SeqCst);
    for reader in readers {
        reader.await.unwrap();
    }
    for cache in [&writer, &other] {
        until("both handles serve the last write", async || {
            read(cache, "race:1").await == LAST
        })
        .await;
    }
    // And keep serving it: no old value was inserted after its invalidation.
    for _ in 0..100 {
        assert_eq!(read(&other, "race:1").await, LAST);
        assert_eq!(read(&writer, "race:1").await, LAST);
    }
}

/// The child half of `another_processs_write_reaches_this_one`: runs only
/// when that test starts this binary with `LOCAL_TIER_CHILD_URL` set.
#[tokio::test]
async fn child_process_writer() {
    let Ok(url) = std::env::var("LOCAL_TIER_CHILD_URL") else {
        return;
    };
    let cache = Cache::connect(&url).await.unwrap();
    cache.set("proc:1", &42u64, 300).await.unwrap();
    cache.invalidate_prefix("procp:").await.unwrap();
}

#[tokio::test]
async fn another_processs_write_reaches_this_one() {
    let redis = TestRedis::spawn(&[]);
    let cache = local_cache(&redis).await;
    cache.set("proc:1", &1u64, 300).await.unwrap();
    cache.set("procp:1", &2u64, 300).await.unwrap();
    hold_locally(&cache, "proc:1", 1).await;
    hold_locally(&cache, "procp:1", 2).await;
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_process_writer", "--test-threads=1"])
        .env("LOCAL_TIER_CHILD_URL", redis.url())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run this test binary as the child process");
    assert!(status.success(), "the child process failed");
    stops_serving(&cache, "proc:1", 1, "the other process's write").await;
    assert_eq!(read(&cache, "proc:1").await, 42);
    stops_serving(
        &cache,
        "procp:1",
        2,
        "the other process's invalidate_prefix",
    )
    .await;
}

#[tokio::test]
async fn the_tier_stays_within_max_bytes() {
    let redis = TestRedis::spawn(&[]);
    let max_bytes = 64 * 1024;
    let cache = Cache::builder()
        .url(redis.url())
        .local_cache(max_bytes)
        .build()
        .await
        .unwrap();
    let value = "v".repeat(100);
    for i in 0..5_000u32 {
        cache.set(&format!("size:{i}"), &value, 300).await.unwrap();
        if i % 1000 == 999 {
            let stats = cache.stats();
            assert!(
                stats.local_bytes <= max_bytes,
                "{} > {max_bytes}",
                stats.local_bytes
            );
        }
    }
    let stats = cache.stats();
    assert!(
        stats.local_bytes <= max_bytes && stats.local_entries > 0,
        "{stats:?}"
    );
}

#[cached(ttl = 60, cache = cache)]
async fn hot(cache: &Cache, id: u64) -> u64 {
    id
}

/// On a current-thread runtime, a task looping over local hits must let a
/// timer on the same runtime fire: the loop ends when the timer sets the flag.
#[test]
fn a_loop_of_local_hits_does_not_starve_its_runtime() {
    let redis = TestRedis::spawn(&[]);
    let url = redis.url().to_owned();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let cache = Cache::builder()
                .url(url)
                .local_cache(1 << 20)
                .build()
                .await
                .unwrap();
            hot(&cache, 1).await;
            hot(&cache, 1).await;
            assert_eq!(cache.stats().local_hits, 1);
            let stop = Arc::new(AtomicBool::new(false));
            let timer = {
                let stop = stop.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    stop.store(true, SeqCst);
                })
            };
            while !stop.load(SeqCst) {
                hot(&cache, 1).await;
            }
            timer.await.unwrap();
            assert!(cache.stats().local_hits > 1);
        });
        let _ = done_tx.send(());
    });
    // The watchdog runs on this thread: a starved runtime never finishes.
    done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the timer never fired: local hits starved the runtime");
}

#[tokio::test]
async fn on_a_server_that_refuses_tracking_entries_live_at_most_local_ttl() {
    let redis = TestRedis::spawn(&[]);
    redis
        .acl_setuser("notrack", &["on", ">pw", "~*", "+@all", "-client"])
        .await;
    let url = format!("redis://notrack:pw@127.0.0.1:{}", redis.port());
    let cache = Cache::builder()
        .url(&url)
        .local_cache(1 << 20)
        .local_ttl(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    assert!(!cache.stats().local_tracking);
    let other = redis.cache().await;
    other.set("bound:1", &1u64, 300).await.unwrap();
    hold_locally(&cache, "bound:1", 1).await;
    other.set("bound:1", &2u64, 300).await.unwrap();
    stops_serving(&cache, "bound:1", 1, "the entry expires after local_ttl").await;
    // Its own writes are still read back at once.
    cache.set("bound:1", &3u64, 300).await.unwrap();
    assert_eq!(read(&cache, "bound:1").await, 3);
}

#[tokio::test]
async fn tracking_works_over_tls_with_a_private_ca() {
    if !tls_supported() {
        eprintln!("skipped: this redis-server was built without TLS (BUILD_TLS=yes)");
        return;
    }
    let redis = TestRedis::spawn_tls(TlsOptions { client_auth: true });
    let certs = redis.certs().unwrap();
    let builder = || {
        Cache::builder()
            .url(redis.url())
            .tls_ca_certificate(certs.ca.cert_pem.clone())
            .tls_client_certificate(certs.client.cert_pem.clone(), certs.client.key_pem.clone())
            .local_cache(1 << 20)
    };
    let (a, b) = (
        builder().build().await.unwrap(),
        builder().build().await.unwrap(),
    );
    assert!(
        b.stats().local_tracking,
        "the tracking connection speaks TLS too"
    );
    a.set("tls:1", &1u64, 300).await.unwrap();
    hold_locally(&b, "tls:1", 1).await;
    a.set("tls:1", &2u64, 300).await.unwrap();
    stops_serving(&b, "tls:1", 1, "b sees a's write over TLS").await;
}

#[tokio::test]
async fn a_restarted_server_empties_the_tier_and_tracking_resumes() {
    let mut redis = TestRedis::spawn(&[]);
    let cache = local_cache(&redis).await;
    cache.set("rs:1", &5u64, 300).await.unwrap();
    hold_locally(&cache, "rs:1", 5).await;
    redis.kill();
    until("the tier is cleared when tracking is lost", async || {
        cache.stats().local_entries == 0 && !cache.stats().local_tracking
    })
    .await;
    redis.restart(&[]);
    until("tracking resumes", async || cache.stats().local_tracking).await;
    // The restarted server is empty: the old value is not served.
    until("the value is read from the new server", async || {
        read(&cache, "rs:1").await == 0
            && cache.get_raw("rs:1").await.ok().flatten().as_deref() == Some(&b"0"[..])
    })
    .await;
    assert_eq!(read(&cache, "rs:1").await, 0);
}

#[tokio::test]
async fn without_tracking_this_librarys_own_changes_are_broadcast() {
    let redis = TestRedis::spawn(&[]);
    redis
        .acl_setuser("notrack", &["on", ">pw", "~*", "&*", "+@all", "-client"])
        .await;
    let url = format!("redis://notrack:pw@127.0.0.1:{}", redis.port());
    // local_ttl far beyond the test: only the broadcast can drop an entry.
    let connect = || {
        Cache::builder()
            .url(&url)
            .local_cache(1 << 20)
            .local_ttl(Duration::from_secs(3600))
            .build()
    };
    let (a, b) = (connect().await.unwrap(), connect().await.unwrap());
    assert!(!b.stats().local_tracking);

    a.set("bc:1", &1u64, 300).await.unwrap();
    hold_locally(&b, "bc:1", 1).await;
    a.set("bc:1", &2u64, 300).await.unwrap();
    stops_serving(&b, "bc:1", 1, "b hears a's set").await;

    a.set("bcp:1", &3u64, 300).await.unwrap();
    hold_locally(&b, "bcp:1", 3).await;
    a.invalidate_prefix("bcp:").await.unwrap();
    stops_serving(&b, "bcp:1", 3, "b hears a's invalidate_prefix").await;

    assert_eq!(square(&b, 6).await, 36);
    until_local_hit(&b, "square(6)", async || square(&b, 6).await, 36).await;
    square_prime(&a, 6, &7).await.unwrap();
    until("b hears a's square_prime", async || {
        square(&b, 6).await == 7
    })
    .await;
    assert!(square_invalidate(&a, 6).await.unwrap());
    until("b hears a's square_invalidate", async || {
        square(&b, 6).await == 36
    })
    .await;

    let first = grouped_square(&b, 8).await;
    let call = async || grouped_square(&b, 8).await;
    until_local_hit(&b, "grouped_square(8)", call, first).await;
    a.invalidate_group("ltg:").await.unwrap();
    until("b hears a's invalidate_group", async || {
        grouped_square(&b, 8).await != first
    })
    .await;
}

/// Values of stale functions say when they stop being fresh, so the local
/// tier serves them too, and a stale one held there is refreshed.
#[tokio::test]
async fn stale_calls_are_served_by_the_local_tier_and_still_refresh() {
    let redis = TestRedis::spawn(&[]);
    let cache = local_cache(&redis).await;
    let runs = Arc::new(AtomicU64::new(0));
    let policy = Policy::ttl(Duration::from_millis(200)).stale(60);
    let call = || {
        let runs = runs.clone();
        move || async move { runs.fetch_add(1, SeqCst) }
    };
    let first: u64 = cache.get_or_set_stale("st:1", policy, call()).await;
    until(
        "the stale value is refreshed in the background",
        async || {
            let v: u64 = cache.get_or_set_stale("st:1", policy, call()).await;
            v != first
        },
    )
    .await;
    let policy = Policy::ttl(60).stale(60);
    let held: u64 = cache.get_or_set_stale("st:2", policy, call()).await;
    until_local_hit(
        &cache,
        "st:2",
        async || cache.get_or_set_stale("st:2", policy, call()).await,
        held,
    )
    .await;
}

#[tokio::test]
async fn get_reads_the_local_tier_like_get_or_set() {
    let redis = TestRedis::spawn(&[]);
    let (cache, other) = (local_cache(&redis).await, local_cache(&redis).await);
    let mut plain = redis.client().await;
    other.set("get:1", &5u64, 300).await.unwrap();
    until("get holds get:1 locally", async || {
        let before = cache.stats().local_hits;
        assert_eq!(cache.get::<u64>("get:1").await.unwrap(), Some(5));
        cache.stats().local_hits > before
    })
    .await;
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut plain)
        .await
        .unwrap();
    let before = cache.stats();
    for _ in 0..100 {
        assert_eq!(cache.get::<u64>("get:1").await.unwrap(), Some(5));
    }
    let counts = command_counts(&mut plain).await;
    assert_eq!(
        counts.get("get"),
        None,
        "no GET for 100 local gets: {counts:?}"
    );
    let after = cache.stats();
    assert_eq!(after.local_hits - before.local_hits, 100);
    assert_eq!(after.hits - before.hits, 100, "local hits are hits");

    // Another client's change reaches it, and a get reads the new value.
    other.set("get:1", &6u64, 300).await.unwrap();
    until("get sees the other handle's write", async || {
        cache.get::<u64>("get:1").await.unwrap() == Some(6)
    })
    .await;
    let _: u64 = redis::cmd("DEL")
        .arg("get:1")
        .query_async(&mut plain)
        .await
        .unwrap();
    until("get sees a plain DEL", async || {
        cache.get::<u64>("get:1").await.unwrap().is_none()
    })
    .await;

    // What get_or_set keeps, get hits locally, and the other way round.
    let v: u64 = cache.get_or_set("get:2", 300, || async { 7 }).await;
    assert_eq!(v, 7);
    until("get hits what get_or_set kept", async || {
        let before = cache.stats().local_hits;
        assert_eq!(cache.get::<u64>("get:2").await.unwrap(), Some(7));
        cache.stats().local_hits > before
    })
    .await;
    assert_eq!(
        cache.get::<String>("get:2").await.unwrap(),
        None,
        "does not decode"
    );
}
