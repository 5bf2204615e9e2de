//! Storage: Redis and an embedded in-memory store behind one small trait.
//!
//! Values are opaque bytes and keys are UTF-8 strings; what the bytes mean
//! (codecs) and which key a call uses (key building) are decided above this
//! layer. Generated code never sees which store a [`Cache`](crate::Cache) uses.

mod cluster;
mod held;
mod jitter;
mod managed;
mod memory;
mod placeholder;
mod redis;
mod scan;
mod sentinel;
mod server;
mod shortcut;
mod standalone;

use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;

pub(crate) use cluster::ClusterHandle;
pub(crate) use held::Held;
pub(crate) use jitter::Jitter;
pub(crate) use managed::{Connect, Managed};
pub(crate) use memory::MemoryStore;
pub use placeholder::is_placeholder;
pub(crate) use placeholder::{Claim, Placeholders, Seen, new_placeholder};
pub(crate) use redis::{Connection, RedisStore};
pub(crate) use scan::cluster_primaries;
pub(crate) use sentinel::{SentinelConnector, SentinelHandle, watch_failovers};
pub(crate) use shortcut::Shortcuts;
pub(crate) use standalone::Standalone;

/// How long a stored key has left.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), redis_memo::Error> {
/// use std::time::Duration;
/// use redis_memo::{Cache, KeyTtl};
///
/// let cache = Cache::in_memory();
/// cache.set_raw("k", b"1", Some(Duration::from_secs(60))).await?;
/// assert!(matches!(cache.ttl("k").await?, KeyTtl::ExpiresIn(left) if left <= Duration::from_secs(60)));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyTtl {
    /// The key does not exist.
    Missing,
    /// The key exists and never expires.
    Persistent,
    /// The key expires after this long.
    ExpiresIn(Duration),
}

/// A moka value that says how long it lives from its insertion (`None`: until evicted).
pub(crate) trait Lifetime {
    fn lifetime(&self) -> Option<std::time::Duration>;
}

/// Expires each moka entry after its own [`Lifetime`].
pub(crate) struct OwnLifetime;

impl<V: Lifetime> moka::Expiry<String, V> for OwnLifetime {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &V,
        _at: std::time::Instant,
    ) -> Option<Duration> {
        value.lifetime()
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &V,
        _at: std::time::Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        value.lifetime()
    }
}

/// Which of the keys under a prefix to delete.
pub(crate) type KeyFilter<'a> = dyn Fn(&str) -> bool + Send + Sync + 'a;

/// Every key under the prefix.
pub(crate) fn every_key(_: &str) -> bool {
    true
}

/// One value of a batch to store over what its key held.
#[derive(Clone, Copy)]
pub(crate) struct FillOf<'a> {
    pub(crate) key: &'a str,
    /// What the key must still hold.
    pub(crate) seen: &'a [u8],
    pub(crate) value: &'a [u8],
    pub(crate) ttl: Option<Duration>,
}

/// What a store must do.
pub(crate) trait Store {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error>;
    /// The values of `keys`, in order: one `MGET` (on a cluster, one per
    /// slot, sent at once and put back in order).
    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, Error>;
    /// Stores `value`; `ttl = None` means no expiry.
    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), Error>;
    /// Deletes the keys, returning how many existed.
    async fn delete(&self, keys: &[&str]) -> Result<u64, Error>;
    async fn ttl(&self, key: &str) -> Result<KeyTtl, Error>;
    /// The value of `key` and how long the key has left, in one round trip
    /// (the read of functions with `stale`).
    async fn get_with_ttl(&self, key: &str) -> Result<(Option<Vec<u8>>, KeyTtl), Error>;
    /// Deletes every key that starts with `prefix` (literally) and that
    /// `filter` accepts, returning how many.
    async fn delete_prefix(&self, prefix: &str, filter: &KeyFilter<'_>) -> Result<u64, Error>;
    /// Every key that starts with `prefix` (literally), sorted, each once.
    async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, Error>;
    /// Reads the generation counter `gen_key` (0 when absent) and the value
    /// under `{head}{generation}{tail}`, in one round trip.
    async fn get_grouped(
        &self,
        gen_key: &str,
        head: &str,
        tail: &str,
    ) -> Result<(u64, Option<Vec<u8>>), Error>;
    /// The generation counter `gen_key` (0 when absent).
    async fn generation(&self, gen_key: &str) -> Result<u64, Error>;
    /// Increments the generation counter `gen_key`, returning the new value.
    async fn bump_generation(&self, gen_key: &str) -> Result<u64, Error>;

    /// Writes `placeholder` under `key` for `ttl`, unless the key exists
    /// (see [`placeholder`]).
    async fn claim(&self, key: &str, placeholder: &[u8], ttl: Duration) -> Result<Claim, Error>;
    /// Stores `value` (for `ttl`; `None`: no expiry) if `key` still holds
    /// `expected`; whether it did.
    async fn fill(
        &self,
        key: &str,
        expected: &[u8],
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, Error>;
    /// Makes `key` live `ttl` from now if it still holds `placeholder`;
    /// whether it did (`false` also where that cannot be done atomically).
    async fn renew(&self, key: &str, placeholder: &[u8], ttl: Duration) -> Result<bool, Error>;
    /// Deletes `key` if it holds `value`; whether it did.
    async fn delete_if(&self, key: &str, value: &[u8]) -> Result<bool, Error>;
    /// [`claim`](Self::claim) of each key with its placeholder, in one round
    /// trip (on a cluster: to each key's primary, at once). `Err`: none could
    /// be sent; `None`: that key's claim failed.
    async fn claim_many(
        &self,
        keys: &[&str],
        placeholders: &[Arc<[u8]>],
        ttl: Duration,
    ) -> Result<Vec<Option<Claim>>, Error>;
    /// [`fill`](Self::fill) of each value, in one round trip (on a cluster:
    /// to each key's primary, at once). `Err`: none could be sent; `None`:
    /// that value's store failed.
    async fn fill_many(&self, fills: &[FillOf<'_>]) -> Result<Vec<Option<bool>>, Error>;
}

/// The store a [`Cache`](crate::Cache) uses.
pub(crate) enum Backend {
    Redis(RedisStore),
    Memory(MemoryStore),
}

impl Backend {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Backend::Redis(store) if store.is_cluster() => "redis-cluster",
            Backend::Redis(store) if store.is_sentinel() => "redis-sentinel",
            Backend::Redis(_) => "redis",
            Backend::Memory(_) => "in-memory",
        }
    }

    /// The in-memory store, when this is one: its hits need no copy.
    pub(crate) fn memory(&self) -> Option<&MemoryStore> {
        match self {
            Backend::Memory(store) => Some(store),
            Backend::Redis(_) => None,
        }
    }

    /// The Redis store, when this is one (leases and `PING` need it).
    pub(crate) fn redis(&self) -> Option<&RedisStore> {
        match self {
            Backend::Redis(store) => Some(store),
            Backend::Memory(_) => None,
        }
    }
}

macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            Backend::Redis($store) => $call,
            Backend::Memory($store) => $call,
        }
    };
}

impl Store for Backend {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        dispatch!(self, s => s.get(key).await)
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, Error> {
        dispatch!(self, s => s.get_many(keys).await)
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), Error> {
        dispatch!(self, s => s.set(key, value, ttl).await)
    }

    async fn delete(&self, keys: &[&str]) -> Result<u64, Error> {
        dispatch!(self, s => s.delete(keys).await)
    }

    async fn ttl(&self, key: &str) -> Result<KeyTtl, Error> {
        dispatch!(self, s => s.ttl(key).await)
    }

    async fn get_with_ttl(&self, key: &str) -> Result<(Option<Vec<u8>>, KeyTtl), Error> {
        dispatch!(self, s => s.get_with_ttl(key).await)
    }

    async fn delete_prefix(&self, prefix: &str, filter: &KeyFilter<'_>) -> Result<u64, Error> {
        dispatch!(self, s => s.delete_prefix(prefix, filter).await)
    }

    async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, Error> {
        dispatch!(self, s => s.keys_with_prefix(prefix).await)
    }

    async fn get_grouped(
        &self,
        gen_key: &str,
        head: &str,
        tail: &str,
    ) -> Result<(u64, Option<Vec<u8>>), Error> {
        dispatch!(self, s => s.get_grouped(gen_key, head, tail).await)
    }

    async fn generation(&self, gen_key: &str) -> Result<u64, Error> {
        dispatch!(self, s => s.generation(gen_key).await)
    }

    async fn bump_generation(&self, gen_key: &str) -> Result<u64, Error> {
        dispatch!(self, s => s.bump_generation(gen_key).await)
    }

    async fn claim(&self, key: &str, placeholder: &[u8], ttl: Duration) -> Result<Claim, Error> {
        dispatch!(self, s => s.claim(key, placeholder, ttl).await)
    }

    async fn fill(
        &self,
        key: &str,
        expected: &[u8],
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, Error> {
        dispatch!(self, s => s.fill(key, expected, value, ttl).await)
    }

    async fn renew(&self, key: &str, placeholder: &[u8], ttl: Duration) -> Result<bool, Error> {
        dispatch!(self, s => s.renew(key, placeholder, ttl).await)
    }

    async fn delete_if(&self, key: &str, value: &[u8]) -> Result<bool, Error> {
        dispatch!(self, s => s.delete_if(key, value).await)
    }

    async fn claim_many(
        &self,
        keys: &[&str],
        placeholders: &[Arc<[u8]>],
        ttl: Duration,
    ) -> Result<Vec<Option<Claim>>, Error> {
        dispatch!(self, s => s.claim_many(keys, placeholders, ttl).await)
    }

    async fn fill_many(&self, fills: &[FillOf<'_>]) -> Result<Vec<Option<bool>>, Error> {
        dispatch!(self, s => s.fill_many(fills).await)
    }
}

impl KeyTtl {
    /// What `PTTL` replied: `-2` no key, another negative number no expiry.
    fn from_pttl(ms: i64) -> KeyTtl {
        match ms {
            -2 => KeyTtl::Missing,
            ms if ms < 0 => KeyTtl::Persistent,
            ms => KeyTtl::ExpiresIn(Duration::from_millis(ms.unsigned_abs())),
        }
    }
}

/// A generation counter's stored text as a number.
fn parse_generation(raw: &str) -> Result<u64, Error> {
    raw.parse().map_err(|_| {
        Error::Redis(::redis::RedisError::from((
            ::redis::ErrorKind::Parse,
            "generation counter is not a number",
        )))
    })
}
