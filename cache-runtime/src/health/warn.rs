//! Rate-limited warnings: a warning that can repeat on every call goes out at
//! most once a second per kind, and says how many like it were suppressed
//! since the last one, so an outage at 10k calls/s does not flood the logs.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// The kinds of warnings that can repeat per call; each has its own limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Warning {
    /// A read failed (Redis down, slow, refusing).
    ReadFailed,
    /// A write failed.
    WriteFailed,
    /// A stored value did not decode.
    Corrupt,
    /// A value larger than `max_value_bytes` was not stored.
    NotStored,
    /// The arguments could not be encoded into a key.
    Key,
    /// A lease could not be taken or was not followed by a value in time.
    Lease,
    /// The local tier's tracking connection was lost or refused.
    LocalTier,
    /// A reply that means misconfiguration (MOVED, READONLY, NOPERM, ...).
    Misconfigured,
    /// A background refresh of a stale value stored nothing, or could not start.
    StaleRefresh,
    /// A body's value was not stored: its key changed during the body (info level).
    FillRefused,
    /// A kept value was returned instead of the body's (fail-safe).
    FailSafe,
}

const KINDS: usize = Warning::FailSafe as usize + 1;

impl Warning {
    fn index(self) -> usize {
        self as usize
    }
}

/// One limiter per kind of warning.
pub(crate) struct Warnings([Limiter; KINDS]);

impl Warnings {
    pub(crate) fn new() -> Self {
        Warnings(std::array::from_fn(|_| Limiter::new()))
    }

    /// `Some(suppressed since the last one)` when a warning of `kind` may go out now.
    pub(crate) fn permit(&self, kind: Warning) -> Option<u64> {
        self.0[kind.index()].permit()
    }
}

/// Logs a warning of a kind at most once a second, with the number of
/// warnings of that kind suppressed since the last one:
/// `warn_limited!(warnings, Warning::Corrupt, key, error = %err, "...")`.
macro_rules! warn_limited {
    ($warnings:expr, $kind:expr, $($fields:tt)+) => {
        if let Some(suppressed) = $warnings.permit($kind) {
            $crate::log::warning!(suppressed, $($fields)+);
        }
    };
}
pub(crate) use warn_limited;

/// [`warn_limited!`] at info level: for what is expected now and then but
/// worth a line when it repeats.
macro_rules! info_limited {
    ($warnings:expr, $kind:expr, $($fields:tt)+) => {
        if let Some(suppressed) = $warnings.permit($kind) {
            $crate::log::info!(suppressed, $($fields)+);
        }
    };
}
pub(crate) use info_limited;

/// At most one permit a second; the refusals are counted and the count is
/// handed to the next permit.
struct Limiter {
    epoch: Instant,
    next_at: AtomicU64,
    suppressed: AtomicU64,
}

impl Limiter {
    const EVERY: Duration = Duration::from_secs(1);

    fn new() -> Self {
        Limiter {
            epoch: Instant::now(),
            next_at: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    fn permit(&self) -> Option<u64> {
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

    #[test]
    fn warnings_are_limited_to_one_a_second_per_kind() {
        let warnings = Warnings::new();
        assert_eq!(warnings.permit(Warning::Corrupt), Some(0));
        for _ in 0..10_000 {
            assert_eq!(warnings.permit(Warning::Corrupt), None);
        }
        // Another kind has its own limit.
        assert_eq!(warnings.permit(Warning::ReadFailed), Some(0));
    }
}
