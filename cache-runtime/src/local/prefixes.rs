//! The key prefixes the tracking connections register, so that Redis pushes
//! the changes of this cache's own keys only (`CLIENT TRACKING ON BCAST
//! PREFIX p1 PREFIX p2 ...`), not of every key in the database.
//!
//! A key is tracked under its *segment*: its text up to and including its
//! first `:` or `@`, or the whole key when it has neither. So `users:` for
//! `users:app::profile:3f1c…` (a `key_prefix`) and for `users:42` (a
//! `get_or_set` key), `my_app:` for the functions of crate `my_app` without a
//! `key_prefix` (`my_app::users::profile:…`), `@` for a `grouped` function
//! without one (`@generation`, `@3:…`). One prefix per key family, not per
//! function: Redis compares every changed key with every registered prefix.
//!
//! ```text
//! local miss / write of a key ── its segment registered on every tracking
//!    │                            connection (covered)? ── yes: tracked
//!    │ no: want it; the tracker sends CLIENT TRACKING ON BCAST PREFIX <it>
//!    │     on every connection, then covers it (entries of the prefix held
//!    │     until then are dropped)
//!    ▼
//! the read waits for that (one round trip, once per prefix), at most a bound;
//! an entry filled while its prefix is not covered lives at most local_ttl
//! ```
//!
//! Redis refuses, on one connection, a prefix that overlaps one it has
//! (`ab` and `ab:`). Segments that end in `:` or `@` never overlap one
//! another; a whole key may. The shortest is kept: a prefix a registered one
//! starts with is covered already; one that registered ones start with
//! replaces them, which takes tracking off and on again on every connection
//! (a new *epoch*: the sessions start again, and the tier is cleared as after
//! a lost connection). At most [`MAX_PREFIXES`] are registered; keys beyond
//! are not tracked (their entries live at most `local_ttl`), with a warning.

use std::sync::Mutex;

use tokio::sync::watch;

use super::{Coherence, LocalTier};
use crate::health::{Warning, warn_limited};

/// The most prefixes a cache registers.
pub(crate) const MAX_PREFIXES: usize = 128;

/// The segment a key is tracked under; `None` for the empty key (its prefix
/// would be every key).
pub(crate) fn segment(key: &str) -> Option<&str> {
    let end = key.find([':', '@']).map_or(key.len(), |i| i + 1);
    (end > 0).then(|| &key[..end])
}

/// Whether a key's changes reach the tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coverage {
    /// Its prefix is registered on every tracking connection.
    Covered,
    /// Its prefix is wanted, not registered everywhere yet.
    Pending,
    /// It cannot be tracked: [`MAX_PREFIXES`] are registered, or the key is empty.
    Never,
}

/// What a session registers: every prefix of an epoch added after a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Registration {
    pub(crate) epoch: u64,
    /// The version the prefixes bring a session to.
    pub(crate) version: u64,
    pub(crate) prefixes: Vec<String>,
}

#[derive(Default)]
struct State {
    /// The prefixes to register, none the start of another, each with the
    /// version that added it.
    wanted: Vec<(String, u64)>,
    /// The version of the last prefix added.
    version: u64,
    /// Bumped when a prefix replaced registered ones.
    epoch: u64,
    /// Every prefix up to this version is registered on every connection.
    covered: u64,
}

/// The prefixes of one cache's tier.
pub(crate) struct Prefixes {
    state: Mutex<State>,
    /// Told of every prefix added: the sessions register it.
    added: watch::Sender<()>,
}

impl Default for Prefixes {
    fn default() -> Self {
        Prefixes {
            state: Mutex::default(),
            added: watch::Sender::new(()),
        }
    }
}

impl Prefixes {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `key`'s prefix is registered on every connection (wanting
    /// nothing new).
    pub(crate) fn covers(&self, key: &str) -> bool {
        let state = self.lock();
        state
            .wanted
            .iter()
            .any(|(p, version)| key.starts_with(p.as_str()) && *version <= state.covered)
    }

    /// Whether `key`'s changes reach the tier now; a segment not wanted yet
    /// becomes wanted.
    pub(crate) fn coverage(&self, key: &str) -> Coverage {
        let Some(segment) = segment(key) else {
            return Coverage::Never;
        };
        let mut state = self.lock();
        if let Some((_, version)) = state.wanted.iter().find(|(p, _)| key.starts_with(p)) {
            return if *version <= state.covered {
                Coverage::Covered
            } else {
                Coverage::Pending
            };
        }
        let replaced = state.wanted.iter().any(|(p, _)| p.starts_with(segment));
        if !replaced && state.wanted.len() >= MAX_PREFIXES {
            return Coverage::Never;
        }
        if replaced {
            state.wanted.retain(|(p, _)| !p.starts_with(segment));
            state.epoch += 1;
        }
        state.version += 1;
        let version = state.version;
        state.wanted.push((segment.to_owned(), version));
        drop(state);
        self.added.send_replace(());
        Coverage::Pending
    }

    /// The epoch and version now, and every prefix (for a new session).
    pub(crate) fn all(&self) -> Registration {
        self.since(0)
    }

    /// The prefixes added after `version`, with the epoch and version now.
    pub(crate) fn since(&self, version: u64) -> Registration {
        let state = self.lock();
        Registration {
            epoch: state.epoch,
            version: state.version,
            prefixes: state
                .wanted
                .iter()
                .filter(|(_, v)| *v > version)
                .map(|(p, _)| p.clone())
                .collect(),
        }
    }

    /// The epoch now.
    #[cfg(test)]
    fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Woken when a prefix is added.
    pub(crate) fn watch(&self) -> watch::Receiver<()> {
        self.added.subscribe()
    }

    /// Every prefix up to `version` is registered on every connection:
    /// returns the prefixes this newly covers.
    pub(crate) fn cover(&self, version: u64) -> Vec<String> {
        let mut state = self.lock();
        let old = state.covered;
        state.covered = version.max(old);
        state
            .wanted
            .iter()
            .filter(|(_, v)| *v > old && *v <= version)
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// How many prefixes are wanted.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().wanted.len()
    }
}

/// The tier's side of registration: which of its fills are tracked, and
/// waiting for a prefix to be registered.
impl LocalTier {
    /// Whether Redis pushes the changes of `key` now: tracking is on and its
    /// prefix is registered on every tracking connection.
    pub(super) fn tracked(&self, key: &str) -> bool {
        self.coherence() == Coherence::Tracking && self.prefixes.covers(key)
    }

    /// Makes sure the prefix of `key` is registered on every tracking
    /// connection before a read or write of it that the tier is to keep
    /// begins: asks for it the first time, and waits for it (one round trip,
    /// at most the tier's bound on it). Nothing to wait for while tracking is
    /// off.
    pub(crate) async fn track(&self, key: &str) {
        let coverage = self.prefixes.coverage(key);
        if self.coherence() != Coherence::Tracking {
            return;
        }
        match coverage {
            Coverage::Covered => return,
            Coverage::Pending => {}
            // The empty key: under no prefix but every key's.
            Coverage::Never if key.is_empty() => return,
            Coverage::Never => {
                warn_limited!(
                    self.warnings,
                    Warning::LocalTier,
                    prefix = segment(key).unwrap_or_default(),
                    "redis-memo: the local tier tracks at most {} key prefixes (a key's text up \
                     to its first ':' or '@'); entries of keys under others live at most \
                     local_ttl. Give keys fewer distinct first segments (`users:42` rather than \
                     `user-42`)",
                    MAX_PREFIXES
                );
                return;
            }
        }
        let registered = async {
            loop {
                let notified = self.changed.notified();
                let mut notified = std::pin::pin!(notified);
                notified.as_mut().enable();
                if self.coherence() != Coherence::Tracking || self.prefixes.covers(key) {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(self.wait, registered).await;
    }

    /// Every prefix up to `version` is registered on every tracking
    /// connection: the entries of those newly covered are dropped (they were
    /// filled while their changes were not pushed), and reads waiting for
    /// them go on.
    pub(crate) fn cover(&self, version: u64) {
        let covered = self.prefixes.cover(version);
        for prefix in &covered {
            self.invalidate_prefix(prefix);
        }
        if !covered.is_empty() {
            self.changed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_tracked_under_its_first_segment() {
        assert_eq!(segment("users:app::profile:3f"), Some("users:"));
        assert_eq!(segment("my_app::users::profile:3f"), Some("my_app:"));
        assert_eq!(segment("@generation"), Some("@"));
        assert_eq!(segment("@3:app::f:3f"), Some("@"));
        assert_eq!(segment("grp@3:app::f:3f"), Some("grp@"));
        assert_eq!(segment("plain"), Some("plain"));
        assert_eq!(segment(""), None);
    }

    #[test]
    fn prefixes_are_covered_once_registered_everywhere() {
        let prefixes = Prefixes::default();
        assert_eq!(prefixes.coverage("users:1"), Coverage::Pending);
        assert_eq!(prefixes.coverage("users:2"), Coverage::Pending);
        assert_eq!(prefixes.coverage("orders:1"), Coverage::Pending);
        let all = prefixes.all();
        assert_eq!(all.prefixes, ["users:", "orders:"]);
        assert_eq!(prefixes.cover(1), ["users:"]);
        assert_eq!(prefixes.coverage("users:3"), Coverage::Covered);
        assert!(prefixes.covers("users:3") && !prefixes.covers("orders:1"));
        assert!(!prefixes.covers("new:1"));
        assert_eq!(prefixes.all().prefixes.len(), 2, "covers wants nothing new");
        assert_eq!(prefixes.coverage("orders:1"), Coverage::Pending);
        assert_eq!(prefixes.since(1).prefixes, ["orders:"]);
        assert_eq!(prefixes.cover(all.version), ["orders:"]);
        assert_eq!(prefixes.coverage("orders:1"), Coverage::Covered);
        assert_eq!(prefixes.coverage(""), Coverage::Never);
    }

    #[test]
    fn of_overlapping_prefixes_the_shortest_is_kept() {
        let prefixes = Prefixes::default();
        prefixes.coverage("abc:1");
        prefixes.coverage("abcd");
        let epoch = prefixes.epoch();
        // "abc" is the start of both: it replaces them, in a new epoch.
        prefixes.coverage("abc");
        assert_eq!(prefixes.all().prefixes, ["abc"]);
        assert_eq!(prefixes.epoch(), epoch + 1);
        // Keys under it are covered by it.
        prefixes.cover(prefixes.all().version);
        assert_eq!(prefixes.coverage("abc:2"), Coverage::Covered);
        assert_eq!(prefixes.coverage("abcdef"), Coverage::Covered);
        assert_eq!(prefixes.len(), 1);
    }

    #[test]
    fn beyond_the_limit_keys_are_not_tracked() {
        let prefixes = Prefixes::default();
        for i in 0..MAX_PREFIXES {
            assert_eq!(prefixes.coverage(&format!("f{i}:x")), Coverage::Pending);
        }
        assert_eq!(prefixes.coverage("one:more"), Coverage::Never);
        assert_eq!(
            prefixes.coverage("f1:y"),
            Coverage::Pending,
            "known ones still are"
        );
    }
}
