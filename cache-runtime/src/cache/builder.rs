//! Building a [`Cache`]: the builder holds the settings and their defaults;
//! it hands off to `connect` (one path per topology, eager or lazy), whose
//! URLs and certificates `url` checks, and `env` reads the settings from the
//! environment.

use std::time::Duration;

use super::Cache;
use crate::codec::{Codec, Format};
use crate::error::Error;
use crate::health::BreakerConfig;
use crate::local::DEFAULT_LOCAL_TTL;
use crate::store::{Backend, Jitter, MemoryStore};

mod connect;
mod env;
mod local;
mod sentinel;
#[cfg(test)]
mod tests;
mod url;

use self::connect::{Mode, assemble};
pub(super) use self::env::from_env;
use self::url::TlsFiles;

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
/// Default size bound of the in-memory backend, in bytes (see
/// [`CacheBuilder::memory_capacity`]).
///
/// ```
/// println!("{:?}", redis_memo::DEFAULT_MEMORY_CAPACITY);
/// ```
pub const DEFAULT_MEMORY_CAPACITY: u64 = 64 * 1024 * 1024;
/// Default life of the placeholder a miss writes into its key while the body
/// runs (see [`CacheBuilder::placeholder_ttl`]).
///
/// ```
/// assert_eq!(redis_memo::DEFAULT_PLACEHOLDER_TTL.as_secs(), 30);
/// ```
pub const DEFAULT_PLACEHOLDER_TTL: Duration = Duration::from_secs(30);

/// The options a backend is built with, beyond its connection.
#[derive(Debug, Clone, Copy)]
struct Options {
    breaker: BreakerConfig,
    max_value_bytes: Option<usize>,
    format: Format,
    memory_capacity: u64,
    ttl_jitter: Jitter,
    /// `local_cache`: the local tier's size bound in bytes, when on.
    local_bytes: Option<u64>,
    /// `local_ttl`: how long local entries live without tracking.
    local_ttl: Duration,
    placeholder_ttl: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            breaker: BreakerConfig::default(),
            max_value_bytes: Some(DEFAULT_MAX_VALUE_BYTES),
            format: Format::default(),
            memory_capacity: DEFAULT_MEMORY_CAPACITY,
            ttl_jitter: Jitter::default(),
            local_bytes: None,
            local_ttl: DEFAULT_LOCAL_TTL,
            placeholder_ttl: DEFAULT_PLACEHOLDER_TTL,
        }
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
    tls: TlsFiles,
    cluster_nodes: Option<Vec<String>>,
    sentinel: Option<SentinelSpec>,
    connect_timeout: Duration,
    response_timeout: Duration,
    options: Options,
    /// How the local tier's tracking connections reach a server: the
    /// standalone server's client, or a cluster seed's.
    tracking_seed: Option<redis::Client>,
    /// Tracking connections to the first address go to the second instead.
    tracking_redirects: Vec<(String, String)>,
}

/// The sentinels and the service whose primary they name.
#[derive(Debug, Clone)]
struct SentinelSpec {
    sentinels: Vec<String>,
    service: String,
}

impl Default for CacheBuilder {
    fn default() -> Self {
        CacheBuilder {
            url: None,
            tls: TlsFiles::default(),
            cluster_nodes: None,
            sentinel: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            options: Options::default(),
            tracking_seed: None,
            tracking_redirects: Vec::new(),
        }
    }
}

impl CacheBuilder {
    /// The Redis URL. Without one, `build` uses `redis://127.0.0.1:6379`.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Trusts the certificate authority in `pem` (PEM text) for `rediss://`
    /// connections, instead of the public roots: for a server whose
    /// certificate a private CA signed. On a Redis Cluster
    /// ([`cluster_nodes`](Self::cluster_nodes), `rediss://` seeds) it applies
    /// to every node, as does [`tls_client_certificate`](Self::tls_client_certificate).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = std::fs::read("/etc/redis/ca.pem")?;
    /// let cache = redis_memo::Cache::builder()
    ///     .url("rediss://cache.internal:6380")
    ///     .tls_ca_certificate(ca)
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_ca_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls.ca = Some(pem.into());
        self
    }

    /// Shows this client certificate and key (PEM text) to servers that
    /// require one (mutual TLS, `tls-auth-clients yes`).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let cache = redis_memo::Cache::builder()
    ///     .url("rediss://cache.internal:6380")
    ///     .tls_ca_certificate(std::fs::read("ca.pem")?)
    ///     .tls_client_certificate(std::fs::read("client.pem")?, std::fs::read("client.key")?)
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_client_certificate(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls.client = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// Seed URLs of a Redis Cluster (`redis://host:port`, or `rediss://` for
    /// TLS; user and password as for [`url`](Self::url), the same on every
    /// seed). One reachable seed is enough: the other nodes are discovered
    /// from it. When set, the cache talks to the cluster and [`url`](Self::url)
    /// is unused; an empty list is refused by `build` with
    /// [`Error::InvalidUrl`].
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), redis_memo::Error> {
    /// let cache = redis_memo::Cache::builder()
    ///     .cluster_nodes(["redis://10.0.0.1:7000", "redis://10.0.0.2:7001"])
    ///     .build()
    ///     .await?;
    /// assert_eq!(cache.backend_kind(), "redis-cluster");
    /// # Ok(()) }
    /// ```
    pub fn cluster_nodes(mut self, nodes: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        self.cluster_nodes = Some(
            nodes
                .into_iter()
                .map(|node| node.as_ref().trim().to_owned())
                .collect(),
        );
        self
    }

    /// Caches in the primary of the Sentinel-managed service `service_name`,
    /// found through the Sentinels at `sentinels` (`redis://host:port`, or
    /// `rediss://` for TLS; a user and password in them authenticate to the
    /// Sentinels, the same on every one). One reachable Sentinel is enough.
    ///
    /// The primary the Sentinels name is checked with `ROLE`; after a
    /// failover (a `+switch-master` event, a `READONLY` reply, a dropped
    /// connection) the cache asks them again and reconnects to the new
    /// primary by itself, calls failing open in the meantime.
    ///
    /// The data nodes are reached over TLS when the Sentinel URLs are
    /// `rediss://`, without credentials, on db 0. When they need more, give
    /// them as [`url`](Self::url): its scheme, user, password and db are used
    /// for the primary and its host is ignored (the Sentinels name the host).
    /// [`tls_ca_certificate`](Self::tls_ca_certificate) and
    /// [`tls_client_certificate`](Self::tls_client_certificate) apply to
    /// every `rediss://` connection, Sentinels and data nodes. An empty list
    /// or service name is refused by `build` with [`Error::InvalidUrl`].
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), redis_memo::Error> {
    /// let cache = redis_memo::Cache::builder()
    ///     .sentinel(["redis://10.0.0.1:26379", "redis://10.0.0.2:26379"], "mymaster")
    ///     // The primary's credentials and db; the host is the one the Sentinels name.
    ///     .url("redis://app:secret@primary/2")
    ///     .build()
    ///     .await?;
    /// assert_eq!(cache.backend_kind(), "redis-sentinel");
    /// # Ok(()) }
    /// ```
    pub fn sentinel(
        mut self,
        sentinels: impl IntoIterator<Item = impl AsRef<str>>,
        service_name: impl AsRef<str>,
    ) -> Self {
        self.sentinel = Some(SentinelSpec {
            sentinels: sentinels
                .into_iter()
                .map(|url| url.as_ref().trim().to_owned())
                .collect(),
            service: service_name.as_ref().trim().to_owned(),
        });
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
    /// [`build_in_memory`](Self::build_in_memory), in bytes: an entry weighs
    /// its key, its encoded value, and as much again for the decoded copy
    /// that the hits of a `Clone` type return clones of.
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
        assemble(Backend::Memory(store), self.options)
    }

    /// Spreads the TTL every value is stored with uniformly over
    /// `[ttl·(1−fraction), ttl·(1+fraction)]`, so that entries written
    /// together (a deploy, a traffic spike) do not all expire together.
    /// `fraction` is clamped to `0.0..=1.0`; a function's
    /// `#[cached(ttl_jitter = ...)]` or a `Policy::ttl_jitter` overrides it.
    /// Default: 0 (every value lives exactly its TTL).
    ///
    /// ```
    /// let cache = redis_memo::Cache::builder().ttl_jitter(0.1).build_in_memory();
    /// # let _ = cache;
    /// ```
    pub fn ttl_jitter(mut self, fraction: f64) -> Self {
        self.options.ttl_jitter = Jitter::new(fraction);
        self
    }

    /// Keeps up to `max_bytes` of hot entries in this process, in front of
    /// Redis, for every function and `get_or_set` of this cache
    /// (`#[cached(local = false)]` and
    /// [`Policy::local(false)`](crate::Policy::local) opt one out). A local hit
    /// makes no network call; [`Counts::local_hits`](crate::Counts::local_hits)
    /// counts them. An entry weighs its key, its encoded value, and as much
    /// again for the decoded copy that the hits of a `Clone` type return
    /// clones of (only the first hit of an entry decodes it).
    ///
    /// Entries stay coherent with Redis through server-assisted client-side
    /// caching, on every topology: a dedicated RESP3 connection per server
    /// that holds keys (the standalone server, the primary the Sentinels
    /// name, every primary of a cluster; named `redis-memo-tracking` in
    /// `CLIENT LIST`) runs `CLIENT TRACKING ON BCAST PREFIX ...` with the
    /// prefixes of the keys this cache uses (a key's text up to its first
    /// `:` or `@`, registered the first time one is read or written), and
    /// Redis pushes every change of a key under them, by any client: writes,
    /// deletes, expiries, evictions, `FLUSHALL`. The entry is dropped when
    /// the push arrives. Writes and invalidations made through this cache
    /// update the entry before they return. The cost: each process with a
    /// local tier receives one small message per change of a key under its
    /// prefixes, and none for other keys of the database. Whenever a server
    /// is not tracked (connecting, a lost or unanswering tracking connection,
    /// a failover, a new primary, a server that refuses `CLIENT TRACKING`)
    /// the tier is cleared and its entries are served for at most
    /// [`local_ttl`](Self::local_ttl). Functions
    /// declared `grouped` keep their group's generation in the tier too;
    /// functions with `stale` judge freshness by the key's Redis TTL on every
    /// read and do not use the tier. No effect on the in-memory backend,
    /// which is local already.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), redis_memo::Error> {
    /// let cache = redis_memo::Cache::builder()
    ///     .url("redis://127.0.0.1:6379")
    ///     .local_cache(64 << 20) // 64 MiB
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn local_cache(mut self, max_bytes: u64) -> Self {
        self.options.local_bytes = Some(max_bytes);
        self
    }

    /// The longest a local entry is served when Redis cannot tell this process
    /// about changes (see [`local_cache`](Self::local_cache)): while a
    /// server is not tracked (its tracking connection is being made or made
    /// again, a failover or a new primary is being followed), on a server
    /// that refuses `CLIENT TRACKING`, and for keys whose prefix is not
    /// tracked (beyond the 128 prefixes a cache registers). This is the
    /// staleness bound in those cases for changes made by other clients. On
    /// a server that refuses tracking, caches with a local tier also publish
    /// their own writes and invalidations to each other (`PUBLISH` on
    /// `redis-memo:local-invalidate`), which reach them at once. Default:
    /// [`DEFAULT_LOCAL_TTL`](crate::DEFAULT_LOCAL_TTL).
    ///
    /// ```
    /// let builder = redis_memo::Cache::builder()
    ///     .local_cache(16 << 20)
    ///     .local_ttl(std::time::Duration::from_millis(250));
    /// # let _ = builder;
    /// ```
    pub fn local_ttl(mut self, ttl: Duration) -> Self {
        self.options.local_ttl = ttl;
        self
    }

    /// How long the placeholder a miss writes into its key lives (default
    /// [`DEFAULT_PLACEHOLDER_TTL`]; at least 3 ms). While the body runs, the
    /// key holds a placeholder that its value replaces only if nothing
    /// deleted or rewrote the key meanwhile (so an invalidation during the
    /// body wins); a body that runs longer renews it every third of this
    /// time. It bounds how long a placeholder outlives a process that died
    /// mid-body. Other calls never wait on a placeholder without `lease`:
    /// they run the body and their value replaces it just the same; with
    /// `lease` they wait for the lease, then do the same.
    ///
    /// ```
    /// let cache = redis_memo::Cache::builder()
    ///     .placeholder_ttl(std::time::Duration::from_secs(10))
    ///     .build_in_memory();
    /// # let _ = cache;
    /// ```
    pub fn placeholder_ttl(mut self, ttl: Duration) -> Self {
        self.options.placeholder_ttl = ttl.max(Duration::from_millis(3));
        self
    }

    /// Values whose encoding is larger than this are returned but not stored
    /// (with a warning). `None` stores any size. Default:
    /// [`DEFAULT_MAX_VALUE_BYTES`].
    pub fn max_value_bytes(mut self, limit: Option<usize>) -> Self {
        self.options.max_value_bytes = limit;
        self
    }

    /// Connects to Redis, failing fast ([`Error::Connection`], [`Error::Timeout`])
    /// when it cannot be reached within the connect timeout, and with
    /// [`Error::WrongServer`] when the server says (`ROLE`, `INFO cluster`) it
    /// is a Redis Cluster node, a Sentinel or a read-only replica, which a
    /// standalone cache cannot use.
    ///
    /// On a cluster ([`cluster_nodes`](Self::cluster_nodes)) it fails the same
    /// way when no seed answers within the connect timeout. Behind Sentinel
    /// ([`sentinel`](Self::sentinel)) it fails the same way when no Sentinel
    /// answers, with [`Error::WrongServer`] when the addresses are not
    /// Sentinels, and with [`Error::NoPrimary`] when they name no primary for
    /// the service.
    pub async fn build(self) -> Result<Cache, Error> {
        self.connect(Mode::Eager).await
    }

    /// Returns at once, without waiting for Redis: the connection is made in
    /// the background, and calls run uncached until Redis answers, so an
    /// application can start while Redis is down. Fails only on an invalid URL;
    /// once Redis answers, a server of the wrong kind (see [`build`](Self::build))
    /// is reported by one error log.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), redis_memo::Error> {
    /// // Nothing listens on port 1: the cache is built anyway.
    /// let cache = redis_memo::Cache::builder().url("redis://127.0.0.1:1").build_lazy().await?;
    /// assert!(cache.ping().await.is_err());
    /// # Ok(()) }
    /// ```
    pub async fn build_lazy(self) -> Result<Cache, Error> {
        self.connect(Mode::Lazy).await
    }
}
