//! Where Redis cannot track keys for a local tier (a server or ACL user that
//! refuses `CLIENT TRACKING`), caches that cannot track
//! tell each other about their own writes: after a write or an invalidation
//! returns, this library publishes what changed on [`CHANNEL`], and every
//! such cache subscribed to it drops those entries. A cache without a local
//! tier (a tool, the ops CLI) publishes its prefix and whole-database
//! invalidations too. Changes made by other clients (`redis-cli`, expiry,
//! eviction) still wait for `local_ttl`.
//!
//! A message is one change: `k{key}`, `p{prefix}` or `*` (everything).

use super::LocalTier;

/// The channel of this library's own changes.
pub(crate) const CHANNEL: &str = "redis-memo:local-invalidate";

/// What changed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Change<'a> {
    Key(&'a str),
    Prefix(&'a str),
    All,
}

impl Change<'_> {
    pub(crate) fn encode(self) -> Vec<u8> {
        let (tag, text) = match self {
            Change::Key(key) => (b'k', key),
            Change::Prefix(prefix) => (b'p', prefix),
            Change::All => (b'*', ""),
        };
        let mut message = Vec::with_capacity(1 + text.len());
        message.push(tag);
        message.extend_from_slice(text.as_bytes());
        message
    }
}

/// Applies one message; anything it cannot read clears the tier.
pub(crate) fn apply(tier: &LocalTier, message: &[u8]) {
    let text = std::str::from_utf8(message.get(1..).unwrap_or_default());
    match (message.first(), text) {
        (Some(b'k'), Ok(key)) => tier.invalidate(key),
        (Some(b'p'), Ok(prefix)) => tier.invalidate_prefix(prefix),
        _ => tier.clear(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::{Coherence, DEFAULT_LOCAL_TTL};
    use std::time::Duration;

    #[test]
    fn messages_round_trip_and_garbage_clears() {
        let tier = LocalTier::new(
            1 << 20,
            DEFAULT_LOCAL_TTL,
            Duration::ZERO,
            Coherence::Bounded,
        );
        for key in ["a:1", "a:2", "b:1", "c:1"] {
            tier.begin(key).stored(b"v", None);
        }
        apply(&tier, &Change::Key("a:1").encode());
        assert!(tier.get("a:1").is_none() && tier.get("a:2").is_some());
        apply(&tier, &Change::Prefix("a:").encode());
        assert!(tier.get("a:2").is_none() && tier.get("b:1").is_some());
        apply(&tier, b"?");
        assert!(tier.get("b:1").is_none());
        tier.begin("c:1").stored(b"v", None);
        apply(&tier, &Change::All.encode());
        assert!(tier.get("c:1").is_none());
    }
}
