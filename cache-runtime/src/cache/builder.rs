//! Building a [`Cache`]: the options and their defaults, and the connection.

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncConnectionConfig;
use redis::cluster::{ClusterClient, ClusterConfig};

use super::{Cache, Inner};
use crate::codec::{Codec, Format};
use crate::error::Error;
use crate::flight::Flights;
use crate::health::{BreakerConfig, Health};
use crate::local::{DEFAULT_LOCAL_TTL, LocalTier, tracking};
use crate::store::{
    Backend, ClusterHandle, Connection, Jitter, Managed, MemoryStore, Placeholders, RedisStore,
    Standalone, watch_failovers,
};

mod local;
mod sentinel;
pub(super) use self::sentinel::sentinel_from_env;

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
    /// makes no network call; [`Stats::local_hits`](crate::Stats::local_hits)
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
        if let Some(spec) = &self.sentinel {
            let (connector, sentinels) = self.sentinel_connector(spec)?;
            let conn = crate::store::Connect::connect(&connector).await?;
            let handle = Managed::new(Some(conn), connector);
            watch_failovers(&handle, sentinels);
            let connect_timeout = self.connect_timeout;
            let cache = self.finish(Connection::Sentinel(handle));
            wait_for_tracking(&cache, connect_timeout).await;
            return Ok(cache);
        }
        if let Some(nodes) = &self.cluster_nodes {
            let client = self.cluster_client(nodes)?;
            let seed = open_client(&nodes[0], &self.tls)?;
            let conn =
                match tokio::time::timeout(self.connect_timeout, client.get_async_connection())
                    .await
                {
                    Ok(Ok(conn)) => conn,
                    Ok(Err(err)) if err.is_timeout() => {
                        return Err(Error::Timeout(self.connect_timeout));
                    }
                    Ok(Err(err)) => return Err(Error::from_connect(err)),
                    Err(_) => return Err(Error::Timeout(self.connect_timeout)),
                };
            return Ok(self.finish_cluster(conn, client, seed).await);
        }
        let client = open_client(self.url_or_default(), &self.tls)?;
        let mut this = self;
        this.tracking_seed = Some(client.clone());
        let connector = this.standalone(client);
        let conn = crate::store::Connect::connect(&connector).await?;
        let handle = Managed::new(Some(conn), connector);
        let connect_timeout = this.connect_timeout;
        let cache = this.finish(Connection::Single(handle));
        check_server(&cache).await?;
        wait_for_tracking(&cache, connect_timeout).await;
        Ok(cache)
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
        if let Some(spec) = &self.sentinel {
            let (connector, sentinels) = self.sentinel_connector(spec)?;
            let handle = Managed::new(None, connector);
            handle.rebuild();
            watch_failovers(&handle, sentinels);
            return Ok(self.finish(Connection::Sentinel(handle)));
        }
        if let Some(nodes) = &self.cluster_nodes {
            let client = self.cluster_client(nodes)?;
            let seed = open_client(&nodes[0], &self.tls)?;
            // No per-attempt response timeout: the client's overall one
            // bounds each command (see `cluster_client`).
            let config = ClusterConfig::new().set_connection_timeout(self.connect_timeout);
            let conn = client.get_pending_async_connection_with_config(config);
            return Ok(self.finish_cluster(conn, client, seed).await);
        }
        let client = open_client(self.url_or_default(), &self.tls)?;
        let mut this = self;
        this.tracking_seed = Some(client.clone());
        let handle = Managed::new(None, this.standalone(client));
        handle.rebuild();
        let cache = this.finish(Connection::Single(handle));
        tokio::spawn(check_when_reachable(cache.clone()));
        Ok(cache)
    }

    /// A cluster client on the seeds, with this builder's timeouts: each
    /// connection attempt bounded by the connect timeout, each command
    /// (retries and redirections included) by the response timeout.
    fn cluster_client(&self, nodes: &[String]) -> Result<ClusterClient, Error> {
        if nodes.is_empty() {
            return Err(Error::InvalidUrl {
                reason: "a Redis Cluster needs at least one seed URL".into(),
            });
        }
        for node in nodes {
            check_scheme(node, false)?;
        }
        let builder = ClusterClient::builder(nodes.iter().map(String::as_str))
            .connection_timeout(self.connect_timeout)
            // One bound per command, retries and redirections included: a
            // per-attempt bound as well would cost every command a second
            // timer (about 5% of a hit's throughput) for nothing.
            .overall_response_timeout(Some(self.response_timeout))
            .retries(2)
            .min_retry_wait(50)
            .max_retry_wait(1000)
            .max_connection_attempts(std::num::NonZeroUsize::new(3).unwrap());
        let builder = cluster_certificates(builder, nodes, &self.tls)?;
        builder.build().map_err(|err| Error::InvalidUrl {
            reason: err.to_string(),
        })
    }

    /// How the standalone connection is made, and made again when it breaks.
    fn standalone(&self, client: redis::Client) -> Standalone {
        Standalone::new(
            client,
            self.connection_config(),
            self.connect_timeout,
            self.response_timeout,
        )
    }

    fn url_or_default(&self) -> &str {
        self.url.as_deref().unwrap_or("redis://127.0.0.1:6379")
    }

    /// Each connection attempt bounded by the connect timeout, each response
    /// by the response timeout. (Reconnection, with backoff, is the
    /// [`Managed`] handle's.)
    fn connection_config(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.response_timeout))
    }

    /// The cache on a cluster connection (made or pending), once its local
    /// tier, if any, has settled. `seed` is how the first seed is reached.
    async fn finish_cluster(
        mut self,
        conn: redis::cluster_async::ClusterConnection,
        client: ClusterClient,
        seed: redis::Client,
    ) -> Cache {
        self.tracking_seed = Some(seed);
        let handle = ClusterHandle::new(conn, client, self.connect_timeout);
        let connect_timeout = self.connect_timeout;
        let cache = self.finish(Connection::Cluster(handle));
        wait_for_tracking(&cache, connect_timeout).await;
        cache
    }

    fn finish(self, conn: Connection) -> Cache {
        let local = self.local_tier(&conn);
        let store = RedisStore::new(conn, self.response_timeout);
        assemble_with(Backend::Redis(store), self.options, local)
    }
}

/// Refuses a server that is not a standalone primary (`connect`): a cluster
/// node, a Sentinel or a replica would accept the connection and then fail
/// or mislead every call.
async fn check_server(cache: &Cache) -> Result<(), Error> {
    let Some(store) = cache.store().redis() else {
        return Ok(());
    };
    match store.server_kind().await?.refusal() {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// `connect_lazy`'s form of [`check_server`]: once Redis answers, one loud
/// error log if it is the wrong kind of server.
async fn check_when_reachable(cache: Cache) {
    let Some(store) = cache.store().redis() else {
        return;
    };
    for _ in 0..600 {
        match store.server_kind().await {
            Ok(kind) => {
                if let Some(err) = kind.refusal() {
                    crate::log::error!(error = %err, "redis-memo: this cache cannot cache here");
                }
                return;
            }
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

/// Refuses a URL whose scheme is not Redis's (or `rediss://` without TLS
/// support); unix sockets only when `unix` (a cluster has none).
fn check_scheme(url: &str, unix: bool) -> Result<(), Error> {
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    match scheme {
        Some("redis") => {}
        Some("redis+unix" | "unix") if unix => {}
        Some("rediss") if cfg!(feature = "tls") => {}
        Some("rediss") => {
            return Err(Error::InvalidUrl {
                reason: "rediss:// needs the `tls` feature of redis-memo".into(),
            });
        }
        _ if unix => {
            return Err(Error::InvalidUrl {
                reason: "the URL must start with redis://, rediss:// or unix://".into(),
            });
        }
        _ => {
            return Err(Error::InvalidUrl {
                reason: format!("cluster seed {url:?} must start with redis:// or rediss://"),
            });
        }
    }
    Ok(())
}

/// Certificates for `rediss://`, beyond the public roots.
#[derive(Debug, Clone, Default)]
struct TlsFiles {
    /// A CA to trust (PEM).
    ca: Option<Vec<u8>>,
    /// A client certificate and key (PEM) for mutual TLS.
    client: Option<(Vec<u8>, Vec<u8>)>,
}

fn open_client(url: &str, tls: &TlsFiles) -> Result<redis::Client, Error> {
    let invalid = |reason: &str| Error::InvalidUrl {
        reason: reason.into(),
    };
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    let secure = match scheme {
        Some("redis" | "redis+unix" | "unix") => false,
        Some("rediss") if cfg!(feature = "tls") => true,
        Some("rediss") => return Err(invalid("rediss:// needs the `tls` feature of redis-memo")),
        _ => {
            return Err(invalid(
                "the URL must start with redis://, rediss:// or unix://",
            ));
        }
    };
    // `redis://app@host`: a user without a password would silently
    // authenticate as nobody (Redis then treats the connection as `default`).
    let authority = url.split_once("://").map_or("", |(_, rest)| {
        rest.split(['/', '?', '#']).next().unwrap_or("")
    });
    if let Some((userinfo, _)) = authority.rsplit_once('@')
        && !userinfo.is_empty()
        && !userinfo.contains(':')
    {
        return Err(invalid(
            "the URL names a user but no password; write redis://user:password@host (Redis \
             would otherwise use the `default` user)",
        ));
    }
    if url.ends_with("#insecure") && !cfg!(feature = "tls-insecure") {
        return Err(invalid(
            "`#insecure` (no certificate check) needs the `tls-insecure` feature of redis-memo; \
             to trust a private CA instead, use CacheBuilder::tls_ca_certificate",
        ));
    }
    if (tls.ca.is_some() || tls.client.is_some()) && !secure {
        return Err(invalid(
            "TLS certificates were given but the URL is not rediss://",
        ));
    }
    let opened = if secure && (tls.ca.is_some() || tls.client.is_some()) {
        with_certificates(url, tls)
    } else {
        redis::Client::open(url)
    };
    opened.map_err(|err| Error::InvalidUrl {
        reason: err.to_string(),
    })
}

#[cfg(feature = "tls")]
impl TlsFiles {
    fn certificates(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: self.client.clone().map(|(client_cert, client_key)| {
                redis::ClientTlsConfig {
                    client_cert,
                    client_key,
                }
            }),
            root_cert: self.ca.clone(),
        }
    }
}

#[cfg(feature = "tls")]
fn with_certificates(url: &str, tls: &TlsFiles) -> redis::RedisResult<redis::Client> {
    redis::Client::build_with_tls(url, tls.certificates())
}

/// The CA and client certificate of [`TlsFiles`] on a cluster client: every
/// node the cluster names is reached with them, not only the seeds.
#[cfg(feature = "tls")]
fn cluster_certificates(
    builder: redis::cluster::ClusterClientBuilder,
    nodes: &[String],
    tls: &TlsFiles,
) -> Result<redis::cluster::ClusterClientBuilder, Error> {
    if tls.ca.is_none() && tls.client.is_none() {
        return Ok(builder);
    }
    if nodes.iter().any(|node| !node.starts_with("rediss://")) {
        return Err(Error::InvalidUrl {
            reason: "TLS certificates were given but a cluster seed is not rediss://".into(),
        });
    }
    Ok(builder.certs(redis::TlsCertificates {
        client_tls: tls
            .client
            .clone()
            .map(|(client_cert, client_key)| redis::ClientTlsConfig {
                client_cert,
                client_key,
            }),
        root_cert: tls.ca.clone(),
    }))
}

#[cfg(not(feature = "tls"))]
fn cluster_certificates(
    builder: redis::cluster::ClusterClientBuilder,
    _: &[String],
    _: &TlsFiles,
) -> Result<redis::cluster::ClusterClientBuilder, Error> {
    Ok(builder)
}

#[cfg(not(feature = "tls"))]
fn with_certificates(url: &str, _: &TlsFiles) -> redis::RedisResult<redis::Client> {
    redis::Client::open(url)
}

/// Waits, at most `timeout`, until the local tier's tracking is on (or
/// refused), so that a cache `build` returns is coherent from its first call.
async fn wait_for_tracking(cache: &Cache, timeout: Duration) {
    let Some(local) = cache.local() else { return };
    let _ = tokio::time::timeout(timeout, local.settled()).await;
}

/// A cache on `store` with `options`.
fn assemble(store: Backend, options: Options) -> Cache {
    assemble_with(store, options, (None, None))
}

/// A cache on `store` with `options` and a local tier.
fn assemble_with(
    store: Backend,
    options: Options,
    (local, tracker): (Option<Arc<LocalTier>>, Option<tracking::Tracker>),
) -> Cache {
    let cluster = store.redis().is_some_and(|redis| redis.is_cluster());
    Cache {
        default_version: None,
        inner: Arc::new(Inner {
            store,
            flights: Flights::default(),
            health: Health::new(options.breaker, cluster),
            format: options.format,
            max_value_bytes: options.max_value_bytes,
            ttl_jitter: options.ttl_jitter,
            placeholder_ttl: options.placeholder_ttl,
            placeholders: Placeholders::new(),
            local,
            _tracker: tracker,
        }),
    }
}

/// `REDIS_URL`: `None` when unset; an error when set but empty or not UTF-8.
pub(super) fn url_from_env() -> Result<Option<String>, Error> {
    match std::env::var("REDIS_URL") {
        Ok(url) if url.trim().is_empty() => Err(Error::InvalidUrl {
            reason:
                "REDIS_URL is set but empty; set it to a Redis URL, or unset it to cache in memory"
                    .into(),
        }),
        Ok(url) => Ok(Some(url.trim().to_owned())),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::InvalidUrl {
            reason: "REDIS_URL is not valid UTF-8".into(),
        }),
    }
}

/// `REDIS_CLUSTER_NODES` (comma-separated seed URLs): `None` when unset; an
/// error when set but empty (no seed) or not UTF-8.
pub(super) fn cluster_nodes_from_env() -> Result<Option<Vec<String>>, Error> {
    url_list_from_env("REDIS_CLUSTER_NODES", "seed URLs")
}

/// A comma-separated list of URLs in `var`: `None` when unset; an error when
/// set but empty or not UTF-8.
fn url_list_from_env(var: &str, what: &str) -> Result<Option<Vec<String>>, Error> {
    match std::env::var(var) {
        Ok(list) => {
            let nodes: Vec<String> = list
                .split(',')
                .map(str::trim)
                .filter(|node| !node.is_empty())
                .map(str::to_owned)
                .collect();
            if nodes.is_empty() {
                return Err(Error::InvalidUrl {
                    reason: format!(
                        "{var} is set but empty; set it to comma-separated {what}, or unset it"
                    ),
                });
            }
            Ok(Some(nodes))
        }
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::InvalidUrl {
            reason: format!("{var} is not valid UTF-8"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Cache;

    #[tokio::test]
    async fn bad_urls_are_typed_errors() {
        for url in [
            "",
            "not a url",
            "http://localhost",
            "redis://host:notaport",
            "redis://app@127.0.0.1:6379",
        ] {
            match Cache::connect(url).await {
                Err(Error::InvalidUrl { .. }) => {}
                other => panic!("{url:?}: expected InvalidUrl, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn bad_cluster_seeds_are_typed_errors() {
        let cases: [&[&str]; 4] = [
            &[],
            &["not a url"],
            &["unix:///tmp/redis.sock"],
            &["redis://127.0.0.1:7000", "http://127.0.0.1:7001"],
        ];
        for seeds in cases {
            match Cache::connect_cluster(seeds).await {
                Err(Error::InvalidUrl { .. }) => {}
                other => panic!("{seeds:?}: expected InvalidUrl, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn bad_sentinel_settings_are_typed_errors() {
        let cases: [(&[&str], &str, Option<&str>); 6] = [
            (&[], "mymaster", None),
            (&["redis://127.0.0.1:26379"], "  ", None),
            (&["http://127.0.0.1:26379"], "mymaster", None),
            (&["unix:///tmp/sentinel.sock"], "mymaster", None),
            (&["redis://app@127.0.0.1:26379"], "mymaster", None),
            (
                &["redis://127.0.0.1:26379"],
                "mymaster",
                Some("redis://app@primary/0"),
            ),
        ];
        for (sentinels, service, url) in cases {
            let mut builder = Cache::builder().sentinel(sentinels, service);
            if let Some(url) = url {
                builder = builder.url(url);
            }
            for result in [builder.clone().build().await, builder.build_lazy().await] {
                match result {
                    Err(Error::InvalidUrl { .. }) => {}
                    other => {
                        panic!("{sentinels:?} {service:?}: expected InvalidUrl, got {other:?}")
                    }
                }
            }
        }
    }

    /// `builder` names nothing that listens: `build` fails fast with a
    /// connection error, `build_lazy` builds a cache of `kind` that fails open.
    async fn unreachable_fails_fast_and_builds_lazily(builder: CacheBuilder, kind: &str) {
        let builder = builder.connect_timeout(Duration::from_millis(300));
        match builder.clone().build().await {
            Err(Error::Connection(_) | Error::Timeout(_)) => {}
            other => panic!("expected a connection error, got {other:?}"),
        }
        let lazy = builder.build_lazy().await.expect("a lazy cache builds");
        assert_eq!(lazy.backend_kind(), kind);
        assert!(lazy.ping().await.is_err());
        let value = lazy.get_or_set("k", 60, || async { 3u8 }).await;
        assert_eq!(value, 3, "fail-open");
    }

    #[tokio::test]
    async fn an_unreachable_sentinel_fails_fast_and_a_lazy_one_builds() {
        let builder = Cache::builder().sentinel(["redis://127.0.0.1:1"], "mymaster");
        unreachable_fails_fast_and_builds_lazily(builder, "redis-sentinel").await;
    }

    #[tokio::test]
    async fn an_unreachable_cluster_fails_fast_and_a_lazy_one_builds() {
        let builder = Cache::builder().cluster_nodes(["redis://127.0.0.1:1"]);
        unreachable_fails_fast_and_builds_lazily(builder, "redis-cluster").await;
    }
}
