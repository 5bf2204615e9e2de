//! A value held in this process (by the in-memory store or a local tier):
//! its stored bytes, and the value a hit decoded from them.
//!
//! Decoding is most of what a hit without I/O costs. So the first hit of an
//! entry whose type is `Clone` keeps what it decoded here, and later hits
//! clone that instead of decoding the bytes again (what moka or the `cached`
//! crate return is a clone too). Types that are not `Clone` decode every time.

use std::any::Any;
use std::sync::OnceLock;

/// Stored bytes, and the value decoded from them once.
pub(crate) struct Held {
    bytes: Box<[u8]>,
    /// What the first hit of a `Clone` type decoded; the caller's type and
    /// codec are checked before it is used.
    decoded: OnceLock<Box<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held")
            .field("bytes", &self.bytes.len())
            .field("decoded", &self.decoded.get().is_some())
            .finish()
    }
}

impl Held {
    pub(crate) fn new(bytes: &[u8]) -> Held {
        Held {
            bytes: bytes.into(),
            decoded: OnceLock::new(),
        }
    }

    /// The bytes as stored.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// What a hit decoded and kept, if one did.
    pub(crate) fn decoded(&self) -> Option<&(dyn Any + Send + Sync)> {
        self.decoded.get().map(|boxed| &**boxed)
    }

    /// Keeps `value` as what the bytes decode to; the first kept stays.
    pub(crate) fn keep(&self, value: Box<dyn Any + Send + Sync>) {
        let _ = self.decoded.set(value);
    }

    /// How much an entry of this many key and value bytes weighs: the key,
    /// the bytes, and a decoded copy estimated at the size of the bytes.
    pub(crate) fn weight(key: &str, bytes: &[u8]) -> u32 {
        u32::try_from(key.len().saturating_add(bytes.len().saturating_mul(2))).unwrap_or(u32::MAX)
    }
}
