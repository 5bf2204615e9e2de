//! Spreading stored TTLs, so that entries written together do not expire together.

use std::time::Duration;

/// How much stored TTLs are spread: a fraction in `0.0..=1.0`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Jitter(f64);

impl Eq for Jitter {}

impl Jitter {
    pub(crate) fn new(fraction: f64) -> Jitter {
        if fraction.is_nan() {
            Jitter(0.0)
        } else {
            Jitter(fraction.clamp(0.0, 1.0))
        }
    }

    /// `ttl` scaled by a uniform factor in `[1 − f, 1 + f]`, at millisecond
    /// precision, never below 1 ms.
    pub(crate) fn apply(self, ttl: Duration) -> Duration {
        if self.0 == 0.0 {
            return ttl;
        }
        let factor = 1.0 + self.0 * (2.0 * unit_random() - 1.0);
        let millis = (ttl.as_millis() as f64 * factor).round().max(1.0);
        Duration::from_millis(millis as u64)
    }
}

/// A uniform number in `[0, 1)`: xorshift per thread, seeded from the
/// standard library's random hasher keys (no cryptographic need here).
fn unit_random() -> f64 {
    use std::cell::Cell;
    use std::hash::{BuildHasher, RandomState};
    thread_local! {
        static STATE: Cell<u64> = Cell::new(RandomState::new().hash_one(0u8) | 1);
    }
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}
