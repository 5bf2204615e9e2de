//! Storage: Redis and an embedded in-memory store behind one small trait.
//!
//! Generated code never sees which one a [`Cache`](crate::Cache) uses.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

use crate::Error;

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

/// What a backend must do. Values are opaque bytes; keys are UTF-8 strings.
pub(crate) trait Store {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error>;
    /// Stores `value`; `ttl = None` means no expiry.
    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), Error>;
    /// Deletes the keys, returning how many existed.
    async fn delete(&self, keys: &[&str]) -> Result<u64, Error>;
    async fn ttl(&self, key: &str) -> Result<KeyTtl, Error>;
    /// Deletes every key that starts with `prefix` (literally), returning how many.
    async fn delete_prefix(&self, prefix: &str) -> Result<u64, Error>;
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
}

/// The store a [`Cache`](crate::Cache) uses.
pub(crate) enum Backend {
    Redis(RedisStore),
    Memory(MemoryStore),
}

impl Backend {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Backend::Redis(_) => "redis",
            Backend::Memory(_) => "in-memory",
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
        match self {
            Backend::Redis(store) => store.get(key).await,
            // moka's future is large: boxed, it does not grow the future of
            // every call on Redis (moved and polled on each call).
            Backend::Memory(store) => Box::pin(store.get(key)).await,
        }
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

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, Error> {
        dispatch!(self, s => s.delete_prefix(prefix).await)
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
}

/// Reads a generation and the value of that generation in one round trip.
/// (It builds a key the script was not given in KEYS, so it needs a
/// standalone Redis, not a cluster.)
static GET_GROUPED: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        "local g = redis.call('GET', KEYS[1]) or '0' \
         return {g, redis.call('GET', ARGV[1] .. g .. ARGV[2])}",
    )
});

fn parse_generation(raw: &str) -> Result<u64, Error> {
    raw.parse().map_err(|_| {
        Error::Redis(redis::RedisError::from((
            redis::ErrorKind::Parse,
            "generation counter is not a number",
        )))
    })
}

// --- Redis ----------------------------------------------------------------------

/// Redis through redis-rs's `ConnectionManager`: one multiplexed connection that
/// pipelines concurrent commands and reconnects by itself after a failure.
pub(crate) struct RedisStore {
    pub(crate) conn: ConnectionManager,
    pub(crate) response_timeout: Duration,
}

impl RedisStore {
    /// Runs one command. The connection manager bounds each response by
    /// `response_timeout` and each (re)connection attempt by `connect_timeout`.
    pub(crate) async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, Error> {
        // What `Cmd::query_async` does, through the manager's own method: the
        // `ConnectionLike` path boxes the future of every command.
        let result = async {
            let value = self.conn.clone().send_packed_command(cmd).await?;
            Ok(redis::from_redis_value(value.extract_error()?)?)
        };
        result
            .await
            .map_err(|e: redis::RedisError| Error::from_redis(e, self.response_timeout))
    }

    /// Runs a pipeline in one round trip, bounded like [`query`](Self::query).
    pub(crate) async fn query_pipe<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, Error> {
        let result = pipe.query_async(&mut self.conn.clone()).await;
        result.map_err(|e| Error::from_redis(e, self.response_timeout))
    }
}

impl Store for RedisStore {
    /// The hit path: one `GET`, its command built in buffers of the right size.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let mut cmd = redis::Cmd::with_capacity(2, "GET".len() + key.len());
        cmd.arg("GET").arg(key);
        self.query(&cmd).await
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), Error> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value);
        if let Some(ttl) = ttl {
            if ttl.subsec_nanos() == 0 {
                cmd.arg("EX").arg(ttl.as_secs());
            } else {
                cmd.arg("PX").arg(ttl.as_millis().max(1) as u64);
            }
        }
        self.query::<()>(&cmd).await
    }

    async fn delete(&self, keys: &[&str]) -> Result<u64, Error> {
        if keys.is_empty() {
            return Ok(0);
        }
        self.query(redis::cmd("UNLINK").arg(keys)).await
    }

    async fn ttl(&self, key: &str) -> Result<KeyTtl, Error> {
        let ms: i64 = self.query(redis::cmd("PTTL").arg(key)).await?;
        Ok(match ms {
            -2 => KeyTtl::Missing,
            ms if ms < 0 => KeyTtl::Persistent,
            ms => KeyTtl::ExpiresIn(Duration::from_millis(ms as u64)),
        })
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, Error> {
        crate::invalidate::redis_delete_prefix(self, prefix).await
    }

    async fn get_grouped(
        &self,
        gen_key: &str,
        head: &str,
        tail: &str,
    ) -> Result<(u64, Option<Vec<u8>>), Error> {
        let mut invocation = GET_GROUPED.prepare_invoke();
        invocation.key(gen_key).arg(head).arg(tail);
        let mut conn = self.conn.clone();
        let (generation, value): (String, Option<Vec<u8>>) = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| Error::from_redis(e, self.response_timeout))?;
        Ok((parse_generation(&generation)?, value))
    }

    async fn generation(&self, gen_key: &str) -> Result<u64, Error> {
        let raw: Option<String> = self.query(redis::cmd("GET").arg(gen_key)).await?;
        raw.map_or(Ok(0), |raw| parse_generation(&raw))
    }

    async fn bump_generation(&self, gen_key: &str) -> Result<u64, Error> {
        self.query(redis::cmd("INCR").arg(gen_key)).await
    }
}

// --- in memory ------------------------------------------------------------------

#[derive(Clone)]
pub(crate) struct Entry {
    bytes: Arc<[u8]>,
    ttl: Option<Duration>,
    expires_at: Option<Instant>,
}

struct EntryExpiry;

impl moka::Expiry<String, Entry> for EntryExpiry {
    fn expire_after_create(&self, _key: &String, value: &Entry, _at: Instant) -> Option<Duration> {
        value.ttl
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &Entry,
        _at: Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        value.ttl
    }
}

/// An embedded store: bounded by total bytes, with per-entry TTLs, evicting the
/// least useful entries when full (moka's TinyLFU).
pub(crate) struct MemoryStore {
    pub(crate) entries: moka::future::Cache<String, Entry>,
    generations: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

impl MemoryStore {
    pub(crate) fn new(max_bytes: u64) -> Self {
        let entries = moka::future::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &String, entry: &Entry| {
                u32::try_from(key.len() + entry.bytes.len()).unwrap_or(u32::MAX)
            })
            .expire_after(EntryExpiry)
            .build();
        MemoryStore {
            entries,
            generations: Default::default(),
        }
    }
}

impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.entries.get(key).await.map(|e| e.bytes.to_vec()))
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), Error> {
        let entry = Entry {
            bytes: value.into(),
            ttl,
            expires_at: ttl.and_then(|ttl| Instant::now().checked_add(ttl)),
        };
        self.entries.insert(key.to_owned(), entry).await;
        Ok(())
    }

    async fn delete(&self, keys: &[&str]) -> Result<u64, Error> {
        let mut n = 0;
        for key in keys {
            n += u64::from(self.entries.remove(*key).await.is_some());
        }
        Ok(n)
    }

    async fn ttl(&self, key: &str) -> Result<KeyTtl, Error> {
        Ok(match self.entries.get(key).await {
            None => KeyTtl::Missing,
            Some(Entry {
                expires_at: None, ..
            }) => KeyTtl::Persistent,
            Some(Entry {
                expires_at: Some(at),
                ..
            }) => KeyTtl::ExpiresIn(at.saturating_duration_since(Instant::now())),
        })
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, Error> {
        crate::invalidate::memory_delete_prefix(self, prefix).await
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
}
