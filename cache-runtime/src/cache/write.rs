//! The one path of every change this process makes to a cache's entries:
//! a miss's value, `set`, `{fn}_prime`, `set_raw`, and every invalidation.
//! The rule that an invalidation always wins is kept here, once.
//!
//! ```text
//! a write ── too large for max_value_bytes? ───────────────► Err(ValueTooLarge)
//!    │ local tier: begin, as a fill does (before anything is sent; the
//!    │             key's prefix tracked first, see local::prefixes)
//!    ▼
//! store: SET / compare-and-set (a miss's value: only over what the key held
//!        when the miss looked) / UNLINK / SCAN + UNLINK / INCR
//!    ▼
//! local tier: the value written (unless the key changed meanwhile), or the
//!             entries dropped
//! flights: those of the keys changed leave the map: a call that begins after
//!          this returns never receives the value of a body that began before
//! broadcast: to the caches that cannot track keys (see local::broadcast)
//! counters: stores, fills_refused, write_errors, misconfigured, invalidations
//! ```
//!
//! A miss's claim of its key, and the renewal and release of its own
//! placeholder, are steps of that miss, not changes of an entry: `call::run`
//! makes them (see `store::placeholder`), and the value that ends the miss
//! comes here as a [`Write::Fill`].

use std::time::Duration;

use super::Cache;
use crate::error::Error;
use crate::health::{Counter, Family};
use crate::local::broadcast::Change;
use crate::store::{FillOf, KeyFilter, Store, every_key};

/// A change to the cache's entries.
pub(crate) enum Write<'a> {
    /// A value given on purpose (`set`, `{fn}_prime`, `set_raw`): it wins
    /// over any body running, whose value is then refused.
    Put {
        key: &'a str,
        bytes: &'a [u8],
        ttl: Option<Duration>,
        /// Whether the local tier keeps it (`local = false` functions: no).
        local: bool,
    },
    /// The value of a body, stored only if the key still holds `seen`,
    /// what it held when the miss looked (a placeholder, or the value the
    /// body replaces).
    Fill {
        key: &'a str,
        seen: &'a [u8],
        bytes: &'a [u8],
        ttl: Option<Duration>,
        local: bool,
    },
    /// These keys, deleted.
    Delete(&'a [&'a str]),
    /// Every key under `prefix` that `filter` accepts, deleted.
    DeletePrefix {
        prefix: &'a str,
        filter: &'a KeyFilter<'a>,
    },
    /// Every key of the database, deleted.
    DeleteAll,
    /// The generation counter `gen_key` of a group, incremented.
    BumpGeneration(&'a str),
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    /// The value is stored.
    Stored,
    /// A body's value was not stored: its key changed during the body.
    Refused,
    /// This many keys were deleted.
    Deleted(u64),
    /// The group's generation is now this.
    Generation(u64),
}

impl Written {
    /// How many keys a delete deleted, the generation a bump reached; 1 for
    /// a value stored, 0 for one refused.
    pub(crate) fn number(self) -> u64 {
        match self {
            Written::Deleted(n) | Written::Generation(n) => n,
            Written::Stored => 1,
            Written::Refused => 0,
        }
    }
}

impl Cache {
    /// Applies `write` to the store, the local tier, the flights, the
    /// broadcast and the counters of `family` (`None`: not counted, as for
    /// `set_raw`). See the module's documentation.
    pub(crate) async fn write(
        &self,
        write: Write<'_>,
        family: Option<&Family<'_>>,
    ) -> Result<Written, Error> {
        match write {
            Write::Put {
                key,
                bytes,
                ttl,
                local,
            } => {
                self.within_limit(bytes)?;
                let fill = self.begin_write(key, local).await;
                let written = self.store().set(key, bytes, ttl).await;
                let written = self.health().record(key, written);
                if let Some(tier) = self.local() {
                    match (&written, fill) {
                        (Ok(()), Some(fill)) if local => fill.stored(bytes, ttl),
                        _ => tier.invalidate(key),
                    }
                }
                self.flights().detach(|k| k == key);
                self.announce(Change::Key(key)).await;
                self.count_write(family, written.as_ref().map(|()| true).map_err(Some));
                written.map(|()| Written::Stored)
            }
            Write::Fill {
                key,
                seen,
                bytes,
                ttl,
                local,
            } => {
                self.within_limit(bytes)?;
                let fill = self.begin_write(key, local).await;
                let filled = self.store().fill(key, seen, bytes, ttl).await;
                let filled = self.health().record(key, filled);
                if let Some(tier) = self.local() {
                    match (&filled, fill) {
                        (Ok(true), Some(fill)) if local => fill.stored(bytes, ttl),
                        // The key changed: whoever changed it updated the tier
                        // (this process) or will (tracking, broadcast).
                        (Ok(false), _) => {}
                        _ => tier.invalidate(key),
                    }
                }
                if let Ok(true) = filled {
                    self.announce(Change::Key(key)).await;
                }
                self.count_write(family, filled.as_ref().map(|stored| *stored).map_err(Some));
                Ok(if filled? {
                    Written::Stored
                } else {
                    Written::Refused
                })
            }
            Write::Delete(keys) => {
                let deleted = self.store().delete(keys).await;
                if let Some(tier) = self.local() {
                    for key in keys {
                        tier.invalidate(key);
                    }
                }
                self.flights().detach(|k| keys.contains(&k));
                for key in keys {
                    self.announce(Change::Key(key)).await;
                }
                self.count_deleted(family, deleted)
            }
            Write::DeletePrefix { prefix, filter } => {
                let deleted = self.store().delete_prefix(prefix, filter).await;
                if let Some(tier) = self.local() {
                    tier.invalidate_prefix(prefix);
                }
                self.flights()
                    .detach(|k| k.starts_with(prefix) && filter(k));
                self.announce(Change::Prefix(prefix)).await;
                self.count_deleted(family, deleted)
            }
            Write::DeleteAll => {
                let deleted = self.store().delete_prefix("", &every_key).await;
                if let Some(tier) = self.local() {
                    tier.clear();
                }
                self.flights().detach(|_| true);
                self.announce(Change::All).await;
                self.count_deleted(family, deleted)
            }
            Write::BumpGeneration(gen_key) => {
                let fill = self.begin_write(gen_key, true).await;
                let generation = self.store().bump_generation(gen_key).await;
                if let Some(tier) = self.local() {
                    // Read-your-own-writes: the next call uses the new generation.
                    match (&generation, fill) {
                        (Ok(generation), Some(fill)) => {
                            fill.stored(generation.to_string().as_bytes(), None)
                        }
                        _ => tier.invalidate(gen_key),
                    }
                }
                self.announce(Change::Key(gen_key)).await;
                let generation = generation?;
                if let Some(family) = family {
                    self.health().count(family, Counter::Invalidations, 1);
                }
                Ok(Written::Generation(generation))
            }
        }
    }

    /// [`Write::Fill`] for many values at once (a batch's loaded elements):
    /// each goes through the same steps, and the store gets them in one round
    /// trip. For each: whether it was stored (`None`: it failed, or was too
    /// large, and was not). Counted under `family(key)`.
    pub(crate) async fn write_fills(
        &self,
        fills: &[FillOf<'_>],
        local: bool,
        family: &(dyn Fn(&str) -> Family<'_> + Sync),
    ) -> Vec<Option<bool>> {
        let mut outcome = vec![None; fills.len()];
        let (sent, kept): (Vec<usize>, Vec<FillOf<'_>>) = fills
            .iter()
            .enumerate()
            .filter(|(_, fill)| self.within_limit(fill.value).is_ok())
            .map(|(i, fill)| (i, *fill))
            .unzip();
        let Some(first) = kept.first() else {
            return outcome;
        };
        let tier = self.local();
        let mut begun = Vec::with_capacity(kept.len());
        for fill in &kept {
            begun.push(self.begin_write(fill.key, local).await);
        }
        let filled = self.store().fill_many(&kept).await;
        let filled = self.health().record(first.key, filled);
        let results: Vec<Option<bool>> = match &filled {
            Ok(stored) => stored.clone(),
            Err(_) => vec![None; kept.len()],
        };
        for ((fill, begun), stored) in kept.iter().zip(begun).zip(&results) {
            if let Some(tier) = tier {
                match (stored, begun) {
                    (Some(true), Some(begun)) if local => begun.stored(fill.value, fill.ttl),
                    (Some(false), _) => {}
                    _ => tier.invalidate(fill.key),
                }
            }
            if *stored == Some(true) {
                self.announce(Change::Key(fill.key)).await;
            }
            let counted = match (stored, &filled) {
                (Some(stored), _) => Ok(*stored),
                (None, Err(err)) => Err(Some(err)),
                (None, Ok(_)) => Err(None),
            };
            self.count_write(Some(&family(fill.key)), counted);
        }
        for (i, stored) in sent.into_iter().zip(results) {
            outcome[i] = stored;
        }
        outcome
    }

    /// Begins a write of `key` in the local tier, if any; when the tier is
    /// to keep it (`keep`), once its prefix is tracked (see `LocalTier::track`).
    async fn begin_write(&self, key: &str, keep: bool) -> Option<crate::local::Fill<'_>> {
        let tier = self.local()?;
        if keep {
            tier.track(key).await;
        }
        Some(tier.begin_write(key))
    }

    /// `Err(ValueTooLarge)` for a value above `max_value_bytes`.
    fn within_limit(&self, bytes: &[u8]) -> Result<(), Error> {
        match self.max_value_bytes() {
            Some(limit) if bytes.len() > limit => Err(Error::ValueTooLarge {
                size: bytes.len(),
                limit,
            }),
            _ => Ok(()),
        }
    }

    /// Counts a value written (`Ok(true)`), refused (`Ok(false)`) or failed
    /// (with the error, when there is one to tell misconfiguration by).
    pub(crate) fn count_write(
        &self,
        family: Option<&Family<'_>>,
        written: Result<bool, Option<&Error>>,
    ) {
        let Some(family) = family else { return };
        let health = self.health();
        match written {
            Ok(true) => health.count(family, Counter::Stores, 1),
            Ok(false) => health.count(family, Counter::FillsRefused, 1),
            Err(err) => {
                if err.is_some_and(|err| err.misconfiguration().is_some()) {
                    health.count(family, Counter::Misconfigured, 1);
                }
                health.count(family, Counter::WriteErrors, 1);
            }
        }
    }

    fn count_deleted(
        &self,
        family: Option<&Family<'_>>,
        deleted: Result<u64, Error>,
    ) -> Result<Written, Error> {
        let deleted = deleted?;
        if let (Some(family), 1..) = (family, deleted) {
            self.health().count(family, Counter::Invalidations, deleted);
        }
        Ok(Written::Deleted(deleted))
    }
}
