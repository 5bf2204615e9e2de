//! Stale-while-revalidate (`stale = N`, `Policy::stale`): after `ttl` the old
//! value is served while one background run replaces it; keys live
//! `ttl + stale`; a failing refresh keeps the old value until the window
//! ends, then the body runs inline.
//!
//! A value is made stale by rewriting the time its envelope says it stops
//! being fresh (with a plain client on Redis), instead of waiting for the TTL
//! to pass.

use redis_memo_test_support as support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use redis_memo::{Cache, Policy, cached};
use support::reference::{envelope, expire_enveloped, now_ms, unenvelope};
use support::{Harness, TestRedis, until};
use tokio::sync::watch;

/// Steers the body: counts its runs, holds them while the gate is closed,
/// and makes them fail on demand.
struct Probe {
    runs: AtomicU64,
    open: watch::Sender<bool>,
    fail: AtomicBool,
}

impl Probe {
    fn new() -> Arc<Probe> {
        Arc::new(Probe {
            runs: AtomicU64::new(0),
            open: watch::Sender::new(true),
            fail: AtomicBool::new(false),
        })
    }

    fn runs(&self) -> u64 {
        self.runs.load(SeqCst)
    }

    fn hold(&self) {
        self.open.send_replace(false);
    }

    fn release(&self) {
        self.open.send_replace(true);
    }

    /// One run of the body: its number (1, 2, ...) once the gate is open.
    async fn run(&self) -> Result<u64, String> {
        let n = self.runs.fetch_add(1, SeqCst) + 1;
        let mut open = self.open.subscribe();
        let _ = open.wait_for(|open| *open).await;
        if self.fail.load(SeqCst) {
            return Err(format!("run {n} failed"));
        }
        Ok(n * 1000)
    }
}

#[cached(ttl = 60, stale = 60, key_prefix = "swr:", cache = cache, ignore(probe))]
async fn value(cache: &Cache, probe: Arc<Probe>, id: u64) -> Result<u64, String> {
    Ok(probe.run().await? + id)
}

/// Leaves `key` `left` to live: its value stopped being fresh `60 s - left`
/// ago (the stale window of these functions is 60 s).
async fn make_stale(h: &Harness, key: &str, left: Duration) {
    make_stale_in(h, key, left, Duration::from_secs(60)).await;
}

/// [`make_stale`] for a stale window of `window`.
async fn make_stale_in(h: &Harness, key: &str, left: Duration, window: Duration) {
    let bytes = h.raw_get(key).await.expect("a stored value");
    let (_, _, inner) = unenvelope(&bytes).expect("an enveloped value");
    let fresh_until =
        (now_ms() + left.as_millis() as u64).saturating_sub(window.as_millis() as u64);
    h.raw_set_for(key, &envelope(fresh_until, 0, inner), left)
        .await;
}

/// Whether `key` holds a fresh value.
async fn is_fresh(h: &Harness, key: &str) -> bool {
    h.raw_get(key)
        .await
        .as_deref()
        .and_then(unenvelope)
        .is_some_and(|(fresh_until, _, _)| fresh_until > now_ms())
}

/// The stored form inside `key`'s envelope.
async fn inner(h: &Harness, key: &str) -> Option<Vec<u8>> {
    let bytes = h.raw_get(key).await?;
    unenvelope(&bytes).map(|(_, _, inner)| inner.to_vec())
}

async fn a_stale_value_is_served_while_one_background_run_replaces_it(h: &Harness) {
    let probe = Probe::new();
    let key = value_key(&h.cache, 1).await.unwrap();
    assert_eq!(value(&h.cache, probe.clone(), 1).await, Ok(1001));
    assert!(
        (118..=120).contains(&h.ttl(&key).await),
        "the key lives ttl + stale: {}",
        h.ttl(&key).await
    );
    assert_eq!(value(&h.cache, probe.clone(), 1).await, Ok(1001)); // a fresh hit

    make_stale(h, &key, Duration::from_secs(30)).await;
    probe.hold();
    // The stale value comes back at once, though the refresh is held.
    assert_eq!(value(&h.cache, probe.clone(), 1).await, Ok(1001));
    until("the refresh runs", async || probe.runs() == 2).await;
    for _ in 0..5 {
        assert_eq!(value(&h.cache, probe.clone(), 1).await, Ok(1001));
    }
    assert_eq!(probe.runs(), 2, "one refresh, however many stale reads");

    probe.release();
    until("the refresh stores its value", async || {
        is_fresh(h, &key).await
    })
    .await;
    assert_eq!(value(&h.cache, probe.clone(), 1).await, Ok(2001));
    assert_eq!(probe.runs(), 2);
    assert!((118..=120).contains(&h.ttl(&key).await));
    assert_eq!(h.cache.in_flight(), 0, "the refresh leaves nothing behind");

    let stats = h.cache.stats();
    assert_eq!(
        (stats.hits, stats.stale, stats.misses, stats.stores),
        (2, 6, 1, 2)
    );
    assert_eq!(
        stats.calls(),
        9,
        "stale reads are in the partition of calls"
    );
    let function = stats
        .functions
        .iter()
        .find(|f| f.name.ends_with("::value"))
        .unwrap();
    assert_eq!((function.stale, function.calls()), (6, 9));
}

async fn a_thousand_callers_of_stale_keys_run_the_body_once_per_key(h: &Harness) {
    const CALLERS: u64 = 1000;
    const KEYS: u64 = 4;
    let probe = Probe::new();
    for id in 0..KEYS {
        value(&h.cache, probe.clone(), id).await.unwrap();
        make_stale(
            h,
            &value_key(&h.cache, id).await.unwrap(),
            Duration::from_secs(30),
        )
        .await;
    }
    probe.hold();
    let mut tasks = Vec::new();
    for n in 0..CALLERS {
        let (cache, probe) = (h.cache.clone(), probe.clone());
        tasks.push(tokio::spawn(
            async move { value(&cache, probe, n % KEYS).await },
        ));
    }
    for (n, task) in tasks.into_iter().enumerate() {
        let id = n as u64 % KEYS;
        assert_eq!(
            task.await.unwrap(),
            Ok(1000 * (id + 1) + id),
            "the stale value"
        );
    }
    until("every key's refresh runs", async || {
        probe.runs() == 2 * KEYS
    })
    .await;
    probe.release();
    for id in 0..KEYS {
        let key = value_key(&h.cache, id).await.unwrap();
        until("the refresh stores its value", async || {
            is_fresh(h, &key).await
        })
        .await;
    }
    until("the refreshes end", async || h.cache.in_flight() == 0).await;
    assert_eq!(
        probe.runs(),
        2 * KEYS,
        "one refresh per key for {CALLERS} callers"
    );
    assert_eq!(h.cache.stats().stale, CALLERS);
}

async fn a_failing_refresh_keeps_the_old_value_until_the_window_ends_then_runs_inline(h: &Harness) {
    let probe = Probe::new();
    let key = value_key(&h.cache, 7).await.unwrap();
    assert_eq!(value(&h.cache, probe.clone(), 7).await, Ok(1007));
    make_stale(h, &key, Duration::from_secs(30)).await;
    probe.fail.store(true, SeqCst);

    assert_eq!(value(&h.cache, probe.clone(), 7).await, Ok(1007));
    until("the refresh fails", async || {
        probe.runs() == 2 && h.cache.in_flight() == 0
    })
    .await;
    // The old value stays, and is still served; the refresh is not tried
    // again for fail_safe_throttle (30 s), by any process.
    assert_eq!(
        inner(h, &key).await.as_deref(),
        Some(&b"1007"[..]),
        "a failed refresh stores nothing"
    );
    let (_, retry_after, _) = unenvelope(&h.raw_get(&key).await.unwrap()).unwrap();
    assert!(retry_after > now_ms() + 20_000, "the next try waits");
    for _ in 0..10 {
        assert_eq!(value(&h.cache, probe.clone(), 7).await, Ok(1007));
    }
    assert_eq!(probe.runs(), 2, "no refresh within the throttle");
    let runs = probe.runs();

    // The window ends: the next call runs the body itself and gets its error.
    make_stale(h, &key, Duration::from_millis(1)).await;
    until("the key expires", async || h.raw_get(&key).await.is_none()).await;
    let inline = value(&h.cache, probe.clone(), 7).await;
    assert_eq!(inline, Err(format!("run {} failed", runs + 1)));
    probe.fail.store(false, SeqCst);
    assert_eq!(
        value(&h.cache, probe.clone(), 7).await,
        Ok((runs + 2) * 1000 + 7)
    );
    assert!(is_fresh(h, &key).await);
}

/// `Cache::get_or_set_stale` does the same for a key given as it is, and
/// plain `get_or_set` (whose closure may borrow) treats a stale value as
/// expired, running its closure inline.
async fn a_policy_with_stale_on_get_or_set(h: &Harness) {
    let key = format!("{}price", h.prefix("swrpol"));
    let policy = Policy::ttl(60).stale(30);
    let runs = Arc::new(AtomicU64::new(0));
    let load = |runs: &Arc<AtomicU64>| {
        let runs = runs.clone();
        move || async move { runs.fetch_add(1, SeqCst) + 1 }
    };
    assert_eq!(h.cache.get_or_set_stale(&key, policy, load(&runs)).await, 1);
    assert!((88..=90).contains(&h.ttl(&key).await), "ttl + stale");

    make_stale_in(h, &key, Duration::from_secs(20), Duration::from_secs(30)).await;
    assert_eq!(h.cache.get_or_set_stale(&key, policy, load(&runs)).await, 1);
    until("the refresh stores its value", async || {
        is_fresh(h, &key).await
    })
    .await;
    assert_eq!(h.cache.get_or_set_stale(&key, policy, load(&runs)).await, 2);
    assert_eq!(runs.load(SeqCst), 2);

    make_stale_in(h, &key, Duration::from_secs(20), Duration::from_secs(30)).await;
    let borrowed = &runs;
    let inline: u64 = h
        .cache
        .get_or_set(
            &key,
            policy,
            || async move { borrowed.fetch_add(1, SeqCst) + 1 },
        )
        .await;
    assert_eq!(inline, 3, "get_or_set runs its closure on a stale value");
    assert!((88..=90).contains(&h.ttl(&key).await));

    // A TTL of zero never expires: `stale` does nothing.
    let forever = format!("{}forever", h.prefix("swrpol"));
    let n: u64 = h
        .cache
        .get_or_set_stale(&forever, Policy::ttl(0).stale(30), || async { 5 })
        .await;
    assert_eq!((n, h.ttl(&forever).await), (5, -1));
    let stats = h.cache.stats();
    assert_eq!((stats.stale, stats.misses, stats.hits), (1, 3, 1));
}

#[cached(ttl = 60, stale = 30, key_prefix = "swr:", cache = cache)]
async fn primed(cache: &Cache, id: u64) -> u64 {
    id
}

async fn prime_stores_for_ttl_plus_stale(h: &Harness) {
    primed_prime(&h.cache, 1, &10).await.unwrap();
    let key = primed_key(&h.cache, 1).await.unwrap();
    assert!((88..=90).contains(&h.ttl(&key).await));
    assert_eq!(primed(&h.cache, 1).await, 10);
}

support::on_both_backends! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    a_stale_value_is_served_while_one_background_run_replaces_it,
    a_thousand_callers_of_stale_keys_run_the_body_once_per_key,
    a_failing_refresh_keeps_the_old_value_until_the_window_ends_then_runs_inline,
    a_policy_with_stale_on_get_or_set,
    prime_stores_for_ttl_plus_stale,
    a_grouped_function_serves_and_refreshes_stale_values,
}

#[cached(ttl = 60, stale = 60, lease = 10, key_prefix = "swr:", cache = cache, ignore(probe))]
async fn leased(cache: &Cache, probe: Arc<Probe>, id: u64) -> Result<u64, String> {
    Ok(probe.run().await? + id)
}

/// Two caches on separate connections stand for two processes: with
/// `lease`, one of them refreshes a stale key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_a_lease_two_processes_refresh_a_stale_key_once() {
    let redis = TestRedis::spawn(&[]);
    let a = Cache::connect(redis.url()).await.unwrap();
    let b = Cache::connect(redis.url()).await.unwrap();
    let h = Harness::new(a.clone(), Some(redis));
    let probe = Probe::new();
    let key = leased_key(&a, 1).await.unwrap();
    assert_eq!(leased(&a, probe.clone(), 1).await, Ok(1001));
    assert_eq!(leased(&b, probe.clone(), 1).await, Ok(1001), "b shares it");

    make_stale(&h, &key, Duration::from_secs(30)).await;
    probe.hold();
    for _ in 0..20 {
        assert_eq!(leased(&a, probe.clone(), 1).await, Ok(1001));
        assert_eq!(leased(&b, probe.clone(), 1).await, Ok(1001));
    }
    until("one refresh runs", async || probe.runs() == 2).await;
    probe.release();
    until("the refresh stores its value", async || {
        is_fresh(&h, &key).await
    })
    .await;
    until("both refreshes end", async || {
        a.in_flight() == 0 && b.in_flight() == 0
    })
    .await;
    assert_eq!(probe.runs(), 2, "one refresh across both processes");
    assert_eq!(leased(&b, probe.clone(), 1).await, Ok(2001));
    assert_eq!(leased(&a, probe.clone(), 1).await, Ok(2001));
    assert_eq!(a.stats().stale + b.stats().stale, 40);
}

/// Past the TTL in real time, with a refresh that always fails: every call
/// gets the old value until the key expires at `ttl + stale`, then the body
/// runs inline (and its error comes back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_value_is_served_until_ttl_plus_stale_in_real_time() {
    #[cached(
        ttl = Duration::from_millis(300),
        stale = Duration::from_millis(700),
        key_prefix = "swr:",
        cache = cache,
        ignore(probe)
    )]
    async fn short(cache: &Cache, probe: Arc<Probe>) -> Result<u64, String> {
        probe.run().await
    }

    let h = Harness::redis().await;
    let probe = Probe::new();
    assert_eq!(short(&h.cache, probe.clone()).await, Ok(1000));
    probe.fail.store(true, SeqCst);
    let mut stale = 0;
    let inline = loop {
        match short(&h.cache, probe.clone()).await {
            Ok(old) => assert_eq!(old, 1000, "only the old value is served"),
            Err(err) => break err,
        }
        stale = h.cache.stats().stale;
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(
        stale > 0,
        "the old value was served stale before the window ended"
    );
    assert!(inline.ends_with("failed"), "{inline}");
}

/// A stale function reads with one `GET`, like any other: its value says
/// when it stops being fresh.
#[tokio::test]
async fn a_stale_read_is_one_get() {
    let h = Harness::redis().await;
    let Some(redis) = &h.redis else {
        unreachable!()
    };
    let probe = Probe::new();
    value(&h.cache, probe.clone(), 3).await.unwrap();
    let mut conn = redis.client().await;
    let _: () = ::redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut conn)
        .await
        .unwrap();
    for _ in 0..10 {
        value(&h.cache, probe.clone(), 3).await.unwrap();
    }
    let counts = support::command_counts(&mut conn).await;
    assert_eq!(counts.get("get"), Some(&10), "{counts:?}");
    assert_eq!(counts.len(), 1, "nothing else: {counts:?}");
}

#[cached(ttl = 60, stale = 60, key_prefix = "swrg:", grouped, cache = cache, ignore(probe))]
async fn grouped_value(cache: &Cache, probe: Arc<Probe>, id: u64) -> Result<u64, String> {
    Ok(probe.run().await? + id)
}

/// A grouped function reads the generation, the value and its TTL; a stale
/// value is refreshed under the generation it was read with.
async fn a_grouped_function_serves_and_refreshes_stale_values(h: &Harness) {
    let probe = Probe::new();
    assert_eq!(grouped_value(&h.cache, probe.clone(), 1).await, Ok(1001));
    let key = grouped_value_key(&h.cache, 1).await.unwrap();
    assert!((118..=120).contains(&h.ttl(&key).await));
    make_stale(h, &key, Duration::from_secs(30)).await;
    assert_eq!(grouped_value(&h.cache, probe.clone(), 1).await, Ok(1001));
    until("the refresh stores its value", async || {
        is_fresh(h, &key).await
    })
    .await;
    assert_eq!(grouped_value(&h.cache, probe.clone(), 1).await, Ok(2001));
    h.cache.invalidate_group("swrg:").await.unwrap();
    assert_eq!(grouped_value(&h.cache, probe.clone(), 1).await, Ok(3001));
    let stats = h.cache.stats();
    assert_eq!((stats.stale, stats.hits, stats.misses), (1, 1, 2));
}

/// The TTL of `key` in seconds, read on its primary by a plain cluster client.
async fn cluster_ttl(conn: &mut ::redis::cluster_async::ClusterConnection, key: &str) -> i64 {
    ::redis::cmd("TTL")
        .arg(key)
        .query_async(conn)
        .await
        .expect("TTL")
}

/// On a Redis Cluster the GET of a key goes to its primary, and refreshes
/// write there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_values_are_served_and_refreshed_on_a_cluster() {
    let cluster = support::TestCluster::start();
    let cache = Cache::builder()
        .cluster_nodes(cluster.seed_urls())
        .response_timeout(Duration::from_secs(2))
        .build()
        .await
        .expect("connect to the test cluster");
    let probe = Probe::new();
    let ids: Vec<u64> = (0..30).collect();
    let mut conn = cluster.client().await;
    for &id in &ids {
        assert_eq!(
            value(&cache, probe.clone(), id).await,
            Ok(1000 * (id + 1) + id)
        );
        let key = value_key(&cache, id).await.unwrap();
        let ttl = cluster_ttl(&mut conn, &key).await;
        assert!((118..=120).contains(&ttl), "{key}: {ttl}");
        let ago = Duration::from_secs(30);
        expire_enveloped(&mut conn, &key, ago, ago).await;
    }
    for &id in &ids {
        assert_eq!(
            value(&cache, probe.clone(), id).await,
            Ok(1000 * (id + 1) + id)
        );
    }
    until("every refresh stores its value", async || {
        let mut fresh = 0;
        for &id in &ids {
            let key = value_key(&cache, id).await.unwrap();
            let bytes: Vec<u8> = ::redis::cmd("GET")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
            let (fresh_until, _, _) = unenvelope(&bytes).unwrap();
            fresh += usize::from(fresh_until > now_ms());
        }
        fresh == ids.len()
    })
    .await;
    assert_eq!(probe.runs(), 2 * ids.len() as u64);
    for &id in &ids {
        assert!(value(&cache, probe.clone(), id).await.unwrap() > 1000 * ids.len() as u64);
    }
    let stats = cache.stats();
    assert_eq!((stats.stale, stats.errors, stats.misconfigured), (30, 0, 0));
}

/// A refresh whose runtime shuts down (before it starts or while its body
/// runs) leaves no flight behind: a later stale read refreshes the key.
#[test]
fn a_refresh_dropped_with_its_runtime_leaves_the_key_refreshable() {
    let h = Harness::memory();
    let probe = Probe::new();
    let key = {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            assert_eq!(value(&h.cache, probe.clone(), 5).await, Ok(1005));
            let key = value_key(&h.cache, 5).await.unwrap();
            make_stale(&h, &key, Duration::from_secs(30)).await;
            probe.hold();
            assert_eq!(value(&h.cache, probe.clone(), 5).await, Ok(1005));
            key
        })
    }; // the runtime, and the refresh task with it, is dropped here
    assert_eq!(h.cache.in_flight(), 0, "no flight is left claimed");
    probe.release();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let runs = probe.runs();
        assert_eq!(value(&h.cache, probe.clone(), 5).await, Ok(1005));
        until("a new refresh stores its value", async || {
            is_fresh(&h, &key).await
        })
        .await;
        assert_eq!(probe.runs(), runs + 1);
        assert_eq!(
            value(&h.cache, probe.clone(), 5).await,
            Ok((runs + 1) * 1000 + 5)
        );
    });
}

/// A refresh that gets an error from the body says so (rate-limited), naming
/// the key: the cache keeps serving an old value, and the log tells why.
#[tokio::test]
async fn a_failing_refresh_is_logged_with_its_key() {
    let (logs, dispatch) = support::Logs::capture(tracing::Level::WARN);
    // A current-thread runtime: the refresh runs on this thread, under this
    // dispatcher.
    let _guard = tracing::dispatcher::set_default(&dispatch);
    let h = Harness::redis().await;
    let probe = Probe::new();
    let key = value_key(&h.cache, 9).await.unwrap();
    assert_eq!(value(&h.cache, probe.clone(), 9).await, Ok(1009));
    make_stale(&h, &key, Duration::from_secs(30)).await;
    probe.fail.store(true, SeqCst);
    assert_eq!(value(&h.cache, probe.clone(), 9).await, Ok(1009));
    until("the refresh fails", async || {
        probe.runs() == 2 && h.cache.in_flight() == 0
    })
    .await;
    let warnings = logs.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains(&key) && warnings[0].contains("background refresh"),
        "{warnings:?}"
    );
}

#[cached(ttl = 60, stale = 60, key_prefix = "swrp:", cache = cache, ignore(probe))]
async fn panicky(cache: &Cache, probe: Arc<Probe>, id: u64) -> u64 {
    let n = probe.run().await.unwrap_or(0);
    if n > 1000 {
        panic!("the origin's client panicked");
    }
    n + id
}

/// A background refresh whose body panics is caught, logged with its key,
/// and not tried again for fail_safe_throttle: stale reads meanwhile serve
/// the old value without running the body.
#[tokio::test]
async fn a_panicking_refresh_is_logged_and_backs_off() {
    let (logs, dispatch) = support::Logs::capture(tracing::Level::WARN);
    let _guard = tracing::dispatcher::set_default(&dispatch);
    let h = Harness::redis().await;
    let probe = Probe::new();
    let key = panicky_key(&h.cache, 1).await.unwrap();
    assert_eq!(panicky(&h.cache, probe.clone(), 1).await, 1001);
    make_stale(&h, &key, Duration::from_secs(30)).await;
    assert_eq!(panicky(&h.cache, probe.clone(), 1).await, 1001);
    until("the refresh panics and is handled", async || {
        logs.warnings().iter().any(|w| w.contains("panicked"))
    })
    .await;
    for _ in 0..20 {
        assert_eq!(panicky(&h.cache, probe.clone(), 1).await, 1001);
    }
    assert_eq!(probe.runs(), 2, "no new refresh within the throttle");
    let warnings = logs.warnings();
    assert!(warnings.iter().any(|w| w.contains(&key)), "{warnings:?}");
}
