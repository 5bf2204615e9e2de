//! The circuit breaker on the call path.
//!
//! After `threshold` consecutive connection failures or timeouts it *opens*:
//! calls skip Redis entirely (no added latency) for `cooldown`. Then it lets
//! exactly one call through as a probe: success closes it, failure opens it
//! again. Command errors (a wrong type, out of memory) prove Redis is
//! reachable and do not count as failures.
//!
//! On a Redis Cluster one shard may be down while the others answer, so
//! [`Breakers`] keeps one breaker per range of 256 hash slots: a dead
//! primary opens the breakers of its slots only, and calls for the healthy
//! shards keep using the cache.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::{Error, log};

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
            log::info!("redis-memo: Redis answers again; caching resumed");
        }
    }

    fn failure(&self) {
        let failures = self.failures.fetch_add(1, Relaxed) + 1;
        let probe_failed = self.probing.swap(false, Relaxed);
        if failures >= self.config.threshold || probe_failed {
            let until = self.now() + self.config.cooldown.as_nanos() as u64;
            if self.open_until.swap(until, Relaxed) == 0 {
                self.trips.fetch_add(1, Relaxed);
                log::warning!(
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

/// The breakers of one cache: one, or on a cluster one per range of slots.
pub(crate) struct Breakers {
    all: Box<[Breaker]>,
}

/// Slots per breaker on a cluster (a cluster's primaries own contiguous
/// ranges of slots, usually thousands each).
const SLOTS_PER_BREAKER: u16 = 256;

impl Breakers {
    pub(crate) fn new(config: BreakerConfig, cluster: bool) -> Self {
        let n = if cluster {
            16384 / SLOTS_PER_BREAKER as usize
        } else {
            1
        };
        Breakers {
            all: (0..n).map(|_| Breaker::new(config)).collect(),
        }
    }

    /// The breaker of the shard `key` lives on.
    pub(crate) fn of(&self, key: &str) -> &Breaker {
        match self.all.len() {
            1 => &self.all[0],
            _ => &self.all[(crate::key::key_slot(key.as_bytes()) / SLOTS_PER_BREAKER) as usize],
        }
    }

    /// Whether one of them is open.
    pub(crate) fn is_open(&self) -> bool {
        self.all.iter().any(Breaker::is_open)
    }

    pub(crate) fn trips(&self) -> u64 {
        self.all.iter().map(Breaker::trips).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down() -> Error {
        Error::Timeout(Duration::from_millis(1))
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
}
