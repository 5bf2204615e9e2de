//! Placeholders: what a key holds while a call runs its body.
//!
//! A miss claims its key before the body runs: `SET key <placeholder> NX PX
//! <placeholder_ttl>`. The body's value then replaces the placeholder only if
//! the key still holds it (a compare-and-set), so anything that deleted or
//! rewrote the key meanwhile (an invalidation in any process, `redis-cli DEL`,
//! a `FLUSHDB`, another client's `SET`) wins: Redis itself tells that the key
//! changed since the miss, which a plain `SET NX` after the body could not (the
//! key is absent again after a `DEL`).
//!
//! A placeholder is `\0!pending:` followed by 16 hex digits drawn at random
//! for each cache (each `Cache::connect`, not its clones) and a counter: no
//! two claims share one, and a cache tells its own placeholders from other
//! processes'. Every stored form
//! other than plain JSON starts with a `0x00` header whose second byte names
//! the codec, and `!` names none, so no codec's bytes can be mistaken for a
//! placeholder (and a reader of an older release sees a value of an unknown
//! codec: a miss).

use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, LazyLock};

/// What every placeholder starts with.
pub(crate) const MAGIC: &[u8] = b"\x00!pending:";

/// Whether bytes read from a cache key are the placeholder a call holds the
/// key with while it runs the function (`\0!pending:...`), rather than a
/// value: for tools that read redis-memo's keys with a client of their own.
/// See [`CacheBuilder::placeholder_ttl`](crate::CacheBuilder::placeholder_ttl).
///
/// ```
/// assert!(!redis_memo::is_placeholder(br#"{"id":1}"#));
/// assert!(redis_memo::is_placeholder(b"\0!pending:0123456789abcdef:1"));
/// ```
pub fn is_placeholder(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// The placeholders of one cache.
pub(crate) struct Placeholders {
    /// `MAGIC`, then this cache's random id in hex and `:`.
    prefix: Box<[u8]>,
    next: AtomicU64,
}

impl Placeholders {
    pub(crate) fn new() -> Placeholders {
        // `RandomState` is seeded from the operating system's randomness,
        // then differs for every instance.
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        let mut prefix = MAGIC.to_vec();
        prefix.extend_from_slice(format!("{:016x}:", hasher.finish()).as_bytes());
        Placeholders {
            prefix: prefix.into(),
            next: AtomicU64::new(0),
        }
    }

    /// A placeholder no other claim, of this cache or another, writes.
    pub(crate) fn next(&self) -> Arc<[u8]> {
        let n = self.next.fetch_add(1, Relaxed);
        let mut bytes = Vec::with_capacity(self.prefix.len() + 20);
        bytes.extend_from_slice(&self.prefix);
        bytes.extend_from_slice(n.to_string().as_bytes());
        bytes.into()
    }

    /// Whether `placeholder` is one of this cache's.
    pub(crate) fn is_own(&self, placeholder: &[u8]) -> bool {
        placeholder.starts_with(&self.prefix)
    }
}

/// A placeholder no claim writes: for tokens that only need to be unique.
pub(crate) fn new_placeholder() -> Arc<[u8]> {
    static TOKENS: LazyLock<Placeholders> = LazyLock::new(Placeholders::new);
    TOKENS.next()
}

/// What a key held when it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Nothing.
    Absent,
    /// A placeholder: a call (here or in another process) runs the body.
    Placeholder(Arc<[u8]>),
    /// A value (which may not decode).
    Value(Vec<u8>),
}

impl Seen {
    /// What stored bytes (`None`: no key) are.
    pub(crate) fn of(bytes: Option<Vec<u8>>) -> Seen {
        match bytes {
            None => Seen::Absent,
            Some(bytes) if is_placeholder(&bytes) => Seen::Placeholder(bytes.into()),
            Some(bytes) => Seen::Value(bytes),
        }
    }
}

/// How a claim went.
#[derive(Debug)]
pub(crate) enum Claim {
    /// The key held nothing and now holds the placeholder.
    Won,
    /// The key held this instead (`Absent`: it went away in between).
    Lost(Seen),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_unique_and_recognised() {
        let (mine, theirs) = (Placeholders::new(), Placeholders::new());
        let (a, b) = (mine.next(), mine.next());
        assert_ne!(a, b);
        assert!(is_placeholder(&a) && is_placeholder(&b));
        assert!(mine.is_own(&a) && !theirs.is_own(&a));
        assert!(!mine.is_own(&theirs.next()) && !mine.is_own(&new_placeholder()));
        assert_eq!(Seen::of(Some(a.to_vec())), Seen::Placeholder(a));
        assert_eq!(Seen::of(Some(b"{}".to_vec())), Seen::Value(b"{}".to_vec()));
        assert_eq!(Seen::of(None), Seen::Absent);
        // The framed forms of the codecs are not placeholders.
        for framed in [
            &b"\x00j-{}"[..],
            b"\x00m-\x80",
            b"\x00p-\x00",
            b"\x00jl\x02",
        ] {
            assert!(!is_placeholder(framed));
        }
    }
}
