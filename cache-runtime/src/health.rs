//! Staying healthy when Redis is not: a circuit breaker, counters, and
//! rate-limited warnings.
//!
//! The breaker sits on the path of `#[cached]` calls only. After
//! `threshold` consecutive connection failures or timeouts it *opens*: calls
//! skip Redis entirely (no added latency) for `cooldown`. Then it lets exactly
//! one call through as a probe: success closes it, failure opens it again.
//! Command errors (a wrong type, out of memory) prove Redis is reachable and do
//! not count as failures.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::Error;
use crate::call::CallOutcome;
use crate::key::FnName;

/// Counters of one [`Cache`](crate::Cache), shared by its clones.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use redis_memo::{Cache, cached};
///
/// #[cached(cache = cache)]
/// async fn one(cache: &Cache) -> u8 { 1 }
///
/// let cache = Cache::in_memory();
/// one(&cache).await;
/// one(&cache).await;
/// let stats = cache.stats();
/// assert_eq!((stats.hits, stats.misses), (1, 1));
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Calls answered from the cache.
    pub hits: u64,
    /// Calls that found nothing (or something undecodable) and ran the body.
    pub misses: u64,
    /// Stored values that did not decode (counted in `misses` too).
    pub corrupt: u64,
    /// Cache operations of calls that failed (Redis down, slow, refusing);
    /// the calls themselves succeeded.
    pub errors: u64,
    /// Calls that skipped the cache because the circuit breaker was open.
    pub skipped: u64,
    /// Values written.
    pub stores: u64,
    /// How many times the circuit breaker opened.
    pub breaker_trips: u64,
    /// Whether the circuit breaker is open now.
    pub breaker_open: bool,
    /// Keys deleted and groups retired through this cache's invalidation methods
    /// and `{fn}_invalidate` helpers.
    pub invalidations: u64,
    /// The same outcomes per cached function, sorted by name.
    pub functions: Vec<FunctionStats>,
}

/// The calls of one cached function through one cache.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use redis_memo::{Cache, cached};
///
/// #[cached(cache = cache)]
/// async fn answer(cache: &Cache) -> u8 { 42 }
///
/// let cache = Cache::in_memory();
/// answer(&cache).await;
/// let stats = cache.stats();
/// assert!(stats.functions[0].name.ends_with("::answer"));
/// assert_eq!(stats.functions[0].misses, 1);
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FunctionStats {
    /// The function's qualified name, as in its keys.
    pub name: String,
    /// Answered from the cache (single-flight and lease waiters included).
    pub hits: u64,
    /// Ran the body: nothing stored, or a refresh.
    pub misses: u64,
    /// Ran the body because the stored value did not decode.
    pub corrupt: u64,
    /// Ran the body because the cache failed.
    pub errors: u64,
    /// Skipped the cache: `skip_cache`, or the circuit breaker was open.
    pub skipped: u64,
}

/// How many copies of each function's counters there are. Threads count in
/// different copies (summed when read), so that calls on several threads do
/// not all write to one cache line.
const STRIPES: usize = 8;

/// One copy of a function's counters, indexed like [`FunctionStats`]'s
/// fields, alone in its cache line (128 bytes: x86 fetches lines in pairs).
#[derive(Default)]
#[repr(align(128))]
struct Stripe([AtomicU64; 5]);

/// The stripe the current thread counts in: threads take stripes in turn.
fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Relaxed) % STRIPES;
    }
    STRIPE.with(|stripe| *stripe)
}

/// Per-function counters.
#[derive(Default)]
pub(crate) struct FunctionCounters([Stripe; STRIPES]);

impl FunctionCounters {
    fn add(&self, outcome: CallOutcome) {
        let slot = match outcome {
            CallOutcome::Hit | CallOutcome::Shared => 0,
            CallOutcome::Miss | CallOutcome::Refreshed | CallOutcome::Uncached => 1,
            CallOutcome::Corrupt => 2,
            CallOutcome::Error => 3,
            CallOutcome::Skipped => 4,
        };
        self.0[stripe()].0[slot].fetch_add(1, Relaxed);
    }

    fn snapshot(&self, name: String) -> FunctionStats {
        let mut sums = [0u64; 5];
        for stripe in &self.0 {
            for (sum, n) in sums.iter_mut().zip(&stripe.0) {
                *sum += n.load(Relaxed);
            }
        }
        let [hits, misses, corrupt, errors, skipped] = sums;
        FunctionStats {
            name,
            hits,
            misses,
            corrupt,
            errors,
            skipped,
        }
    }
}

/// The names are the program's own function names, not outside input: a fast
/// hash is safe here, and it is computed on every call.
type FunctionMap = HashMap<FnName<'static>, Arc<FunctionCounters>, foldhash::fast::RandomState>;

/// Per-function counters of one cache. Reads (every call) are lock-free: the
/// map is swapped whole on the rare insert of a new function.
#[derive(Default)]
pub(crate) struct ByFunction(ArcSwap<FunctionMap>);

impl ByFunction {
    pub(crate) fn add(&self, name: FnName<'static>, outcome: CallOutcome) {
        if let Some(counters) = self.0.load().get(&name) {
            counters.add(outcome);
            return;
        }
        let mut counters = None;
        self.0.rcu(|map| {
            let mut map = FunctionMap::clone(map);
            counters = Some(map.entry(name).or_default().clone());
            map
        });
        if let Some(counters) = counters {
            counters.add(outcome);
        }
    }

    pub(crate) fn snapshot(&self) -> Vec<FunctionStats> {
        let mut all: Vec<FunctionStats> = self
            .0
            .load()
            .iter()
            .map(|(name, counters)| counters.snapshot(name.to_string()))
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }
}

/// Records a finished call with the `metrics` facade: a counter of calls and a
/// histogram of their duration, labelled by function and outcome.
#[cfg(feature = "metrics")]
pub(crate) fn record_metrics(name: FnName<'static>, outcome: CallOutcome, elapsed: Duration) {
    let labels = [
        ("function", name.to_string()),
        ("outcome", outcome.as_str().to_string()),
    ];
    metrics::counter!("redis_memo_calls_total", &labels).increment(1);
    metrics::histogram!("redis_memo_call_duration_seconds", &labels).record(elapsed.as_secs_f64());
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) corrupt: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) skipped: AtomicU64,
    pub(crate) stores: AtomicU64,
    pub(crate) invalidations: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }
}

/// Circuit-breaker settings; see [`CacheBuilder::circuit_breaker`](crate::CacheBuilder::circuit_breaker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BreakerConfig {
    pub(crate) threshold: u64,
    pub(crate) cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            threshold: 5,
            cooldown: Duration::from_secs(1),
        }
    }
}

pub(crate) struct Breaker {
    config: BreakerConfig,
    epoch: Instant,
    failures: AtomicU64,
    /// Nanoseconds since `epoch` until which the breaker is open; 0 = closed.
    open_until: AtomicU64,
    probing: AtomicBool,
    trips: AtomicU64,
}

impl Breaker {
    pub(crate) fn new(config: BreakerConfig) -> Self {
        Breaker {
            config,
            epoch: Instant::now(),
            failures: AtomicU64::new(0),
            open_until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            trips: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        // Starts at 1 so that 0 keeps meaning "closed".
        self.epoch.elapsed().as_nanos() as u64 + 1
    }

    /// Whether a call may use Redis now.
    pub(crate) fn allow(&self) -> bool {
        let until = self.open_until.load(Relaxed);
        if until == 0 {
            return true;
        }
        if self.now() < until {
            return false;
        }
        // Cool-down over: exactly one probe goes through.
        !self.probing.swap(true, Relaxed)
    }

    /// Records the outcome of a Redis operation; returns it unchanged.
    pub(crate) fn record<T>(&self, result: Result<T, Error>) -> Result<T, Error> {
        match &result {
            Err(Error::Connection(_) | Error::Timeout(_)) => self.failure(),
            _ => self.success(),
        }
        result
    }

    fn success(&self) {
        // Read before writing: on the healthy path nothing is written, so
        // concurrent calls do not fight over these cache lines.
        if self.failures.load(Relaxed) != 0 {
            self.failures.store(0, Relaxed);
        }
        if self.open_until.load(Relaxed) != 0 && self.open_until.swap(0, Relaxed) != 0 {
            self.probing.store(false, Relaxed);
            tracing::info!("redis-memo: Redis answers again; caching resumed");
        }
    }

    fn failure(&self) {
        let failures = self.failures.fetch_add(1, Relaxed) + 1;
        let probe_failed = self.probing.swap(false, Relaxed);
        if failures >= self.config.threshold || probe_failed {
            let until = self.now() + self.config.cooldown.as_nanos() as u64;
            if self.open_until.swap(until, Relaxed) == 0 {
                self.trips.fetch_add(1, Relaxed);
                tracing::warn!(
                    failures,
                    cooldown = ?self.config.cooldown,
                    "redis-memo: Redis keeps failing; calls skip the cache until it answers a probe"
                );
            }
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open_until.load(Relaxed) != 0
    }

    pub(crate) fn trips(&self) -> u64 {
        self.trips.load(Relaxed)
    }
}

/// At most one warning a second per limiter; the others are counted and the
/// count is reported with the next warning that goes out.
pub(crate) struct WarnLimiter {
    epoch: Instant,
    next_at: AtomicU64,
    suppressed: AtomicU64,
}

impl WarnLimiter {
    const EVERY: Duration = Duration::from_secs(1);

    pub(crate) fn new() -> Self {
        WarnLimiter {
            epoch: Instant::now(),
            next_at: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(suppressed since the last one)` when a warning may go out now.
    pub(crate) fn permit(&self) -> Option<u64> {
        let now = self.epoch.elapsed().as_nanos() as u64;
        let next = self.next_at.load(Relaxed);
        if now >= next
            && self
                .next_at
                .compare_exchange(next, now + Self::EVERY.as_nanos() as u64, Relaxed, Relaxed)
                .is_ok()
        {
            Some(self.suppressed.swap(0, Relaxed))
        } else {
            self.suppressed.fetch_add(1, Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down() -> Error {
        Error::Timeout(Duration::from_millis(1))
    }

    #[test]
    fn counts_from_more_threads_than_stripes_add_up() {
        let by_function = ByFunction::default();
        let name = FnName::Custom("f");
        let threads = STRIPES * 2 + 1;
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    for _ in 0..1000 {
                        by_function.add(name, CallOutcome::Hit);
                    }
                    by_function.add(name, CallOutcome::Miss);
                    by_function.add(name, CallOutcome::Skipped);
                });
            }
        });
        let stats = &by_function.snapshot()[0];
        assert_eq!(stats.name, "f");
        assert_eq!(stats.hits, 1000 * threads as u64);
        assert_eq!(
            (stats.misses, stats.skipped),
            (threads as u64, threads as u64)
        );
        assert_eq!((stats.corrupt, stats.errors), (0, 0));
    }

    #[test]
    fn breaker_opens_after_the_threshold_and_probes_once() {
        let breaker = Breaker::new(BreakerConfig {
            threshold: 3,
            cooldown: Duration::ZERO,
        });
        for _ in 0..2 {
            assert!(breaker.allow());
            let _ = breaker.record::<()>(Err(down()));
        }
        assert!(!breaker.is_open());
        let _ = breaker.record::<()>(Err(down()));
        assert!(breaker.is_open());
        assert_eq!(breaker.trips(), 1);
        // Zero cool-down: the next call is the one probe; others wait for it.
        assert!(breaker.allow());
        assert!(!breaker.allow());
        let _ = breaker.record(Ok(()));
        assert!(!breaker.is_open());
        assert!(breaker.allow() && breaker.allow());
    }

    #[test]
    fn a_failed_probe_reopens_the_breaker() {
        let breaker = Breaker::new(BreakerConfig {
            threshold: 1,
            cooldown: Duration::ZERO,
        });
        let _ = breaker.record::<()>(Err(down()));
        assert!(breaker.allow(), "the probe");
        let _ = breaker.record::<()>(Err(down()));
        assert!(breaker.is_open(), "the probe failed: open again");
        assert!(breaker.allow(), "and after the cool-down, another probe");
        let _ = breaker.record(Ok(()));
        assert!(!breaker.is_open());
    }

    #[test]
    fn command_errors_do_not_count_as_failures() {
        let breaker = Breaker::new(BreakerConfig {
            threshold: 1,
            cooldown: Duration::from_secs(3600),
        });
        let _ = breaker.record::<()>(Err(down()));
        assert!(!breaker.allow(), "open during the cool-down");
        let command_error = Error::Redis(redis::RedisError::from((
            redis::ErrorKind::Parse,
            "wrong type",
        )));
        let _ = breaker.record::<()>(Err(command_error));
        assert!(!breaker.is_open(), "a command error proves Redis answers");
    }

    #[test]
    fn warnings_are_limited_to_one_a_second() {
        let limiter = WarnLimiter::new();
        assert_eq!(limiter.permit(), Some(0));
        for _ in 0..10_000 {
            assert_eq!(limiter.permit(), None);
        }
    }
}
