//! Shortcuts to values held in this process (by the in-memory store or a
//! local tier): from what identifies a call ([`CallId`]: its function and
//! the bytes of its arguments) to the held value and its key, so that a hit
//! in this process neither computes the key's SHA-256 nor looks the key up.
//!
//! ```text
//! call ── CallId ── hash ── slot: same id? its key unchanged since? not expired?
//!    │                         └─ yes ─────────────────────────► held value, key
//!    │ no shortcut: the key (SHA-256), the store's lookup, then remember it
//! ```
//!
//! A shortcut is a cache of a lookup, and must never outlive what it looked
//! up. The store that holds the values bumps the change counter of a key's
//! stripe after every change of the key (an insert, a replacement, a
//! removal), and every counter when it cannot say which keys changed (a
//! clear, a prefix). A shortcut keeps the counter it read *before* its
//! lookup, and is used only while the counter still has that value: any
//! change of its key since (or of another key of the stripe, which only
//! costs a lookup) sends the call the long way. Expiry is checked against
//! the entry's own deadline. The held value is referenced weakly: an entry
//! the store evicted for room is gone from here too.
//!
//! The table is two-way set-associative (a call may be remembered in one
//! of two slots: a free one, or one whose shortcut is of no more use, else
//! the one its hash picks) and sized from the store's bound, so it needs no
//! eviction policy of its own and its size is fixed. Calls that share both
//! slots take turns; the one not remembered takes the long way.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use arc_swap::ArcSwapOption;

use super::Held;
use crate::key::{CallId, OwnedCallId};

/// Change counters: keys are spread over this many.
const STRIPES: usize = 4096;

/// The shortcuts of one store.
pub(crate) struct Shortcuts {
    slots: Box<[ArcSwapOption<Shortcut>]>,
    changes: Box<[AtomicU64]>,
    /// Seeded per store: arguments come from callers, and an attacker who
    /// could aim them at one slot would only send calls the long way.
    hasher: foldhash::fast::RandomState,
}

/// One remembered lookup.
struct Shortcut {
    id: OwnedCallId,
    key: Arc<str>,
    held: Weak<Held>,
    stripe: usize,
    /// The stripe's change counter before the lookup.
    seen: u64,
    expires_at: Option<Instant>,
}

/// A key's change counter, read before a lookup that may be remembered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    stripe: usize,
    seen: u64,
}

impl Shortcuts {
    /// A table of at most one slot per 4 KiB of a store bounded to
    /// `max_bytes` (a power of two, 256 to 262,144 slots). A remembered call
    /// takes about 350 bytes (its identity, its key), so the table adds at
    /// most about a tenth to what the store holds.
    pub(crate) fn new(max_bytes: u64) -> Shortcuts {
        const BYTES_PER_SLOT: u64 = 4096;
        let wanted = usize::try_from(max_bytes / BYTES_PER_SLOT)
            .unwrap_or(usize::MAX)
            .clamp(1 << 8, 1 << 18);
        // The largest power of two not above it.
        let len = 1 << (usize::BITS - 1 - wanted.leading_zeros());
        Shortcuts {
            slots: (0..len).map(|_| ArcSwapOption::empty()).collect(),
            changes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// The two slots the call `id` may be remembered in, and which of them
    /// it takes when both hold shortcuts still in use.
    fn pair(&self, id: &CallId<'_, '_>) -> (&[ArcSwapOption<Shortcut>], usize) {
        let mut state = self.hasher.build_hasher();
        id.hash(&mut state);
        let hash = std::hash::Hasher::finish(&state);
        let first = (hash as usize) & (self.slots.len() - 1) & !1;
        (&self.slots[first..first + 2], (hash >> 63) as usize)
    }

    fn stripe(&self, key: &str) -> usize {
        self.hasher.hash_one(key) as usize % STRIPES
    }

    /// Whether `shortcut` still leads to what a lookup would find.
    fn holds(&self, shortcut: &Shortcut) -> bool {
        self.changes[shortcut.stripe].load(Ordering::Acquire) == shortcut.seen
            && shortcut.expires_at.is_none_or(|at| Instant::now() < at)
            && shortcut.held.strong_count() > 0
    }

    /// The held value and the key of the call `id`, when a lookup of it was
    /// remembered and its key has not changed since.
    pub(crate) fn get(&self, id: &CallId<'_, '_>) -> Option<(Arc<str>, Arc<Held>)> {
        let (pair, _) = self.pair(id);
        for slot in pair {
            let guard = slot.load();
            let Some(shortcut) = guard.as_deref().filter(|s| s.id.is(id)) else {
                continue;
            };
            if self.changes[shortcut.stripe].load(Ordering::Acquire) != shortcut.seen
                || shortcut.expires_at.is_some_and(|at| Instant::now() >= at)
            {
                return None;
            }
            let held = shortcut.held.upgrade()?;
            return Some((shortcut.key.clone(), held));
        }
        None
    }

    /// Call before looking `key` up in the store, to remember the lookup.
    pub(crate) fn mark(&self, key: &str) -> Mark {
        let stripe = self.stripe(key);
        Mark {
            stripe,
            seen: self.changes[stripe].load(Ordering::Acquire),
        }
    }

    /// Remembers that the call `id` found `held` (until `expires_at`) under
    /// `key`, looked up after `mark`.
    pub(crate) fn remember(
        &self,
        id: CallId<'static, '_>,
        key: &str,
        held: &Arc<Held>,
        expires_at: Option<Instant>,
        mark: Mark,
    ) {
        let shortcut = Shortcut {
            id: id.to_owned(),
            key: key.into(),
            held: Arc::downgrade(held),
            stripe: mark.stripe,
            seen: mark.seen,
            expires_at,
        };
        // Its own slot, a free one, or one of no more use; else the one its
        // hash picks.
        let (pair, pick) = self.pair(&id);
        let slot = pair
            .iter()
            .find(|slot| {
                slot.load()
                    .as_deref()
                    .is_none_or(|old| old.id.is(&id) || !self.holds(old))
            })
            .unwrap_or(&pair[pick]);
        slot.store(Some(Arc::new(shortcut)));
    }

    /// `key` changed in the store: call after the change.
    pub(crate) fn changed(&self, key: &str) {
        self.changes[self.stripe(key)].fetch_add(1, Ordering::AcqRel);
    }

    /// Keys changed that cannot be named (a clear, a prefix): call after
    /// the change. Every shortcut is forgotten.
    pub(crate) fn changed_all(&self) {
        for counter in &self.changes {
            counter.fetch_add(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{FnName, KeyBuilder};

    // Statics: a call's names are hashed by address, and a literal written
    // twice need not have one address.
    static PREFIX: &str = "users:";
    static NAME: FnName<'static> = FnName::Custom("users::get");

    fn args(id: u64) -> KeyBuilder {
        let mut args = KeyBuilder::new();
        args.arg(&id);
        args
    }

    fn remembered(shortcuts: &Shortcuts, id: u64, held: &Arc<Held>) -> Arc<str> {
        let key: Arc<str> = format!("users:{id}").into();
        let mark = shortcuts.mark(&key);
        let args = args(id);
        let call = args.call_id(PREFIX, NAME, None).unwrap();
        shortcuts.remember(call, &key, held, None, mark);
        key
    }

    #[test]
    fn a_remembered_lookup_holds_until_its_key_changes() {
        let shortcuts = Shortcuts::new(1 << 20);
        let held = Arc::new(Held::new(b"alice"));
        let key = remembered(&shortcuts, 7, &held);
        let (args7, args8) = (args(7), args(8));
        let seven = args7.call_id(PREFIX, NAME, None).unwrap();
        let (found, bytes) = shortcuts.get(&seven).expect("remembered");
        assert_eq!((&*found, bytes.bytes()), (&*key, &b"alice"[..]));
        let other = args8.call_id(PREFIX, NAME, None).unwrap();
        assert!(shortcuts.get(&other).is_none(), "another call");
        let versioned = args7.call_id(PREFIX, NAME, Some(2)).unwrap();
        assert!(shortcuts.get(&versioned).is_none(), "another version");
        shortcuts.changed(&key);
        assert!(shortcuts.get(&seven).is_none(), "its key changed");
    }

    #[test]
    fn a_lookup_the_key_changed_during_is_not_used() {
        let shortcuts = Shortcuts::new(1 << 20);
        let held = Arc::new(Held::new(b"old"));
        let key: Arc<str> = "users:7".into();
        let mark = shortcuts.mark(&key);
        shortcuts.changed(&key);
        let args = args(7);
        let call = args.call_id(PREFIX, NAME, None).unwrap();
        shortcuts.remember(call, &key, &held, None, mark);
        assert!(shortcuts.get(&call).is_none());
    }

    #[test]
    fn clears_expiry_and_eviction_end_a_shortcut() {
        let shortcuts = Shortcuts::new(1 << 20);
        let held = Arc::new(Held::new(b"v"));
        remembered(&shortcuts, 1, &held);
        shortcuts.changed_all();
        let args1 = args(1);
        let call = args1.call_id(PREFIX, NAME, None).unwrap();
        assert!(shortcuts.get(&call).is_none(), "cleared");

        let key: Arc<str> = "users:1".into();
        let past = Instant::now();
        shortcuts.remember(call, &key, &held, Some(past), shortcuts.mark(&key));
        assert!(shortcuts.get(&call).is_none(), "expired");

        remembered(&shortcuts, 1, &held);
        assert!(shortcuts.get(&call).is_some());
        drop(held);
        assert!(shortcuts.get(&call).is_none(), "the store let go of it");
    }

    #[test]
    fn two_calls_of_one_pair_are_both_remembered() {
        let shortcuts = Shortcuts::new(0);
        let held = Arc::new(Held::new(b"v"));
        let first_slot = |id: u64| {
            let args = args(id);
            let call = args.call_id(PREFIX, NAME, None).unwrap();
            shortcuts.pair(&call).0.as_ptr()
        };
        // Three calls whose pair is the same.
        let mut ids = vec![0];
        let mut next = 1;
        while ids.len() < 3 {
            if first_slot(next) == first_slot(0) {
                ids.push(next);
            }
            next += 1;
        }
        let found = |id: u64| {
            let args = args(id);
            shortcuts
                .get(&args.call_id(PREFIX, NAME, None).unwrap())
                .is_some()
        };
        remembered(&shortcuts, ids[0], &held);
        remembered(&shortcuts, ids[1], &held);
        assert!(found(ids[0]) && found(ids[1]), "both slots used");
        remembered(&shortcuts, ids[2], &held);
        assert!(found(ids[2]), "the last one is remembered");
        assert!(
            found(ids[0]) != found(ids[1]),
            "in the place of one of them"
        );
    }
}
