//! An embedded store in this process (moka), with Redis's TTL semantics.
//!
//! Reads are lock-free moka lookups. Everything that changes a key (a write,
//! a delete, a claim, a compare-and-set) takes the lock of the key's stripe
//! first, so that a compare-and-set and a write of the same key happen one
//! after the other, as they would in Redis.

use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Claim, FillOf, Held, KeyFilter, KeyTtl, Seen, Shortcuts, Store, is_placeholder};
use crate::error::Error;
use crate::key::CallId;

/// How many locks the keys are spread over.
const STRIPES: usize = 64;

#[derive(Clone)]
struct Entry {
    held: Arc<Held>,
    ttl: Option<Duration>,
    expires_at: Option<Instant>,
}

impl super::Lifetime for Entry {
    fn lifetime(&self) -> Option<Duration> {
        self.ttl
    }
}

/// An embedded store: bounded by total bytes, with per-entry TTLs, evicting the
/// least useful entries when full (moka's TinyLFU).
pub(crate) struct MemoryStore {
    entries: moka::sync::Cache<String, Entry, foldhash::quality::RandomState>,
    generations: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    stripes: Box<[Mutex<()>]>,
    hasher: foldhash::quality::RandomState,
    /// From calls to the entries they found; every change of a key below
    /// ends the shortcuts to it.
    shortcuts: Shortcuts,
}

impl MemoryStore {
    pub(crate) fn new(max_bytes: u64) -> Self {
        let entries = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &String, entry: &Entry| Held::weight(key, entry.held.bytes()))
            .expire_after(super::OwnLifetime)
            .build_with_hasher(foldhash::quality::RandomState::default());
        MemoryStore {
            entries,
            generations: Default::default(),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            hasher: foldhash::quality::RandomState::default(),
            shortcuts: Shortcuts::new(max_bytes),
        }
    }

    /// The value the call `id` found last time, with its key, if neither
    /// changed since: no key to compute, no lookup.
    pub(crate) fn shortcut(&self, id: &CallId<'_, '_>) -> Option<(Arc<str>, Arc<Held>)> {
        self.shortcuts.get(id)
    }

    /// The value of `key` (`None` also for a placeholder), for the call
    /// `id`, which then finds it by [`shortcut`](Self::shortcut) until the
    /// key changes.
    pub(crate) fn held_for(&self, id: CallId<'static, '_>, key: &str) -> Option<Arc<Held>> {
        let mark = self.shortcuts.mark(key);
        let entry = self.entries.get(key)?;
        if is_placeholder(entry.held.bytes()) {
            return None;
        }
        self.shortcuts
            .remember(id, key, &entry.held, entry.expires_at, mark);
        Some(entry.held)
    }

    /// Removes `key`; whether it was there.
    fn remove(&self, key: &str) -> bool {
        let removed = self.entries.remove(key).is_some();
        self.shortcuts.changed(key);
        removed
    }

    /// The value of `key`, without copying its bytes: the hit path of a
    /// call (`None` also for a placeholder). Like [`get`](Store::get), it
    /// takes part in cooperative scheduling.
    pub(crate) async fn held(&self, key: &str) -> Option<Arc<Held>> {
        tokio::task::consume_budget().await;
        self.entries
            .get(key)
            .map(|entry| entry.held)
            .filter(|held| !is_placeholder(held.bytes()))
    }

    /// The lock every change of `key` takes.
    fn lock(&self, key: &str) -> MutexGuard<'_, ()> {
        let stripe = (self.hasher.hash_one(key) as usize) % STRIPES;
        // Guards no data: a panic cannot leave anything half-done.
        self.stripes[stripe]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn insert(&self, key: &str, value: &[u8], ttl: Option<Duration>) {
        let entry = Entry {
            held: Arc::new(Held::new(value)),
            ttl,
            expires_at: ttl.and_then(|ttl| Instant::now().checked_add(ttl)),
        };
        self.entries.insert(key.to_owned(), entry);
        self.shortcuts.changed(key);
    }

    /// The bytes `key` holds now.
    fn current(&self, key: &str) -> Option<Arc<Held>> {
        self.entries.get(key).map(|entry| entry.held)
    }
}

impl Store for MemoryStore {
    /// A read that never waits on I/O still takes part in tokio's
    /// cooperative scheduling: a task looping over hits yields once its
    /// budget is spent, so it cannot starve the other tasks of its worker.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.held(key).await.map(|held| held.bytes().to_vec()))
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, Error> {
        tokio::task::consume_budget().await;
        Ok(keys
            .iter()
            .map(|key| self.current(key).map(|held| held.bytes().to_vec()))
            .collect())
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), Error> {
        let _lock = self.lock(key);
        self.insert(key, value, ttl);
        Ok(())
    }

    async fn delete(&self, keys: &[&str]) -> Result<u64, Error> {
        let mut n = 0;
        for key in keys {
            let _lock = self.lock(key);
            n += u64::from(self.remove(key));
        }
        Ok(n)
    }

    async fn ttl(&self, key: &str) -> Result<KeyTtl, Error> {
        Ok(self.get_with_ttl(key).await?.1)
    }

    async fn get_with_ttl(&self, key: &str) -> Result<(Option<Vec<u8>>, KeyTtl), Error> {
        tokio::task::consume_budget().await;
        Ok(match self.entries.get(key) {
            None => (None, KeyTtl::Missing),
            Some(entry) => {
                let left = match entry.expires_at {
                    None => KeyTtl::Persistent,
                    Some(at) => KeyTtl::ExpiresIn(at.saturating_duration_since(Instant::now())),
                };
                (Some(entry.held.bytes().to_vec()), left)
            }
        })
    }

    async fn delete_prefix(&self, prefix: &str, filter: &KeyFilter<'_>) -> Result<u64, Error> {
        let keys: Vec<String> = self
            .entries
            .iter()
            .filter(|(key, _)| key.starts_with(prefix) && filter(key))
            .map(|(key, _)| String::clone(&key))
            .collect();
        let mut deleted = 0;
        for key in keys {
            let _lock = self.lock(&key);
            deleted += u64::from(self.remove(&key));
        }
        // Generation counters are keys as well on Redis.
        let mut generations = self.generations.lock().unwrap_or_else(|p| p.into_inner());
        let before = generations.len();
        generations.retain(|key, _| !(key.starts_with(prefix) && filter(key)));
        Ok(deleted + (before - generations.len()) as u64)
    }

    async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let mut keys: Vec<String> = self
            .entries
            .iter()
            .map(|(key, _)| String::clone(&key))
            .filter(|key| key.starts_with(prefix))
            .collect();
        let generations = self.generations.lock().unwrap_or_else(|p| p.into_inner());
        keys.extend(
            generations
                .keys()
                .filter(|k| k.starts_with(prefix))
                .cloned(),
        );
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    async fn get_grouped(
        &self,
        gen_key: &str,
        head: &str,
        tail: &str,
    ) -> Result<(u64, Option<Vec<u8>>), Error> {
        let generation = self.generation(gen_key).await?;
        let value = self.get(&format!("{head}{generation}{tail}")).await?;
        Ok((generation, value))
    }

    async fn generation(&self, gen_key: &str) -> Result<u64, Error> {
        let generations = self.generations.lock().unwrap_or_else(|p| p.into_inner());
        Ok(generations.get(gen_key).copied().unwrap_or(0))
    }

    async fn bump_generation(&self, gen_key: &str) -> Result<u64, Error> {
        let mut generations = self.generations.lock().unwrap_or_else(|p| p.into_inner());
        let generation = generations.entry(gen_key.to_owned()).or_insert(0);
        *generation += 1;
        Ok(*generation)
    }

    async fn claim(&self, key: &str, placeholder: &[u8], ttl: Duration) -> Result<Claim, Error> {
        let _lock = self.lock(key);
        match self.current(key) {
            Some(held) => Ok(Claim::Lost(Seen::of(Some(held.bytes().to_vec())))),
            None => {
                self.insert(key, placeholder, Some(ttl));
                Ok(Claim::Won)
            }
        }
    }

    async fn fill(
        &self,
        key: &str,
        expected: &[u8],
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, Error> {
        let _lock = self.lock(key);
        if self
            .current(key)
            .is_none_or(|held| held.bytes() != expected)
        {
            return Ok(false);
        }
        self.insert(key, value, ttl);
        Ok(true)
    }

    async fn renew(&self, key: &str, placeholder: &[u8], ttl: Duration) -> Result<bool, Error> {
        let _lock = self.lock(key);
        if self
            .current(key)
            .is_none_or(|held| held.bytes() != placeholder)
        {
            return Ok(false);
        }
        self.insert(key, placeholder, Some(ttl));
        Ok(true)
    }

    async fn claim_many(
        &self,
        keys: &[&str],
        placeholders: &[Arc<[u8]>],
        ttl: Duration,
    ) -> Result<Vec<Option<Claim>>, Error> {
        let mut claims = Vec::with_capacity(keys.len());
        for (key, placeholder) in keys.iter().zip(placeholders) {
            claims.push(Some(self.claim(key, placeholder, ttl).await?));
        }
        Ok(claims)
    }

    async fn fill_many(&self, fills: &[FillOf<'_>]) -> Result<Vec<Option<bool>>, Error> {
        let mut stored = Vec::with_capacity(fills.len());
        for fill in fills {
            stored.push(Some(
                self.fill(fill.key, fill.seen, fill.value, fill.ttl).await?,
            ));
        }
        Ok(stored)
    }

    async fn delete_if(&self, key: &str, value: &[u8]) -> Result<bool, Error> {
        let _lock = self.lock(key);
        if self.current(key).is_none_or(|held| held.bytes() != value) {
            return Ok(false);
        }
        Ok(self.remove(key))
    }
}
