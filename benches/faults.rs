//! What a Redis fault costs the callers: for each scenario, 64 tasks call a
//! cached function while the benchmark's own redis-server is killed, paused,
//! restarted or refuses writes; prints calls made / failed / wrong values and
//! the latency percentiles, and how long caching took to come back. Last,
//! the origin fails instead: the function's body returns `Err` for 5 s while
//! 64 tasks call a `fail_safe` function whose values expire every second.
//!
//! `cargo bench -p redis-memo-benches --bench faults`
//!
//! The cache under test uses a 250 ms response timeout, a 250 ms connect
//! timeout and a circuit breaker that opens after 3 failures for 500 ms.

use redis_memo_test_support as support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use redis_memo::{Cache, cached};
use support::TestRedis;

#[cached(ttl = 60, key_prefix = "faults:", cache = cache)]
async fn value_of(cache: &Cache, id: u64) -> Result<u64, String> {
    // A "slow" source: 1 ms.
    tokio::time::sleep(Duration::from_millis(1)).await;
    Ok(id * 7 + 1)
}

/// Whether the origin behind `kept_value` fails.
static ORIGIN_DOWN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[cached(ttl = 1, fail_safe = 3600, key_prefix = "faults:", cache = cache)]
async fn kept_value(cache: &Cache, id: u64) -> Result<u64, String> {
    tokio::time::sleep(Duration::from_millis(1)).await;
    if ORIGIN_DOWN.load(Relaxed) {
        return Err("the origin is down".into());
    }
    Ok(id * 7 + 1)
}

/// 64 tasks call `kept_value` on warm keys for `run`, the origin failing
/// from one second in for `down`.
async fn origin_outage(cache: &Cache, run: Duration, down: Duration) -> Outcome {
    for id in 0..500 {
        kept_value(cache, id).await.expect("warm");
    }
    let deadline = Instant::now() + run;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let cache = cache.clone();
        tasks.push(tokio::spawn(async move {
            let (mut failed, mut wrong, mut latencies) = (0, 0, Vec::new());
            let mut i = 0;
            while Instant::now() < deadline {
                let id = (t * 31 + i) % 500;
                let start = Instant::now();
                match kept_value(&cache, id).await {
                    Ok(v) if v == id * 7 + 1 => {}
                    Ok(_) => wrong += 1,
                    Err(_) => failed += 1,
                }
                latencies.push(start.elapsed());
                i += 1;
            }
            (failed, wrong, latencies)
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    ORIGIN_DOWN.store(true, Relaxed);
    tokio::time::sleep(down).await;
    ORIGIN_DOWN.store(false, Relaxed);
    let mut out = Outcome {
        calls: 0,
        failed: 0,
        wrong: 0,
        latencies: Vec::new(),
    };
    for task in tasks {
        let (failed, wrong, latencies) = task.await.expect("task");
        out.calls += latencies.len() as u64;
        out.failed += failed;
        out.wrong += wrong;
        out.latencies.extend(latencies);
    }
    out.latencies.sort_unstable();
    out
}

const TASKS: u64 = 64;
const PER_TASK: u64 = 300;

async fn cache_for(url: &str, lazy: bool) -> Cache {
    let builder = Cache::builder()
        .url(url)
        .connect_timeout(Duration::from_millis(250))
        .response_timeout(Duration::from_millis(250))
        .circuit_breaker(3, Duration::from_millis(500));
    if lazy {
        builder.build_lazy().await.expect("lazy cache")
    } else {
        builder.build().await.expect("cache")
    }
}

struct Outcome {
    calls: u64,
    failed: u64,
    wrong: u64,
    latencies: Vec<Duration>,
}

async fn load<F: std::future::Future<Output = ()>>(cache: &Cache, fault: F) -> Outcome {
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (cache, done) = (cache.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let (mut failed, mut wrong, mut latencies) = (0, 0, Vec::new());
            for i in 0..PER_TASK {
                let id = (t * 31 + i) % 500;
                let start = Instant::now();
                match tokio::time::timeout(Duration::from_secs(30), value_of(&cache, id)).await {
                    Ok(Ok(v)) if v == id * 7 + 1 => {}
                    Ok(Ok(_)) => wrong += 1,
                    _ => failed += 1,
                }
                latencies.push(start.elapsed());
                done.fetch_add(1, Relaxed);
            }
            (failed, wrong, latencies)
        }));
    }
    while done.load(Relaxed) < TASKS * PER_TASK / 4 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    fault.await;
    let mut out = Outcome {
        calls: 0,
        failed: 0,
        wrong: 0,
        latencies: Vec::new(),
    };
    for task in tasks {
        let (failed, wrong, latencies) = task.await.expect("task");
        out.calls += latencies.len() as u64;
        out.failed += failed;
        out.wrong += wrong;
        out.latencies.extend(latencies);
    }
    out.latencies.sort_unstable();
    out
}

/// How long until a warm key is served from the cache again.
async fn time_to_resume(cache: &Cache, since: Instant) -> f64 {
    loop {
        let _ = value_of(cache, 9999).await;
        let hits = cache.stats().hits;
        let _ = value_of(cache, 9999).await;
        if cache.stats().hits > hits {
            return since.elapsed().as_secs_f64();
        }
        if since.elapsed() > Duration::from_secs(30) {
            return f64::INFINITY;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn report(name: &str, o: &Outcome, resumed: Option<f64>) {
    let q = |q: f64| ms(o.latencies[((o.latencies.len() as f64 - 1.0) * q) as usize]);
    let resumed = resumed.map_or(String::from("-"), |s| format!("{s:.2} s"));
    println!(
        "{name:<22} {:>6} {:>6} {:>6} {:>9.2} {:>9.2} {:>9.2}  {resumed}",
        o.calls,
        o.failed,
        o.wrong,
        q(0.5),
        q(0.99),
        q(1.0)
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!(
        "{:<22} {:>6} {:>6} {:>6} {:>9} {:>9} {:>9}  caching back after",
        "scenario", "calls", "failed", "wrong", "p50 ms", "p99 ms", "max ms"
    );

    let redis = TestRedis::spawn(&[]);
    let cache = cache_for(redis.url(), false).await;
    report("healthy", &load(&cache, async {}).await, None);
    drop(redis);

    let mut redis = TestRedis::spawn(&[]);
    let cache = cache_for(redis.url(), false).await;
    report(
        "SIGKILL mid-load",
        &load(&cache, async { redis.kill() }).await,
        None,
    );

    let redis = TestRedis::spawn(&[]);
    let cache = cache_for(redis.url(), false).await;
    let outcome = load(&cache, async { redis.signal("STOP") }).await;
    redis.signal("CONT");
    let resumed = time_to_resume(&cache, Instant::now()).await;
    report("SIGSTOP, then SIGCONT", &outcome, Some(resumed));
    drop(redis);

    let mut redis = TestRedis::spawn(&[]);
    let cache = cache_for(redis.url(), false).await;
    let mut restarted = Instant::now();
    let outcome = load(&cache, async {
        redis.kill();
        tokio::time::sleep(Duration::from_millis(500)).await;
        redis.restart(&[]);
        restarted = Instant::now();
    })
    .await;
    let resumed = time_to_resume(&cache, restarted).await;
    report("restart, same port", &outcome, Some(resumed));
    drop(redis);

    let redis = TestRedis::spawn(&["--maxmemory", "1", "--maxmemory-policy", "noeviction"]);
    let cache = cache_for(redis.url(), false).await;
    report("writes refused (OOM)", &load(&cache, async {}).await, None);
    drop(redis);

    let mut redis = TestRedis::not_started();
    let cache = cache_for(redis.url(), true).await;
    let mut started = Instant::now();
    let outcome = load(&cache, async {
        redis.restart(&[]);
        started = Instant::now();
    })
    .await;
    let resumed = time_to_resume(&cache, started).await;
    report("start with Redis down", &outcome, Some(resumed));
    drop(redis);

    let redis = TestRedis::spawn(&[]);
    let cache = cache_for(redis.url(), false).await;
    let outcome = origin_outage(&cache, Duration::from_secs(7), Duration::from_secs(5)).await;
    report("origin fails 5 s", &outcome, None);
    let stats = cache.stats();
    println!(
        "  (fail_safe {}: kept values returned for a failing body, or within its throttle; \
         body runs that failed: see misses {})",
        stats.fail_safe, stats.misses
    );
}
