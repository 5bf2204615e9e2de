//! The `Cache` handle, its builder, the process-wide default, and the
//! get-or-run path that every `#[cached]` call goes through.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::Error;
use crate::backend::{Backend, KeyTtl, MemoryStore, RedisStore, Store};
use crate::call::CallOutcome;
use crate::codec::{Codec, Format};
use crate::flight::Flights;
use crate::health::{Breaker, BreakerConfig, ByFunction, Counters, Stats, WarnLimiter};
use crate::key::FnName;

/// Default bound on connecting to Redis.
///
/// ```
/// println!("{:?}", redis_memo::DEFAULT_CONNECT_TIMEOUT);
/// ```
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default bound on one Redis command, from send to reply.
///
/// ```
/// println!("{:?}", redis_memo::DEFAULT_RESPONSE_TIMEOUT);
/// ```
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);
/// Default largest value stored (encoded size); larger values are returned but not cached.
///
/// ```
/// println!("{:?}", redis_memo::DEFAULT_MAX_VALUE_BYTES);
/// ```
pub const DEFAULT_MAX_VALUE_BYTES: usize = 16 * 1024 * 1024;
/// Default size bound of the in-memory backend, in bytes of keys and values.
///
/// ```
/// println!("{:?}", redis_memo::DEFAULT_MEMORY_CAPACITY);
/// ```
pub const DEFAULT_MEMORY_CAPACITY: u64 = 64 * 1024 * 1024;

/// A handle to one cache: Redis, or the embedded in-memory store.
///
/// `Cache` is cheap to clone (an `Arc` inside); clones share the connection.
/// Build one with [`Cache::connect`], [`Cache::in_memory`], [`Cache::from_env`]
/// or [`Cache::builder`], then either name it in `#[cached(cache = ...)]` or
/// install it as the process-wide default with [`set_default_cache`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), redis_memo::Error> {
/// use redis_memo::{Cache, cached};
///
/// #[cached(ttl = 60, cache = cache, key_prefix = "docs:")]
/// async fn double(cache: &Cache, x: u64) -> u64 {
///     x * 2
/// }
///
/// let cache = Cache::in_memory();
/// assert_eq!(double(&cache, 21).await, 42); // runs the body, stores 42
/// assert_eq!(double(&cache, 21).await, 42); // read from the cache
/// assert_eq!(cache.invalidate_prefix("docs:").await?, 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
    default_version: Option<u32>,
}

pub(crate) struct Inner {
    backend: Backend,
    flights: Flights,
    pub(crate) breaker: Breaker,
    pub(crate) counters: Counters,
    /// Rate limit of "Redis failed" warnings on the call path.
    pub(crate) warn_errors: WarnLimiter,
    pub(crate) max_value_bytes: Option<usize>,
    pub(crate) format: Format,
    pub(crate) by_function: ByFunction,
}

/// The options a backend is built with, beyond its connection.
#[derive(Debug, Clone, Copy)]
struct Options {
    breaker: BreakerConfig,
    max_value_bytes: Option<usize>,
    format: Format,
    memory_capacity: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            breaker: BreakerConfig::default(),
            max_value_bytes: Some(DEFAULT_MAX_VALUE_BYTES),
            format: Format::default(),
            memory_capacity: DEFAULT_MEMORY_CAPACITY,
        }
    }
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("backend", &self.inner.backend.kind())
            .finish()
    }
}

impl Cache {
    /// Like [`Cache::connect`], but returns at once without waiting for Redis
    /// (see [`CacheBuilder::build_lazy`]): calls run uncached until Redis
    /// answers. Fails only on an invalid URL.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), redis_memo::Error> {
    /// // Returns at once even though nothing listens on port 1.
    /// let cache = redis_memo::Cache::connect_lazy("redis://127.0.0.1:1").await?;
    /// assert_eq!(cache.backend_kind(), "redis");
    /// # Ok(()) }
    /// ```
    pub async fn connect_lazy(url: &str) -> Result<Cache, Error> {
        Cache::builder().url(url).build_lazy().await
    }

    /// Connects to Redis with the default timeouts.
    ///
    /// The URL is `redis://[user:password@]host[:port][/db]`, or `rediss://...`
    /// for TLS. Fails with [`Error::InvalidUrl`] on a malformed URL and with
    /// [`Error::Connection`] or [`Error::Timeout`] when Redis cannot be reached
    /// within [`DEFAULT_CONNECT_TIMEOUT`].
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), redis_memo::Error> {
    /// let cache = redis_memo::Cache::connect("redis://127.0.0.1:6379/0").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Cache, Error> {
        Cache::builder().url(url).build().await
    }

    /// An embedded cache in this process, bounded to
    /// [`DEFAULT_MEMORY_CAPACITY`] bytes, with the same TTL semantics as Redis.
    /// Nothing is shared with other processes.
    ///
    /// ```
    /// let cache = redis_memo::Cache::in_memory();
    /// assert_eq!(cache.backend_kind(), "in-memory");
    /// ```
    pub fn in_memory() -> Cache {
        Cache::builder().build_in_memory()
    }

    /// Redis at `REDIS_URL` when that variable is set, the in-memory cache
    /// otherwise. Logs which one it chose at `info` level.
    ///
    /// Fails only when `REDIS_URL` is set and Redis cannot be used, so that a
    /// typo in the URL is not silently replaced by a per-process cache.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), redis_memo::Error> {
    /// let cache = redis_memo::Cache::from_env().await?;
    /// println!("caching in {}", cache.backend_kind());
    /// # Ok(()) }
    /// ```
    pub async fn from_env() -> Result<Cache, Error> {
        match std::env::var("REDIS_URL") {
            Ok(url) if !url.trim().is_empty() => {
                let cache = Cache::connect(url.trim()).await?;
                tracing::info!("redis-memo: caching in Redis (REDIS_URL)");
                Ok(cache)
            }
            _ => {
                tracing::info!("redis-memo: REDIS_URL is not set; caching in memory");
                Ok(Cache::in_memory())
            }
        }
    }

    /// A builder for the options [`Cache::connect`] leaves at their defaults.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), redis_memo::Error> {
    /// use std::time::Duration;
    ///
    /// let cache = redis_memo::Cache::builder()
    ///     .url("redis://127.0.0.1:6379")
    ///     .connect_timeout(Duration::from_secs(1))
    ///     .response_timeout(Duration::from_millis(100))
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn builder() -> CacheBuilder {
        CacheBuilder::default()
    }

    fn from_backend(backend: Backend, options: Options) -> Cache {
        Cache {
            default_version: None,
            inner: Arc::new(Inner {
                backend,
                flights: Flights::default(),
                breaker: Breaker::new(options.breaker),
                counters: Counters::default(),
                warn_errors: WarnLimiter::new(),
                max_value_bytes: options.max_value_bytes,
                format: options.format,
                by_function: ByFunction::default(),
            }),
        }
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// A snapshot of this cache's counters (shared by its clones): hits,
    /// misses, corrupt values, errors, calls skipped by the circuit breaker.
    ///
    /// ```
    /// let stats = redis_memo::Cache::in_memory().stats();
    /// assert_eq!((stats.hits, stats.misses, stats.breaker_open), (0, 0, false));
    /// ```
    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        let get = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
        let functions = self.inner.by_function.snapshot();
        Stats {
            hits: functions.iter().map(|f| f.hits).sum(),
            misses: functions
                .iter()
                .map(|f| f.misses + f.corrupt + f.errors)
                .sum(),
            corrupt: get(&c.corrupt),
            errors: get(&c.errors),
            skipped: get(&c.skipped),
            stores: get(&c.stores),
            breaker_trips: self.inner.breaker.trips(),
            breaker_open: self.inner.breaker.is_open(),
            invalidations: get(&c.invalidations),
            functions,
        }
    }

    /// Counts a finished call for its function (and the `metrics` facade).
    pub(crate) fn observe(&self, name: FnName<'static>, outcome: CallOutcome, start: CallStart) {
        self.inner.by_function.add(name, outcome);
        #[cfg(feature = "metrics")]
        crate::health::record_metrics(name, outcome, start.0.elapsed());
        #[cfg(not(feature = "metrics"))]
        let _ = start;
    }

    fn count_invalidations(&self, n: u64) {
        self.inner
            .counters
            .invalidations
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// Round-trip time of a `PING`, for readiness probes. The in-memory cache
    /// answers at once.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), redis_memo::Error> {
    /// let latency = redis_memo::Cache::in_memory().ping().await?;
    /// assert!(latency < std::time::Duration::from_secs(1));
    /// # Ok(()) }
    /// ```
    pub async fn ping(&self) -> Result<Duration, Error> {
        let start = std::time::Instant::now();
        if let Backend::Redis(store) = &self.inner.backend {
            store.query::<String>(&redis::cmd("PING")).await?;
        }
        Ok(start.elapsed())
    }

    /// A handle on the same cache whose functions without `version = ...` use
    /// `version` in their keys (`{prefix}{name}:v{version}:{hex}`). Bumping it,
    /// at a deploy for example, retires every such entry at once, without a scan:
    /// the old entries are no longer read and expire with their TTL.
    ///
    /// ```
    /// let cache = redis_memo::Cache::in_memory().with_default_version(2);
    /// assert_eq!(cache.default_version(), Some(2));
    /// ```
    pub fn with_default_version(&self, version: u32) -> Cache {
        Cache {
            inner: self.inner.clone(),
            default_version: Some(version),
        }
    }

    /// The version used by functions without `version = ...`, if any.
    ///
    /// ```
    /// assert_eq!(redis_memo::Cache::in_memory().default_version(), None);
    /// ```
    pub fn default_version(&self) -> Option<u32> {
        self.default_version
    }

    /// Drops every entry of the functions declared with
    /// `#[cached(key_prefix = prefix, grouped = true)]`, in O(1) whatever their
    /// number: it increments the group's generation counter
    /// (`redis-memo:generation:{prefix}`), which is part of their keys. The old
    /// entries are no longer read and expire with their TTL. Returns the new
    /// generation.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), redis_memo::Error> {
    /// let cache = redis_memo::Cache::in_memory();
    /// assert_eq!(cache.invalidate_group("users:").await?, 1);
    /// assert_eq!(cache.invalidate_group("users:").await?, 2);
    /// # Ok(()) }
    /// ```
    pub async fn invalidate_group(&self, prefix: &str) -> Result<u64, Error> {
        let generation = self
            .inner
            .backend
            .bump_generation(&crate::private::generation_key(prefix))
            .await?;
        self.count_invalidations(1);
        Ok(generation)
    }

    /// `"redis"` or `"in-memory"`.
    ///
    /// ```
    /// assert_eq!(redis_memo::Cache::in_memory().backend_kind(), "in-memory");
    /// ```
    pub fn backend_kind(&self) -> &'static str {
        self.inner.backend.kind()
    }

    /// Deletes every key that starts with `prefix` and returns how many it deleted.
    ///
    /// The prefix is literal: glob characters in it (`* ? [ ] \`) are escaped.
    /// On Redis it runs `SCAN` + `UNLINK` in batches, never `KEYS`, so Redis keeps
    /// serving other clients while it runs. An empty prefix is refused with
    /// [`Error::EmptyPrefix`]; [`invalidate_all_keys`](Self::invalidate_all_keys)
    /// is the explicit way to empty the database.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), redis_memo::Error> {
    /// let cache = redis_memo::Cache::in_memory();
    /// cache.set_raw("users:1", b"{}", None).await?;
    /// cache.set_raw("users:2", b"{}", None).await?;
    /// cache.set_raw("orders:1", b"{}", None).await?;
    /// assert_eq!(cache.invalidate_prefix("users:").await?, 2);
    /// # Ok(()) }
    /// ```
    pub async fn invalidate_prefix(&self, prefix: &str) -> Result<u64, Error> {
        if prefix.is_empty() {
            return Err(Error::EmptyPrefix);
        }
        let deleted = self.inner.backend.delete_prefix(prefix).await?;
        self.count_invalidations(deleted);
        Ok(deleted)
    }

    /// Deletes every key of the database, cache entries or not, and returns
    /// how many. The explicit opt-in for what
    /// [`invalidate_prefix("")`](Self::invalidate_prefix) refuses to do; still
    /// `SCAN` + `UNLINK` in batches, never `FLUSHDB`'s single long command.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), redis_memo::Error> {
    /// let cache = redis_memo::Cache::in_memory();
    /// cache.set_raw("a", b"1", None).await?;
    /// cache.set_raw("b", b"2", None).await?;
    /// assert_eq!(cache.invalidate_all_keys().await?, 2);
    /// # Ok(()) }
    /// ```
    pub async fn invalidate_all_keys(&self) -> Result<u64, Error> {
        self.inner.backend.delete_prefix("").await
    }

    /// The raw stored bytes of `key`, if any. Useful to inspect what a cached
    /// function stored (the JSON its return value encodes to).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), redis_memo::Error> {
    /// let cache = redis_memo::Cache::in_memory();
    /// assert_eq!(cache.get_raw("nope").await?, None);
    /// # Ok(()) }
    /// ```
    pub async fn get_raw(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        self.inner.backend.get(key).await
    }

    /// Stores raw bytes under `key`; `ttl = None` means no expiry.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), redis_memo::Error> {
    /// let cache = redis_memo::Cache::in_memory();
    /// cache.set_raw("k", b"42", Some(std::time::Duration::from_secs(5))).await?;
    /// assert_eq!(cache.get_raw("k").await?.as_deref(), Some(&b"42"[..]));
    /// # Ok(()) }
    /// ```
    pub async fn set_raw(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), Error> {
        self.inner.backend.set(key, value, ttl).await
    }

    /// Deletes the given keys and returns how many existed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), redis_memo::Error> {
    /// let cache = redis_memo::Cache::in_memory();
    /// cache.set_raw("k", b"1", None).await?;
    /// assert_eq!(cache.delete(&["k", "other"]).await?, 1);
    /// # Ok(()) }
    /// ```
    pub async fn delete(&self, keys: &[&str]) -> Result<u64, Error> {
        let deleted = self.inner.backend.delete(keys).await?;
        self.count_invalidations(deleted);
        Ok(deleted)
    }

    /// How long `key` has left to live.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), redis_memo::Error> {
    /// use redis_memo::KeyTtl;
    ///
    /// let cache = redis_memo::Cache::in_memory();
    /// cache.set_raw("k", b"1", None).await?;
    /// assert_eq!(cache.ttl("k").await?, KeyTtl::Persistent);
    /// assert_eq!(cache.ttl("other").await?, KeyTtl::Missing);
    /// # Ok(()) }
    /// ```
    pub async fn ttl(&self, key: &str) -> Result<KeyTtl, Error> {
        self.inner.backend.ttl(key).await
    }

    /// How many keys have a function body running right now in this process
    /// (single-flight leaders). Zero whenever no cached call is in progress: no
    /// per-key state outlives its call.
    ///
    /// ```
    /// assert_eq!(redis_memo::Cache::in_memory().in_flight(), 0);
    /// ```
    pub fn in_flight(&self) -> usize {
        self.inner.flights.len()
    }

    /// How many callers in this process wait for the running body of `key`.
    #[doc(hidden)]
    pub fn in_flight_waiters(&self, key: &str) -> usize {
        self.inner.flights.waiters(key)
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.inner.backend
    }

    pub(crate) fn flights(&self) -> &Flights {
        &self.inner.flights
    }
}

/// When a call started: read only with the `metrics` feature (the clock is not
/// read otherwise).
#[derive(Clone, Copy)]
pub(crate) struct CallStart(#[cfg(feature = "metrics")] std::time::Instant);

impl CallStart {
    pub(crate) fn now() -> Self {
        CallStart(
            #[cfg(feature = "metrics")]
            std::time::Instant::now(),
        )
    }
}

/// Options for a Redis-backed [`Cache`]; see [`Cache::builder`].
///
/// ```no_run
/// # async fn run() -> Result<(), redis_memo::Error> {
/// use std::time::Duration;
/// use redis_memo::{Cache, Codec};
///
/// let cache = Cache::builder()
///     .url("redis://cache.internal:6379/2")
///     .connect_timeout(Duration::from_secs(1))
///     .response_timeout(Duration::from_millis(100))
///     .circuit_breaker(5, Duration::from_secs(2))
///     .max_value_bytes(Some(1 << 20))
///     .codec(Codec::Json)
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until .build().await"]
pub struct CacheBuilder {
    url: Option<String>,
    connect_timeout: Duration,
    response_timeout: Duration,
    options: Options,
}

impl Default for CacheBuilder {
    fn default() -> Self {
        CacheBuilder {
            url: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            options: Options::default(),
        }
    }
}

impl CacheBuilder {
    /// The Redis URL. Without one, `build` uses `redis://127.0.0.1:6379`.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// How long connecting (and reconnecting) may take. Default: [`DEFAULT_CONNECT_TIMEOUT`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one command may take before the call gives up on the cache and
    /// runs the function. Default: [`DEFAULT_RESPONSE_TIMEOUT`].
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// After `failures` consecutive connection failures or timeouts, calls skip
    /// Redis for `cooldown`, then one call probes it. Default: 5 failures, 1 s.
    pub fn circuit_breaker(mut self, failures: u32, cooldown: Duration) -> Self {
        self.options.breaker = BreakerConfig {
            threshold: u64::from(failures.max(1)),
            cooldown,
        };
        self
    }

    /// How values are encoded, for functions without `codec = ...`. Default:
    /// [`Codec::Json`].
    pub fn codec(mut self, codec: Codec) -> Self {
        self.options.format.codec = codec;
        self
    }

    /// Compresses values whose encoding is larger than `bytes` with LZ4. Off by
    /// default. Compressed values are readable whatever the reader's threshold.
    #[cfg(feature = "lz4")]
    #[cfg_attr(docsrs, doc(cfg(feature = "lz4")))]
    pub fn compress_above(mut self, bytes: usize) -> Self {
        self.options.format.compress_above = Some(bytes);
        self
    }

    /// The size bound of the in-memory cache built by
    /// [`build_in_memory`](Self::build_in_memory), in bytes of keys and values.
    /// Default: [`DEFAULT_MEMORY_CAPACITY`].
    pub fn memory_capacity(mut self, bytes: u64) -> Self {
        self.options.memory_capacity = bytes;
        self
    }

    /// An in-memory cache with these options (the URL and timeouts are unused).
    ///
    /// ```
    /// let cache = redis_memo::Cache::builder().memory_capacity(1 << 20).build_in_memory();
    /// assert_eq!(cache.backend_kind(), "in-memory");
    /// ```
    pub fn build_in_memory(self) -> Cache {
        let store = MemoryStore::new(self.options.memory_capacity);
        Cache::from_backend(Backend::Memory(store), self.options)
    }

    /// Values whose encoding is larger than this are returned but not stored
    /// (with a warning). `None` stores any size. Default:
    /// [`DEFAULT_MAX_VALUE_BYTES`].
    pub fn max_value_bytes(mut self, limit: Option<usize>) -> Self {
        self.options.max_value_bytes = limit;
        self
    }

    /// Connects to Redis, failing fast ([`Error::Connection`], [`Error::Timeout`])
    /// when it cannot be reached within the connect timeout.
    pub async fn build(self) -> Result<Cache, Error> {
        let client = open_client(self.url_or_default())?;
        let conn = match tokio::time::timeout(
            self.connect_timeout,
            ConnectionManager::new_with_config(client, self.manager_config()),
        )
        .await
        {
            Ok(Ok(conn)) => conn,
            Ok(Err(err)) if err.is_timeout() => return Err(Error::Timeout(self.connect_timeout)),
            Ok(Err(err)) => return Err(Error::Connection(err)),
            Err(_) => return Err(Error::Timeout(self.connect_timeout)),
        };
        Ok(self.finish(conn))
    }

    /// Returns at once, without waiting for Redis: the connection is made in
    /// the background, and calls run uncached until Redis answers, so an
    /// application can start while Redis is down. Fails only on an invalid URL.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), redis_memo::Error> {
    /// // Nothing listens on port 1: the cache is built anyway.
    /// let cache = redis_memo::Cache::builder().url("redis://127.0.0.1:1").build_lazy().await?;
    /// assert!(cache.ping().await.is_err());
    /// # Ok(()) }
    /// ```
    pub async fn build_lazy(self) -> Result<Cache, Error> {
        let client = open_client(self.url_or_default())?;
        let conn = ConnectionManager::new_lazy_with_config(client, self.manager_config()).map_err(
            |err| Error::InvalidUrl {
                reason: err.to_string(),
            },
        )?;
        Ok(self.finish(conn))
    }

    fn url_or_default(&self) -> &str {
        self.url.as_deref().unwrap_or("redis://127.0.0.1:6379")
    }

    /// Reconnection: exponential backoff with jitter between 50 ms and 1 s,
    /// each attempt bounded by the connect timeout.
    fn manager_config(&self) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.response_timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1))
    }

    fn finish(self, conn: ConnectionManager) -> Cache {
        let store = RedisStore {
            conn,
            response_timeout: self.response_timeout,
        };
        Cache::from_backend(Backend::Redis(store), self.options)
    }
}

fn open_client(url: &str) -> Result<redis::Client, Error> {
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    match scheme {
        Some("redis" | "redis+unix" | "unix") => {}
        Some("rediss") if cfg!(feature = "tls") => {}
        Some("rediss") => {
            return Err(Error::InvalidUrl {
                reason: "rediss:// needs the `tls` feature of redis-memo".into(),
            });
        }
        _ => {
            return Err(Error::InvalidUrl {
                reason: "the URL must start with redis://, rediss:// or unix://".into(),
            });
        }
    }
    redis::Client::open(url).map_err(|err| Error::InvalidUrl {
        reason: err.to_string(),
    })
}

// --- the process-wide default ---------------------------------------------------

static DEFAULT_CACHE: RwLock<Option<Cache>> = RwLock::new(None);

/// Installs `cache` as the process-wide default, used by every `#[cached]`
/// function that has no `cache = ...` argument. Returns the previous default.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use redis_memo::{Cache, cached, set_default_cache};
///
/// #[cached(ttl = 60)]
/// async fn answer() -> u32 { 42 }
///
/// set_default_cache(Cache::in_memory());
/// assert_eq!(answer().await, 42);
/// # }
/// ```
pub fn set_default_cache(cache: Cache) -> Option<Cache> {
    let mut slot = DEFAULT_CACHE
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    slot.replace(cache)
}

/// The process-wide default cache, if one is installed.
///
/// ```
/// let _maybe: Option<redis_memo::Cache> = redis_memo::default_cache();
/// ```
pub fn default_cache() -> Option<Cache> {
    DEFAULT_CACHE
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
}

/// Removes the process-wide default cache; `#[cached]` functions without
/// `cache = ...` then run uncached. Returns what was installed.
///
/// ```
/// let _previous = redis_memo::clear_default_cache();
/// assert!(redis_memo::default_cache().is_none());
/// ```
pub fn clear_default_cache() -> Option<Cache> {
    let mut slot = DEFAULT_CACHE
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    slot.take()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bad_urls_are_typed_errors() {
        for url in ["", "not a url", "http://localhost", "redis://host:notaport"] {
            match Cache::connect(url).await {
                Err(Error::InvalidUrl { .. }) => {}
                other => panic!("{url:?}: expected InvalidUrl, got {other:?}"),
            }
        }
    }
}
