//! Counters: one set per *family* (a cached function, or the first segment of
//! a key used directly), summed into the cache's totals when read, so the
//! totals and the per-family figures always agree.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use arc_swap::ArcSwap;

use crate::key::FnName;

/// What happened to one call, for its span, its family's counters and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Read from the cache.
    Hit,
    /// Read from the cache past its TTL, within its `stale` window; a
    /// background refresh replaces it.
    Stale,
    /// Read from the local tier (no I/O): counted as a hit, and a local hit.
    LocalHit,
    /// A value kept past its TTL, returned because the body failed, was
    /// slower than its soft timeout, or failed lately (`fail_safe`).
    FailSafe,
    /// Another caller's run (single-flight or lease) gave the value.
    Shared,
    /// Nothing stored: the body ran.
    Miss,
    /// Something stored that did not decode: the body ran and overwrote it.
    Corrupt,
    /// The cache failed (or the key could not be built): the body ran.
    Error,
    /// `skip_cache` was true: the body ran, the cache was not used.
    Skipped,
    /// The circuit breaker was open: the body ran, the cache was not used.
    BreakerSkipped,
    /// `refresh(...)`: the read was skipped on purpose, the body ran.
    Refreshed,
    /// No cache to use (none installed): the body ran. Counted nowhere.
    Uncached,
}

impl Outcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Stale => "stale",
            Outcome::LocalHit => "local_hit",
            Outcome::FailSafe => "fail_safe",
            Outcome::Shared => "shared",
            Outcome::Miss => "miss",
            Outcome::Corrupt => "corrupt",
            Outcome::Error => "error",
            Outcome::Skipped => "skipped",
            Outcome::BreakerSkipped => "breaker_skipped",
            Outcome::Refreshed => "refreshed",
            Outcome::Uncached => "uncached",
        }
    }

    /// The counter a call with this outcome adds to.
    pub(crate) fn counter(self) -> Option<Counter> {
        Some(match self {
            Outcome::Hit | Outcome::LocalHit => Counter::Hits,
            Outcome::Stale => Counter::Stale,
            Outcome::FailSafe => Counter::FailSafe,
            Outcome::Shared => Counter::Shared,
            Outcome::Miss | Outcome::Refreshed => Counter::Misses,
            Outcome::Corrupt => Counter::Corrupt,
            Outcome::Error => Counter::Errors,
            Outcome::Skipped => Counter::Skipped,
            Outcome::BreakerSkipped => Counter::BreakerSkipped,
            Outcome::Uncached => return None,
        })
    }
}

/// Declares the counters once: for each, its [`Counts`] field (with the doc
/// users read), its `Counter` (the index it is counted at), and, marked
/// `call`, whether it is one of the outcomes that partition calls.
macro_rules! counters {
    ($( $(#[$doc:meta])* $field:ident: $counter:ident $(, $call:ident)?; )*) => {
        /// One counter kept per family (an index into its counts).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Counter { $($counter,)* }

        const COUNTERS: usize = [$(Counter::$counter),*].len();

        /// The counters of a cache ([`Stats`], which derefs to them) or of
        /// one family ([`FunctionStats`]).
        ///
        /// Every call through the cache (a `#[cached]` call,
        /// [`get_or_set`](crate::Cache::get_or_set),
        /// [`try_get_or_set`](crate::Cache::try_get_or_set) or
        /// [`get`](crate::Cache::get)) is counted in exactly one of `hits`,
        /// `stale`, `shared`, `fail_safe`, `misses`, `corrupt`, `errors`,
        /// `skipped` and `breaker_skipped`: their sum is [`calls`](Self::calls).
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct Counts {
            $( $(#[$doc])* pub $field: u64, )*
        }

        impl Counts {
            /// Every call counted: the sum of the counters that partition
            /// calls (see above).
            ///
            /// ```
            /// assert_eq!(redis_memo::Cache::in_memory().stats().calls(), 0);
            /// ```
            pub fn calls(&self) -> u64 {
                0 $($( + { let $call = self.$field; $call } )?)*
            }

            fn from_array(counts: [u64; COUNTERS]) -> Counts {
                let [$($field),*] = counts;
                Counts { $($field),* }
            }

            fn add(&mut self, other: &Counts) {
                $( self.$field += other.$field; )*
            }
        }
    };
}

counters! {
    /// Calls answered with a value read from the cache.
    hits: Hits, call;
    /// Calls of functions with `stale` answered with a value read from the
    /// cache past its TTL, within its stale window, while one background run
    /// refreshes it. Not counted in `hits`.
    stale: Stale, call;
    /// Calls answered with another caller's value: a single-flight leader in
    /// this process, or (with `lease`) the process holding the lease.
    shared: Shared, call;
    /// Calls of functions with `fail_safe` answered with a value kept past its
    /// TTL instead of the body's: the body failed (an `Err`), ran past its
    /// `soft_timeout`, or failed lately (within `fail_safe_throttle`).
    fail_safe: FailSafe, call;
    /// Calls that read no value and ran the body: nothing was stored, or the
    /// read was skipped on purpose ([`refresh`](crate::refresh)).
    misses: Misses, call;
    /// Calls that read a value that did not decode, and ran the body (whose
    /// value then overwrote it).
    corrupt: Corrupt, call;
    /// Calls whose read failed (Redis down, slow or refusing, or arguments
    /// that could not be encoded into a key), and ran the body.
    errors: Errors, call;
    /// Calls that did not use the cache because `skip_cache` was true.
    skipped: Skipped, call;
    /// Calls that did not use the cache because the circuit breaker was open.
    breaker_skipped: BreakerSkipped, call;
    /// Values written: after a miss, by [`set`](crate::Cache::set) and by `{fn}_prime`.
    stores: Stores;
    /// Writes that failed: the value was returned but not cached.
    write_errors: WriteErrors;
    /// Values a body returned that were not stored because their key was
    /// invalidated or rewritten while the body ran (by this process or any
    /// other client): an invalidation always wins over a body that began
    /// before it. The caller still got its value.
    fills_refused: FillsRefused;
    /// Entries dropped: keys deleted by any invalidation (`invalidate_prefix`,
    /// `invalidate_all_keys`, `delete`, `{fn}_invalidate`) plus one per
    /// `invalidate_group`.
    invalidations: Invalidations;
    /// Failed reads and writes (counted in `errors` and `write_errors` too)
    /// whose reply means the cache is misconfigured, not briefly unavailable:
    /// a cluster node reached as a standalone server (`MOVED`, `CROSSSLOT`),
    /// a read-only replica, an ACL user without a permission, a failed
    /// authentication, an unknown command (a Sentinel). Each is also logged,
    /// rate-limited, with what to do. Not zero means nothing is being cached.
    misconfigured: Misconfigured;
    /// The part of `hits` served by the local tier
    /// ([`CacheBuilder::local_cache`](crate::CacheBuilder::local_cache)),
    /// without a network call. Counted in `hits` too.
    local_hits: LocalHits;
}

/// Who counters belong to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Family<'a> {
    /// A `#[cached]` function (all its generic instantiations together).
    Function(FnName<'static>),
    /// Keys used directly (`get_or_set`, `set`, `invalidate_prefix`, ...):
    /// the key's text up to and including its first `:`, or `""`.
    Key(Cow<'a, str>),
}

/// More families of keys than this are counted together under [`OTHER_KEYS`],
/// so that keys without a fixed first segment cannot grow the map without bound.
const MAX_KEY_FAMILIES: usize = 1024;
/// The family of keys beyond [`MAX_KEY_FAMILIES`].
const OTHER_KEYS: &str = "(other keys)";

impl<'a> Family<'a> {
    /// The family of a key (or prefix) used directly: `user:42` -> `user:`.
    pub(crate) fn of_key(key: &'a str) -> Family<'a> {
        let end = key.find(':').map_or(0, |i| i + 1);
        Family::Key(Cow::Borrowed(&key[..end]))
    }

    fn to_static(&self) -> Family<'static> {
        match self {
            Family::Function(name) => Family::Function(*name),
            Family::Key(key) => Family::Key(Cow::Owned(key.to_string())),
        }
    }

    fn name(&self) -> String {
        match self {
            Family::Function(name) => name.to_string(),
            Family::Key(key) => key.to_string(),
        }
    }
}

impl std::fmt::Display for Family<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Family::Function(name) => name.fmt(f),
            Family::Key(key) => f.write_str(key),
        }
    }
}

/// A snapshot of one cache's counters (shared by its clones): the totals
/// of every [`Counts`] field (`stats.hits`, through `Deref`), the state of
/// the local tier and the circuit breaker, and the counts per family.
/// The totals are the sums of the per-family figures in `functions`.
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
/// assert_eq!((stats.hits, stats.misses, stats.stores), (1, 1, 1));
/// assert_eq!(stats.calls(), 2);
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// The counters, summed over the families.
    pub counts: Counts,
    /// Entries in the local tier now (0 without one).
    pub local_entries: u64,
    /// The weight of the local tier's entries now (keys, encoded values and
    /// their decoded copies, counted at the size of the encoded value), at
    /// most its `max_bytes`.
    pub local_bytes: u64,
    /// Whether the local tier is kept coherent by Redis tracking now: every
    /// server holding keys (the standalone server, the primary behind
    /// Sentinel, every primary of a cluster) is tracked. `false` with a local
    /// tier means its entries are served for at most
    /// [`local_ttl`](crate::CacheBuilder::local_ttl) (a server that refuses
    /// `CLIENT TRACKING`, a tracking connection being made again, a new
    /// primary not tracked yet), and a warning says why.
    pub local_tracking: bool,
    /// Keys the local tier was told changed: the keys named in Redis's
    /// invalidation pushes to its tracking connections (a flush counts one).
    /// Only keys under the prefixes this cache's functions and keys use are
    /// pushed, whoever changes them (this process included); 0 without a
    /// local tier.
    pub local_pushes: u64,
    /// How many times the circuit breaker opened.
    pub breaker_trips: u64,
    /// Whether the circuit breaker is open now.
    pub breaker_open: bool,
    /// The same counters per family, sorted by name: one entry per
    /// `#[cached]` function (its qualified name), and for keys used directly
    /// one per first segment of the key up to and including its first `:`
    /// (`user:42` counts under `user:`; a key without `:` under `""`).
    pub functions: Vec<FunctionStats>,
}

impl std::ops::Deref for Stats {
    type Target = Counts;

    fn deref(&self) -> &Counts {
        &self.counts
    }
}

/// The counters of one family: a cached function, or a first key segment
/// (`stats.functions[0].misses`, through `Deref`).
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
    /// The function's qualified name as in its keys, or the key family (`user:`).
    pub name: String,
    /// Its counters.
    pub counts: Counts,
}

impl std::ops::Deref for FunctionStats {
    type Target = Counts;

    fn deref(&self) -> &Counts {
        &self.counts
    }
}

/// How many copies of each family's counters there are. Threads count in
/// different copies (summed when read), so that calls on several threads do
/// not all write to one cache line.
const STRIPES: usize = 8;

/// One copy of a family's counters, alone in its cache line (128 bytes: x86
/// fetches lines in pairs).
#[derive(Default)]
#[repr(align(128))]
struct Stripe([AtomicU64; COUNTERS]);

/// The stripe the current thread counts in: threads take stripes in turn.
fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Relaxed) % STRIPES;
    }
    STRIPE.with(|stripe| *stripe)
}

#[derive(Default)]
struct FamilyCounters([Stripe; STRIPES]);

impl FamilyCounters {
    fn add(&self, counter: Counter, n: u64) {
        self.0[stripe()].0[counter as usize].fetch_add(n, Relaxed);
    }

    fn sums(&self) -> [u64; COUNTERS] {
        let mut sums = [0u64; COUNTERS];
        for stripe in &self.0 {
            for (sum, n) in sums.iter_mut().zip(&stripe.0) {
                *sum += n.load(Relaxed);
            }
        }
        sums
    }
}

/// Family names are the program's own function names and key prefixes, not
/// adversarial input: a fast hash is safe here, and it runs on every call.
type FamilyMap = HashMap<Family<'static>, Arc<FamilyCounters>, foldhash::fast::RandomState>;

/// The counters of every family of one cache. Reads (every call) are
/// lock-free: the map is swapped whole on the rare insert of a new family.
#[derive(Default)]
pub(crate) struct ByFamily(ArcSwap<FamilyMap>);

impl ByFamily {
    pub(crate) fn add(&self, family: &Family<'_>, counter: Counter, n: u64) {
        {
            let map = self.0.load();
            // The map is covariant in its key: look a borrowed family up as it is.
            let map: &HashMap<Family<'_>, Arc<FamilyCounters>, _> = &map;
            if let Some(counters) = map.get(family) {
                counters.add(counter, n);
                return;
            }
        }
        let mut counters = None;
        self.0.rcu(|map| {
            let mut map = FamilyMap::clone(map);
            let key_families = map.keys().filter(|f| matches!(f, Family::Key(_))).count();
            let family = match family {
                Family::Key(_) if key_families >= MAX_KEY_FAMILIES => {
                    Family::Key(Cow::Borrowed(OTHER_KEYS))
                }
                family => family.to_static(),
            };
            counters = Some(map.entry(family).or_default().clone());
            map
        });
        if let Some(counters) = counters {
            counters.add(counter, n);
        }
    }

    /// Adds 1 to each of `counters` of a family that already has counters,
    /// with one lookup; `false` when it has none yet.
    pub(crate) fn add_each(&self, family: &Family<'_>, counters: &[Counter]) -> bool {
        let map = self.0.load();
        let map: &HashMap<Family<'_>, Arc<FamilyCounters>, _> = &map;
        let Some(family) = map.get(family) else {
            return false;
        };
        for &counter in counters {
            family.add(counter, 1);
        }
        true
    }

    pub(crate) fn snapshot(&self) -> Vec<FunctionStats> {
        let mut all: Vec<FunctionStats> = self
            .0
            .load()
            .iter()
            .map(|(family, counters)| FunctionStats {
                name: family.name(),
                counts: Counts::from_array(counters.sums()),
            })
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }
}

/// The totals of every counter over the families.
pub(crate) fn totals(functions: &[FunctionStats]) -> Stats {
    let mut stats = Stats::default();
    for f in functions {
        stats.counts.add(&f.counts);
    }
    stats
}

/// Records a finished call with the `metrics` facade: a counter of calls and a
/// histogram of their duration, labelled by family and outcome.
#[cfg(feature = "metrics")]
pub(crate) fn record_metrics(family: &Family<'_>, outcome: Outcome, elapsed: std::time::Duration) {
    let labels = [
        ("function", family.to_string()),
        ("outcome", outcome.as_str().to_string()),
    ];
    metrics::counter!("redis_memo_calls_total", &labels).increment(1);
    metrics::histogram!("redis_memo_call_duration_seconds", &labels).record(elapsed.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_more_threads_than_stripes_add_up() {
        let by_family = ByFamily::default();
        let family = Family::Function(FnName::Custom("f"));
        let threads = STRIPES * 2 + 1;
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    for _ in 0..1000 {
                        by_family.add(&family, Counter::Hits, 1);
                    }
                    by_family.add(&family, Counter::Misses, 1);
                    by_family.add(&family, Counter::Skipped, 1);
                });
            }
        });
        let stats = &by_family.snapshot()[0];
        assert_eq!(stats.name, "f");
        assert_eq!(stats.hits, 1000 * threads as u64);
        assert_eq!(
            (stats.misses, stats.skipped),
            (threads as u64, threads as u64)
        );
        assert_eq!((stats.corrupt, stats.errors, stats.shared), (0, 0, 0));
        assert_eq!(stats.calls(), 1002 * threads as u64);
    }

    #[test]
    fn keys_count_under_their_first_segment() {
        assert_eq!(Family::of_key("user:42"), Family::Key("user:".into()));
        assert_eq!(Family::of_key("user:42:x"), Family::Key("user:".into()));
        assert_eq!(Family::of_key("plain"), Family::Key("".into()));
        let by_family = ByFamily::default();
        by_family.add(&Family::of_key("user:1"), Counter::Stores, 1);
        by_family.add(&Family::of_key("user:2"), Counter::Stores, 2);
        let snapshot = by_family.snapshot();
        assert_eq!(snapshot.len(), 1);
        assert_eq!(
            (snapshot[0].name.as_str(), snapshot[0].stores),
            ("user:", 3)
        );
    }

    #[test]
    fn key_families_beyond_the_limit_share_one_entry() {
        let by_family = ByFamily::default();
        let keys: Vec<String> = (0..MAX_KEY_FAMILIES + 10)
            .map(|i| format!("k{i}:x"))
            .collect();
        for key in &keys {
            by_family.add(&Family::of_key(key), Counter::Hits, 1);
        }
        let snapshot = by_family.snapshot();
        assert_eq!(snapshot.len(), MAX_KEY_FAMILIES + 1);
        let other = snapshot.iter().find(|f| f.name == OTHER_KEYS).unwrap();
        assert_eq!(other.hits, 10);
        assert_eq!(totals(&snapshot).hits, keys.len() as u64);
    }
}
