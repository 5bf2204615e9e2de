//! The `Cache` handle: what a cache is made of, how to build one, direct
//! access to its entries and its invalidation methods. One call's path
//! through it is in [`call`](crate::call).

mod builder;
mod default;
mod invalidate;
mod write;

use std::sync::Arc;
use std::time::Duration;

pub use builder::{
    CacheBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_VALUE_BYTES, DEFAULT_MEMORY_CAPACITY,
    DEFAULT_PLACEHOLDER_TTL, DEFAULT_RESPONSE_TIMEOUT,
};
pub use default::{clear_default_cache, default_cache, set_default_cache};
pub(crate) use write::{Write, Written};

use crate::codec::Format;
use crate::error::Error;
use crate::flight::Flights;
use crate::health::{Health, Stats};
use crate::local::broadcast::{CHANNEL, Change};
use crate::local::{Coherence, LocalTier, tracking::Tracker};
use crate::log;
use crate::store::{Backend, Jitter, KeyTtl, Placeholders, Store, is_placeholder};

/// A handle to one cache: Redis, or the embedded in-memory store.
///
/// `Cache` is cheap to clone (an `Arc` inside); clones share the connection.
/// Build one with [`Cache::connect`], [`Cache::in_memory`], [`Cache::from_env`]
/// or [`Cache::builder`], then either name it in `#[cached(cache = ...)]` or
/// install it as the process-wide default with [`set_default_cache`]. Without
/// the attribute, [`get_or_set`](Cache::get_or_set) gives a call the same
/// guarantees.
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

/// What the clones of one cache share.
struct Inner {
    store: Backend,
    flights: Flights,
    health: Health,
    format: Format,
    max_value_bytes: Option<usize>,
    ttl_jitter: Jitter,
    placeholder_ttl: Duration,
    placeholders: Placeholders,
    /// The local tier, when `local_cache` is set (Redis backends only).
    local: Option<Arc<LocalTier>>,
    /// Keeps the local tier's tracking connection open.
    _tracker: Option<Tracker>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("backend", &self.inner.store.kind())
            .finish()
    }
}

impl Cache {
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

    /// Connects to a Redis Cluster through one or more seed URLs
    /// (`redis://host:port`, `rediss://` for TLS, user and password as for
    /// [`connect`](Self::connect)), with the default timeouts. Each command
    /// goes to the primary that owns its key's slot (one `GET` per hit), and
    /// redis-rs follows redirections and failovers. Fails like `connect` when
    /// no seed answers within [`DEFAULT_CONNECT_TIMEOUT`];
    /// [`CacheBuilder::cluster_nodes`] sets the other options.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), redis_memo::Error> {
    /// let cache = redis_memo::Cache::connect_cluster(["redis://10.0.0.1:7000", "redis://10.0.0.2:7001"]).await?;
    /// assert_eq!(cache.backend_kind(), "redis-cluster");
    /// # Ok(()) }
    /// ```
    pub async fn connect_cluster(
        nodes: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<Cache, Error> {
        Cache::builder().cluster_nodes(nodes).build().await
    }

    /// Connects to the primary of the Sentinel-managed service `service_name`
    /// through the Sentinels at `sentinels` (`redis://host:port`, `rediss://`
    /// for TLS), with the default timeouts. The primary they name is checked
    /// with `ROLE`, and after a failover the cache finds the new primary and
    /// reconnects by itself, calls failing open meanwhile. Fails with
    /// [`Error::WrongServer`] when the addresses are not Sentinels, with
    /// [`Error::NoPrimary`] when they name no primary for the service, and like
    /// `connect` when none answers; [`CacheBuilder::sentinel`] sets the other
    /// options (the data nodes' password and db, TLS certificates, timeouts).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), redis_memo::Error> {
    /// let sentinels = ["redis://10.0.0.1:26379", "redis://10.0.0.2:26379", "redis://10.0.0.3:26379"];
    /// let cache = redis_memo::Cache::connect_sentinel(sentinels, "mymaster").await?;
    /// assert_eq!(cache.backend_kind(), "redis-sentinel");
    /// # Ok(()) }
    /// ```
    pub async fn connect_sentinel(
        sentinels: impl IntoIterator<Item = impl AsRef<str>>,
        service_name: impl AsRef<str>,
    ) -> Result<Cache, Error> {
        Cache::builder()
            .sentinel(sentinels, service_name)
            .build()
            .await
    }

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
    /// when it is not. Logs which one it chose at `info` level.
    ///
    /// `REDIS_CLUSTER_NODES`, when set, names a Redis Cluster instead and
    /// wins over `REDIS_URL`: comma-separated seed URLs, e.g.
    /// `REDIS_CLUSTER_NODES=redis://a:7000,redis://b:7001` (see
    /// [`connect_cluster`](Self::connect_cluster)). Set but empty, it is an
    /// error, like an empty `REDIS_URL`.
    ///
    /// `REDIS_SENTINELS` (comma-separated Sentinel URLs) with
    /// `REDIS_SENTINEL_SERVICE` (the service name), when set, name a
    /// Sentinel-managed primary instead (see
    /// [`connect_sentinel`](Self::connect_sentinel)), e.g.
    /// `REDIS_SENTINELS=redis://h1:26379,redis://h2:26379
    /// REDIS_SENTINEL_SERVICE=mymaster`; `REDIS_URL`, if also set, then gives
    /// the primary's scheme, user, password and db (its host is ignored), as
    /// [`CacheBuilder::sentinel`] describes. One without the other is an error.
    ///
    /// Fails when `REDIS_URL` is set but empty (a missing secret must not
    /// silently mean "in memory"), is not a Redis URL, or names a Redis that
    /// cannot be reached: a typo is never replaced by a per-process cache.
    /// [`from_env_lazy`](Self::from_env_lazy) does not wait for Redis.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), redis_memo::Error> {
    /// let cache = redis_memo::Cache::from_env().await?;
    /// println!("caching in {}", cache.backend_kind());
    /// # Ok(()) }
    /// ```
    pub async fn from_env() -> Result<Cache, Error> {
        let Some((builder, source)) = builder::from_env()? else {
            return Ok(Cache::in_memory_from_env());
        };
        let cache = builder.build().await?;
        log::info!("redis-memo: caching in {source}");
        Ok(cache)
    }

    /// Like [`from_env`](Self::from_env), but returns at once when `REDIS_URL`
    /// is set, without waiting for Redis ([`Cache::connect_lazy`]): for a
    /// service that must start while Redis is down. Still fails on an empty
    /// or malformed `REDIS_URL`. `REDIS_CLUSTER_NODES` and `REDIS_SENTINELS`
    /// are honoured as by `from_env`, connected to in the background.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), redis_memo::Error> {
    /// let cache = redis_memo::Cache::from_env_lazy().await?;
    /// println!("caching in {}", cache.backend_kind());
    /// # Ok(()) }
    /// ```
    pub async fn from_env_lazy() -> Result<Cache, Error> {
        let Some((builder, source)) = builder::from_env()? else {
            return Ok(Cache::in_memory_from_env());
        };
        let cache = builder.build_lazy().await?;
        log::info!("redis-memo: caching in {source}, connecting in the background");
        Ok(cache)
    }

    fn in_memory_from_env() -> Cache {
        log::info!("redis-memo: REDIS_URL is not set; caching in memory");
        Cache::in_memory()
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

    /// A snapshot of this cache's counters (shared by its clones); see
    /// [`Stats`] for what each one counts.
    ///
    /// ```
    /// let stats = redis_memo::Cache::in_memory().stats();
    /// assert_eq!((stats.hits, stats.misses, stats.breaker_open), (0, 0, false));
    /// ```
    pub fn stats(&self) -> Stats {
        let mut stats = self.inner.health.stats();
        if let Some(local) = self.local() {
            (stats.local_bytes, stats.local_entries) = local.size();
            stats.local_tracking = local.coherence() == Coherence::Tracking;
            stats.local_pushes = local.pushes();
        }
        stats
    }

    /// Round-trip time of a `PING`, for readiness probes. The in-memory cache
    /// answers at once. On a Redis Cluster every primary is pinged, and it
    /// fails when one of them does not answer.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), redis_memo::Error> {
    /// let latency = redis_memo::Cache::in_memory().ping().await?;
    /// assert!(latency < std::time::Duration::from_secs(1));
    /// # Ok(()) }
    /// ```
    pub async fn ping(&self) -> Result<Duration, Error> {
        let start = std::time::Instant::now();
        if let Some(store) = self.inner.store.redis() {
            store.ping().await?;
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

    /// `"redis"`, `"redis-cluster"`, `"redis-sentinel"` or `"in-memory"`.
    ///
    /// ```
    /// assert_eq!(redis_memo::Cache::in_memory().backend_kind(), "in-memory");
    /// ```
    pub fn backend_kind(&self) -> &'static str {
        self.inner.store.kind()
    }

    /// The raw stored bytes of `key`, if any: what a cached function stored
    /// (the JSON its return value encodes to). `None` too while the key holds
    /// the placeholder of a call running its body (see
    /// [`CacheBuilder::placeholder_ttl`]). Not counted in [`stats`](Self::stats).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), redis_memo::Error> {
    /// let cache = redis_memo::Cache::in_memory();
    /// assert_eq!(cache.get_raw("nope").await?, None);
    /// # Ok(()) }
    /// ```
    pub async fn get_raw(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self
            .inner
            .store
            .get(key)
            .await?
            .filter(|bytes| !is_placeholder(bytes)))
    }

    /// Stores raw bytes under `key`; `ttl = None` means no expiry. Like
    /// [`set`](Self::set) (which stores a typed value), it wins over any body
    /// running for the key, whose value is then not stored, and fails with
    /// [`Error::ValueTooLarge`] above
    /// [`max_value_bytes`](CacheBuilder::max_value_bytes). Not counted in
    /// [`stats`](Self::stats).
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
        let write = Write::Put {
            key,
            bytes: value,
            ttl,
            local: false,
        };
        self.write(write, None).await.map(drop)
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
        self.inner.store.ttl(key).await
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

    // --- what the call path reads --------------------------------------------------

    pub(crate) fn store(&self) -> &Backend {
        &self.inner.store
    }

    pub(crate) fn flights(&self) -> &Flights {
        &self.inner.flights
    }

    pub(crate) fn health(&self) -> &Health {
        &self.inner.health
    }

    /// How values are encoded unless a function says otherwise.
    pub(crate) fn format(&self) -> Format {
        self.inner.format
    }

    pub(crate) fn max_value_bytes(&self) -> Option<usize> {
        self.inner.max_value_bytes
    }

    /// The local tier, if this cache has one.
    pub(crate) fn local(&self) -> Option<&LocalTier> {
        self.inner.local.as_deref()
    }

    /// Tells the other caches that cannot track what this one changed
    /// (see [`broadcast`](crate::local::broadcast)); call it after updating
    /// the local tier. Nothing to do when the server tracks keys. A cache
    /// without a local tier cannot tell whether others track: it publishes
    /// its prefix and whole-database invalidations (one `PUBLISH` each, next
    /// to a scan of the keyspace), so that those of a tool such as the ops
    /// CLI reach them too.
    pub(crate) async fn announce(&self, change: Change<'_>) {
        let Some(store) = self.store().redis() else {
            return;
        };
        let publish = match self.local() {
            Some(local) => local.broadcasting(),
            None => matches!(change, Change::Prefix(_) | Change::All),
        };
        if !publish {
            return;
        }
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(CHANNEL).arg(change.encode());
        if let Err(err) = store.query::<i64>(&publish).await {
            log::debug!(error = %err, "redis-memo: local-tier change not broadcast");
        }
    }

    /// How stored TTLs are spread unless a function says otherwise.
    pub(crate) fn ttl_jitter(&self) -> Jitter {
        self.inner.ttl_jitter
    }

    /// How long a miss's placeholder lives (see [`CacheBuilder::placeholder_ttl`]).
    pub(crate) fn placeholder_ttl(&self) -> Duration {
        self.inner.placeholder_ttl
    }

    /// The placeholders this cache claims keys with.
    pub(crate) fn placeholders(&self) -> &Placeholders {
        &self.inner.placeholders
    }
}
