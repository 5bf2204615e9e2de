//! Staying healthy when Redis is not, and showing it: the circuit breaker,
//! the counters behind [`Cache::stats`](crate::Cache::stats), and
//! rate-limited warnings.

mod breaker;
mod stats;
mod warn;

pub(crate) use breaker::{BreakerConfig, Breakers};
pub(crate) use stats::{Counter, Family, Outcome};
pub use stats::{Counts, FunctionStats, Stats};
pub(crate) use warn::{Warning, Warnings, info_limited, warn_limited};

use crate::error::Error;

/// The health of one cache, shared by its clones.
pub(crate) struct Health {
    breakers: Breakers,
    families: stats::ByFamily,
    warnings: Warnings,
    /// Families already warned about something that repeats on every call
    /// of theirs (a value that cannot be stored).
    warned: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Health {
    /// `cluster`: one breaker per range of slots instead of one.
    pub(crate) fn new(breaker: BreakerConfig, cluster: bool) -> Self {
        Health {
            breakers: Breakers::new(breaker, cluster),
            families: stats::ByFamily::default(),
            warnings: Warnings::new(),
            warned: Default::default(),
        }
    }

    /// `true` the first time it is asked about `family`.
    pub(crate) fn first_time(&self, family: &Family<'_>) -> bool {
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        warned.insert(family.to_string())
    }

    /// Whether a call for `key` may use Redis now (the breaker of its shard
    /// is closed, or this call is its probe).
    pub(crate) fn allow(&self, key: &str) -> bool {
        self.breakers.allow(key)
    }

    /// Records the outcome of a Redis operation on `key` with the breaker of
    /// its shard; returns it unchanged.
    pub(crate) fn record<T>(&self, key: &str, result: Result<T, Error>) -> Result<T, Error> {
        self.breakers.record(key, result)
    }

    /// Adds `n` to one counter of a family.
    pub(crate) fn count(&self, family: &Family<'_>, counter: Counter, n: u64) {
        self.families.add(family, counter, n);
    }

    pub(crate) fn warnings(&self) -> &Warnings {
        &self.warnings
    }

    pub(crate) fn stats(&self) -> Stats {
        let functions = self.families.snapshot();
        let mut stats = stats::totals(&functions);
        stats.breaker_trips = self.breakers.trips();
        stats.breaker_open = self.breakers.is_open();
        stats.functions = functions;
        stats
    }
}

/// When a call started: read only with the `metrics` feature (the clock is not
/// read otherwise).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallStart(#[cfg(feature = "metrics")] std::time::Instant);

impl CallStart {
    pub(crate) fn now() -> Self {
        CallStart(
            #[cfg(feature = "metrics")]
            std::time::Instant::now(),
        )
    }
}

impl Health {
    /// Counts a finished call for its family (and the `metrics` facade).
    /// [`observe`](Self::observe) for `n` calls with the same outcome (the
    /// elements of a batch).
    pub(crate) fn observe_many(
        &self,
        family: &Family<'_>,
        outcome: Outcome,
        n: u64,
        start: CallStart,
    ) {
        if let Some(counter) = outcome.counter() {
            self.count(family, counter, n);
        }
        if outcome == Outcome::LocalHit {
            self.count(family, Counter::LocalHits, n);
        }
        #[cfg(feature = "metrics")]
        for _ in 0..n {
            stats::record_metrics(family, outcome, start.0.elapsed());
        }
        #[cfg(not(feature = "metrics"))]
        let _ = start;
    }

    pub(crate) fn observe(&self, family: &Family<'_>, outcome: Outcome, start: CallStart) {
        if outcome == Outcome::LocalHit {
            // The hottest path: both counters with one lookup.
            if !self
                .families
                .add_each(family, &[Counter::Hits, Counter::LocalHits])
            {
                self.count(family, Counter::Hits, 1);
                self.count(family, Counter::LocalHits, 1);
            }
        } else if let Some(counter) = outcome.counter() {
            self.count(family, counter, 1);
        }
        #[cfg(feature = "metrics")]
        stats::record_metrics(family, outcome, start.0.elapsed());
        #[cfg(not(feature = "metrics"))]
        let _ = start;
    }
}
