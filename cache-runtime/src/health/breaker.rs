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
//! shards keep using the cache. Finding a key's breaker costs a CRC16 of
//! the key, so [`Breakers`] skips it while every breaker is closed and has
//! seen no failure: the healthy path of a call on a cluster hashes nothing.

use std::sync::atomic::{
    AtomicBool, AtomicU64,
    Ordering::{Relaxed, SeqCst},
};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::log;

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

    /// Closed, with no failure since the last success.
    fn is_healthy(&self) -> bool {
        self.failures.load(Relaxed) == 0 && !self.is_open()
    }

    pub(crate) fn trips(&self) -> u64 {
        self.trips.load(Relaxed)
    }
}

/// The breakers of one cache: one, or on a cluster one per range of slots.
pub(crate) struct Breakers {
    all: Box<[Breaker]>,
    /// On a cluster: failures recorded since every breaker was last seen
    /// healthy. While it is 0 no breaker is open or counting, so a call
    /// needs not find (hash) its own.
    troubled: AtomicU64,
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
            troubled: AtomicU64::new(0),
        }
    }

    /// The breaker of the shard `key` lives on.
    fn of(&self, key: &str) -> &Breaker {
        match &*self.all {
            [one] => one,
            all => &all[(crate::key::key_slot(key.as_bytes()) / SLOTS_PER_BREAKER) as usize],
        }
    }

    /// Whether a call for `key` may use Redis now.
    pub(crate) fn allow(&self, key: &str) -> bool {
        match &*self.all {
            [one] => one.allow(),
            _ if self.troubled.load(Relaxed) == 0 => true,
            _ => self.of(key).allow(),
        }
    }

    /// Records the outcome of a Redis operation on `key` with the breaker of
    /// its shard; returns it unchanged.
    pub(crate) fn record<T>(&self, key: &str, result: Result<T, Error>) -> Result<T, Error> {
        if let [one] = &*self.all {
            return one.record(result);
        }
        if matches!(result, Err(Error::Connection(_) | Error::Timeout(_))) {
            let result = self.of(key).record(result);
            // After the breaker's own update: whoever reads this sees it.
            self.troubled.fetch_add(1, SeqCst);
            return result;
        }
        let seen = self.troubled.load(SeqCst);
        if seen == 0 {
            return result;
        }
        let result = self.of(key).record(result);
        // Every breaker healthy again: back to the fast path, unless a
        // failure was recorded since `seen` was read (then it stays).
        if self.all.iter().all(Breaker::is_healthy) {
            let _ = self.troubled.compare_exchange(seen, 0, SeqCst, Relaxed);
        }
        result
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
    fn cluster_breakers_open_for_the_failing_shard_only_and_close_again() {
        let breakers = Breakers::new(
            BreakerConfig {
                threshold: 2,
                cooldown: Duration::ZERO,
            },
            true,
        );
        // "a" is in slot 15495, "b" in slot 3300: different breakers.
        assert!(breakers.allow("a") && breakers.allow("b"));
        let _ = breakers.record::<()>("a", Err(down()));
        let _ = breakers.record::<()>("b", Ok(()));
        let _ = breakers.record::<()>("a", Err(down()));
        assert!(breakers.is_open());
        assert!(breakers.allow("b"), "another shard's calls go on");
        assert!(breakers.allow("a"), "the probe of the open one");
        assert!(!breakers.allow("a"), "one probe at a time");
        let _ = breakers.record("a", Ok(()));
        assert!(!breakers.is_open());
        assert_eq!(breakers.troubled.load(Relaxed), 0, "back to the fast path");
        assert!(breakers.allow("a") && breakers.allow("b"));
        // A single failure, then a success of that shard: healthy again.
        let _ = breakers.record::<()>("b", Err(down()));
        assert_ne!(breakers.troubled.load(Relaxed), 0);
        let _ = breakers.record("b", Ok(()));
        assert_eq!(breakers.troubled.load(Relaxed), 0);
        assert_eq!(breakers.trips(), 1);
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
