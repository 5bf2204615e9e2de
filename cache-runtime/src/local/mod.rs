//! The local tier: a byte-bounded copy of hot entries in this process, kept
//! coherent with Redis by server-assisted client-side caching ([`tracking`]).
//!
//! ```text
//! call ── local hit ───────────────────────────────────────► value (no I/O)
//!    │ local miss: begin a fill (registered as pending)
//!    ▼
//! Redis GET ── value ── finish: insert unless an invalidation of the key
//!                       (or a clear) arrived since the fill began
//! write / delete in this process ── update or drop the entry, synchronously
//!                       (a write begins like a fill, before it is sent)
//! invalidation from Redis (tracking connection) ── drop the entry
//! tracking connection lost or reset ── drop everything
//! ```
//!
//! Redis tells this process about the keys under the [`prefixes`] its
//! tracking connections registered (one per server: the standalone server,
//! the primary Sentinel names, every primary of a cluster; see
//! [`tracking`]). A fill or a write of a key whose prefix is not registered
//! on all of them yet asks for it first; an entry that goes in before it is
//! lives at most `local_ttl`, like every entry while tracking is not on.
//!
//! Entries are the encoded bytes as stored in Redis ([`Held`]): a hit decodes
//! them like a Redis hit does, and for a `Clone` type keeps what it decoded
//! for the next hits. Coherence rests on one lock ([`Sync`]) that orders the
//! three events that touch an entry: a fill's insert, an invalidation and a
//! write. A fill inserts only if no invalidation of its key (and no clear) was
//! seen since it began; an invalidation seen after the insert removes it.

pub(crate) mod broadcast;
pub(crate) mod prefixes;
mod session;
pub(crate) mod tracking;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use self::prefixes::Prefixes;
use crate::health::Warnings;
use crate::key::CallId;
use crate::store::{Held, Lifetime, OwnLifetime, Shortcuts};

/// Default bound on how long a local entry is served when the server cannot
/// track keys (see [`CacheBuilder::local_ttl`](crate::CacheBuilder::local_ttl)).
///
/// ```
/// assert_eq!(redis_memo::DEFAULT_LOCAL_TTL.as_secs(), 1);
/// ```
pub const DEFAULT_LOCAL_TTL: Duration = Duration::from_secs(1);

/// How the tier learns that Redis keys changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Coherence {
    /// Every tracking connection is up (`CLIENT TRACKING ON BCAST PREFIX`):
    /// every change of a key under a registered prefix reaches this process.
    /// Entries of those keys live until invalidated.
    Tracking = 0,
    /// Tracking is expected but not active on every server (connecting, or
    /// reconnecting after a lost connection or a topology change): entries
    /// live at most `local_ttl`.
    Connecting = 1,
    /// A server cannot track (`CLIENT TRACKING` refused): entries live at
    /// most `local_ttl`.
    Bounded = 2,
}

impl Coherence {
    fn from_u8(n: u8) -> Coherence {
        match n {
            0 => Coherence::Tracking,
            1 => Coherence::Connecting,
            _ => Coherence::Bounded,
        }
    }
}

/// One local entry: the encoded value, and how long it may be served.
#[derive(Clone)]
struct Entry {
    held: Arc<Held>,
    lifetime: Option<Duration>,
    expires_at: Option<Instant>,
}

impl Entry {
    fn new(bytes: &[u8], lifetime: Option<Duration>) -> Entry {
        Entry {
            held: Arc::new(Held::new(bytes)),
            lifetime,
            expires_at: lifetime.and_then(|lifetime| Instant::now().checked_add(lifetime)),
        }
    }
}

impl Lifetime for Entry {
    fn lifetime(&self) -> Option<Duration> {
        self.lifetime
    }
}

/// What orders fills, invalidations and writes.
#[derive(Default)]
struct Sync {
    /// Incremented by every invalidation, write and clear.
    seq: u64,
    /// The `seq` of the last clear (lost connection, flush, tracking turned on).
    cleared_at: u64,
    /// Keys with a fill in progress: how many fills, and the `seq` of the
    /// last invalidation or write of the key.
    pending: HashMap<String, Pending>,
}

#[derive(Default)]
struct Pending {
    fills: usize,
    changed_at: u64,
    /// Writes of this process in progress whose own invalidation (Redis
    /// tracks every client's writes, this one's too) has not arrived yet.
    echoes: usize,
}

/// The local tier of one cache.
pub(crate) struct LocalTier {
    entries: moka::sync::Cache<String, Entry, foldhash::quality::RandomState>,
    sync: Mutex<Sync>,
    coherence: AtomicU8,
    /// Woken when `coherence` changes.
    changed: tokio::sync::Notify,
    /// Whether this cache listens to, and so publishes, the broadcast of
    /// its own changes ([`broadcast`]): when the server cannot track.
    broadcasting: AtomicBool,
    /// How long entries filled without tracking are served.
    bound: Duration,
    /// The key prefixes the tracking connections register.
    pub(crate) prefixes: Prefixes,
    /// How long a read waits for its key's prefix to be registered.
    wait: Duration,
    /// Keys named in invalidation pushes (a flush counts one).
    pushes: AtomicU64,
    pub(crate) warnings: Warnings,
    /// From calls to the entries they found; every change of an entry
    /// below ends the shortcuts to it.
    shortcuts: Shortcuts,
}

/// A fill in progress: a local miss reading Redis. Dropped without
/// [`LocalTier::finish`] (the call was cancelled, the read failed), it inserts nothing.
pub(crate) struct Fill<'a> {
    tier: &'a LocalTier,
    /// `None` once finished.
    key: Option<String>,
    began: u64,
    /// Whether Redis pushes the key's changes (see [`LocalTier::tracked`]).
    tracked: bool,
    /// A write of this process, whose invalidation comes back from Redis.
    echoes: bool,
}

impl LocalTier {
    /// A tier of at most `max_bytes` of keys and values; entries filled while
    /// not tracking live at most `bound`. A read waits at most `wait` for its
    /// key's prefix to be registered.
    pub(crate) fn new(
        max_bytes: u64,
        bound: Duration,
        wait: Duration,
        coherence: Coherence,
    ) -> Self {
        let entries = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &String, entry: &Entry| Held::weight(key, entry.held.bytes()))
            .expire_after(OwnLifetime)
            .support_invalidation_closures()
            // Hashing the key is a good part of a hit; foldhash's
            // quality variant is seeded per cache like SipHash's default.
            .build_with_hasher(foldhash::quality::RandomState::default());
        LocalTier {
            entries,
            sync: Mutex::new(Sync::default()),
            coherence: AtomicU8::new(coherence as u8),
            changed: tokio::sync::Notify::new(),
            broadcasting: AtomicBool::new(false),
            bound,
            prefixes: Prefixes::default(),
            wait,
            pushes: AtomicU64::new(0),
            warnings: Warnings::new(),
            shortcuts: Shortcuts::new(max_bytes),
        }
    }

    /// The entry of `key`, if this process holds one. No I/O, no lock.
    pub(crate) fn get(&self, key: &str) -> Option<Arc<Held>> {
        self.entries.get(key).map(|entry| entry.held)
    }

    /// The entry the call `id` found last time, with its key, if neither
    /// changed since: no key to compute, no lookup.
    pub(crate) fn shortcut(&self, id: &CallId<'_, '_>) -> Option<(Arc<str>, Arc<Held>)> {
        self.shortcuts.get(id)
    }

    /// The entry of `key`, for the call `id`, which then finds it by
    /// [`shortcut`](Self::shortcut) until the key changes.
    pub(crate) fn get_for(&self, id: CallId<'static, '_>, key: &str) -> Option<Arc<Held>> {
        let mark = self.shortcuts.mark(key);
        let entry = self.entries.get(key)?;
        self.shortcuts
            .remember(id, key, &entry.held, entry.expires_at, mark);
        Some(entry.held)
    }

    pub(crate) fn coherence(&self) -> Coherence {
        Coherence::from_u8(self.coherence.load(Relaxed))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sync> {
        self.sync.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long an entry inserted now may live: its Redis TTL, and when its
    /// changes are not tracked at most the bound.
    fn lifetime(&self, tracked: bool, ttl: Option<Duration>) -> Option<Duration> {
        if tracked {
            ttl
        } else {
            Some(ttl.map_or(self.bound, |ttl| ttl.min(self.bound)))
        }
    }

    /// Counts keys named in invalidation pushes.
    pub(crate) fn count_pushes(&self, n: u64) {
        self.pushes.fetch_add(n, Relaxed);
    }

    /// Keys named in invalidation pushes so far (a flush counts one).
    pub(crate) fn pushes(&self) -> u64 {
        self.pushes.load(Relaxed)
    }

    /// Begins a fill of `key`: call it before the Redis read.
    pub(crate) fn begin(&self, key: &str) -> Fill<'_> {
        self.begin_fill(key, false)
    }

    /// Begins a write of `key` by this process: call it before the write is
    /// sent, and end it with [`Fill::stored`] once it returned. The
    /// invalidation Redis sends back for this write is told apart from other
    /// clients' changes, so that the value written stays in the tier.
    pub(crate) fn begin_write(&self, key: &str) -> Fill<'_> {
        self.begin_fill(key, true)
    }

    fn begin_fill(&self, key: &str, echoes: bool) -> Fill<'_> {
        let tracked = self.tracked(key);
        let echoes = echoes && tracked;
        let mut sync = self.lock();
        let began = sync.seq;
        let pending = sync.pending.entry(key.to_owned()).or_default();
        pending.fills += 1;
        pending.echoes += usize::from(echoes);
        Fill {
            tier: self,
            key: Some(key.to_owned()),
            began,
            tracked,
            echoes,
        }
    }

    /// Ends a fill with what Redis returned: inserts it unless the key was
    /// invalidated or written, or the tier cleared, since the fill began.
    pub(crate) fn finish(&self, mut fill: Fill<'_>, bytes: &[u8]) {
        let Some(key) = fill.key.take() else { return };
        let lifetime = self.lifetime(fill.tracked, None);
        let mut sync = self.lock();
        let changed_at = release(&mut sync, &key, fill.echoes);
        if changed_at <= fill.began && sync.cleared_at <= fill.began {
            self.entries
                .insert(key.clone(), Entry::new(bytes, lifetime));
            self.shortcuts.changed(&key);
        }
    }

    /// Ends a fill begun before this process stored `bytes` under `key`
    /// (for `ttl`), once the store returned: the entry is replaced, and fills
    /// that began before will not insert what they read. When the key was
    /// invalidated or written meanwhile, whose change reached the server last
    /// is unknown: the entry is dropped instead (the next read goes to Redis).
    pub(crate) fn stored(&self, mut fill: Fill<'_>, bytes: &[u8], ttl: Option<Duration>) {
        let Some(key) = fill.key.take() else { return };
        let lifetime = self.lifetime(fill.tracked, ttl);
        let mut sync = self.lock();
        let changed_at = release(&mut sync, &key, fill.echoes);
        let unchanged = changed_at <= fill.began && sync.cleared_at <= fill.began;
        changed(&mut sync, &key);
        if unchanged {
            self.entries
                .insert(key.clone(), Entry::new(bytes, lifetime));
        } else {
            self.entries.invalidate(&key);
        }
        self.shortcuts.changed(&key);
    }

    /// Redis says `key` changed (a tracking push). The entry is dropped. When
    /// this process has a write of the key in progress whose own push has not
    /// arrived yet, this is taken to be that push: pushes come in the order
    /// the server ran the writes, so a change that came after this process's
    /// write arrives after its push, and one before it is overwritten by it
    /// (the write, if stored, is then kept). Otherwise fills in progress will
    /// not insert what they read.
    pub(crate) fn pushed(&self, key: &str) {
        let mut sync = self.lock();
        match sync.pending.get_mut(key) {
            Some(pending) if pending.echoes > 0 => pending.echoes -= 1,
            _ => changed(&mut sync, key),
        }
        self.entries.invalidate(key);
        self.shortcuts.changed(key);
    }

    /// `key` changed in Redis (or this process deleted it): the entry is
    /// dropped, and fills in progress will not insert what they read.
    pub(crate) fn invalidate(&self, key: &str) {
        let mut sync = self.lock();
        changed(&mut sync, key);
        self.entries.invalidate(key);
        self.shortcuts.changed(key);
    }

    /// Every key starting with `prefix` was deleted.
    pub(crate) fn invalidate_prefix(&self, prefix: &str) {
        if prefix.is_empty() {
            return self.clear();
        }
        let mut sync = self.lock();
        sync.seq += 1;
        let seq = sync.seq;
        for (key, pending) in sync.pending.iter_mut() {
            if key.starts_with(prefix) {
                pending.changed_at = seq;
            }
        }
        let prefix = prefix.to_owned();
        if self
            .entries
            .invalidate_entries_if(move |key, _| key.starts_with(&prefix))
            .is_err()
        {
            self.entries.invalidate_all();
        }
        self.shortcuts.changed_all();
    }

    /// Drops every entry; fills in progress will not insert.
    pub(crate) fn clear(&self) {
        let mut sync = self.lock();
        sync.seq += 1;
        sync.cleared_at = sync.seq;
        self.entries.invalidate_all();
        self.shortcuts.changed_all();
    }

    /// Sets how the tier learns about changes. Turning tracking on or off
    /// clears the tier: entries read under the other mode may be stale.
    pub(crate) fn set_coherence(&self, coherence: Coherence) {
        let old = self.coherence.swap(coherence as u8, Relaxed);
        if old != coherence as u8 {
            self.clear();
            self.changed.notify_waiters();
        }
    }

    /// Whether this cache's own changes are to be published ([`broadcast`]).
    pub(crate) fn broadcasting(&self) -> bool {
        self.broadcasting.load(Relaxed)
    }

    pub(crate) fn set_broadcasting(&self, on: bool) {
        self.broadcasting.store(on, Relaxed);
    }

    /// Returns once the tier is no longer connecting its tracking.
    pub(crate) async fn settled(&self) {
        loop {
            let notified = self.changed.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.coherence() != Coherence::Connecting {
                return;
            }
            notified.await;
        }
    }

    /// The total weight (bytes of keys and values) and the number of entries,
    /// after moka has applied its pending evictions.
    pub(crate) fn size(&self) -> (u64, u64) {
        self.entries.run_pending_tasks();
        (self.entries.weighted_size(), self.entries.entry_count())
    }
}

/// Marks `key` as changed now for the fills in progress.
fn changed(sync: &mut Sync, key: &str) {
    sync.seq += 1;
    let seq = sync.seq;
    if let Some(pending) = sync.pending.get_mut(key) {
        pending.changed_at = seq;
    }
}

/// Ends one fill of `key`, returning when the key last changed. A write
/// whose push has not come (it changed nothing, or the push is late) stops
/// waiting for it: a late push then counts as another client's change.
fn release(sync: &mut Sync, key: &str, echoes: bool) -> u64 {
    let Some(pending) = sync.pending.get_mut(key) else {
        return u64::MAX;
    };
    let changed_at = pending.changed_at;
    if echoes {
        pending.echoes = pending.echoes.saturating_sub(1);
    }
    pending.fills -= 1;
    if pending.fills == 0 {
        sync.pending.remove(key);
    }
    changed_at
}

impl Fill<'_> {
    /// Ends the fill with what Redis returned; see [`LocalTier::finish`].
    pub(crate) fn finish(self, bytes: &[u8]) {
        self.tier.finish(self, bytes);
    }

    /// Ends the fill with what this process stored; see [`LocalTier::stored`].
    pub(crate) fn stored(self, bytes: &[u8], ttl: Option<Duration>) {
        self.tier.stored(self, bytes, ttl);
    }
}

impl Drop for Fill<'_> {
    fn drop(&mut self) {
        if let Some(key) = &self.key {
            release(&mut self.tier.lock(), key, self.echoes);
        }
    }
}

#[cfg(test)]
mod tests;
