//! Connecting a built cache, one path per topology (standalone, Sentinel,
//! Redis Cluster) for both `build` (eager: wait for Redis, refuse the wrong
//! server, let the local tier settle) and `build_lazy` (return at once,
//! connect in the background).

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncConnectionConfig;
use redis::cluster::{ClusterClient, ClusterConfig};

use super::url::{check_scheme, cluster_certificates, open_client};
use super::{CacheBuilder, Options, SentinelSpec};
use crate::cache::{Cache, Inner};
use crate::error::Error;
use crate::flight::Flights;
use crate::health::Health;
use crate::local::{LocalTier, tracking};
use crate::store::{
    Backend, ClusterHandle, Connect, Connection, Managed, Placeholders, RedisStore, Standalone,
    watch_failovers,
};

/// Whether a build waits for Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// `build`: connect now (failing fast), refuse a server of the wrong
    /// kind, and let the local tier's tracking settle.
    Eager,
    /// `build_lazy`: return at once; connect in the background, and report
    /// a server of the wrong kind once it answers.
    Lazy,
}

impl CacheBuilder {
    /// The one build path: the topology's connection, made now or in the
    /// background by `mode`, then the cache on it.
    pub(super) async fn connect(mut self, mode: Mode) -> Result<Cache, Error> {
        let conn = match (self.sentinel.clone(), self.cluster_nodes.clone()) {
            (Some(spec), _) => self.sentinel_connection(&spec, mode).await?,
            (None, Some(nodes)) => self.cluster_connection(&nodes, mode).await?,
            (None, None) => self.standalone_connection(mode).await?,
        };
        let standalone = matches!(conn, Connection::Single(_));
        let connect_timeout = self.connect_timeout;
        let local = self.local_tier(&conn);
        let store = RedisStore::new(conn, self.response_timeout);
        let cache = assemble_with(Backend::Redis(store), self.options, local);
        match mode {
            Mode::Eager => {
                if standalone {
                    check_server(&cache).await?;
                }
                wait_for_tracking(&cache, connect_timeout).await;
            }
            Mode::Lazy if standalone => {
                tokio::spawn(check_when_reachable(cache.clone()));
            }
            Mode::Lazy => {}
        }
        Ok(cache)
    }

    /// A standalone server's connection, reconnected by its handle.
    async fn standalone_connection(&mut self, mode: Mode) -> Result<Connection, Error> {
        let client = open_client(self.url_or_default(), &self.tls)?;
        self.tracking_seed = Some(client.clone());
        let connector = self.standalone(client);
        Ok(Connection::Single(managed(connector, mode).await?))
    }

    /// The connection to the primary the Sentinels name, following failovers.
    async fn sentinel_connection(
        &self,
        spec: &SentinelSpec,
        mode: Mode,
    ) -> Result<Connection, Error> {
        let (connector, sentinels) = self.sentinel_connector(spec)?;
        let handle = managed(connector, mode).await?;
        watch_failovers(&handle, sentinels);
        Ok(Connection::Sentinel(handle))
    }

    /// A Redis Cluster connection on the seeds (made now, or pending),
    /// rebuilt from them by its handle when it stops answering.
    async fn cluster_connection(
        &mut self,
        nodes: &[String],
        mode: Mode,
    ) -> Result<Connection, Error> {
        let client = self.cluster_client(nodes)?;
        self.tracking_seed = Some(open_client(&nodes[0], &self.tls)?);
        let conn = match mode {
            Mode::Eager => {
                let connecting = client.get_async_connection();
                match tokio::time::timeout(self.connect_timeout, connecting).await {
                    Ok(Ok(conn)) => conn,
                    Ok(Err(err)) if err.is_timeout() => {
                        return Err(Error::Timeout(self.connect_timeout));
                    }
                    Ok(Err(err)) => return Err(Error::from_connect(err)),
                    Err(_) => return Err(Error::Timeout(self.connect_timeout)),
                }
            }
            // No per-attempt response timeout: the client's overall one
            // bounds each command (see `cluster_client`).
            Mode::Lazy => client.get_pending_async_connection_with_config(
                ClusterConfig::new().set_connection_timeout(self.connect_timeout),
            ),
        };
        Ok(Connection::Cluster(ClusterHandle::new(
            conn,
            client,
            self.connect_timeout,
        )))
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
    pub(super) fn connection_config(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.response_timeout))
    }
}

/// A handle that makes `connector`'s connection now (failing fast) or in
/// the background, and again whenever it breaks.
async fn managed<C: Connect>(connector: C, mode: Mode) -> Result<Arc<Managed<C>>, Error> {
    Ok(match mode {
        Mode::Eager => {
            let conn = connector.connect().await?;
            Managed::new(Some(conn), connector)
        }
        Mode::Lazy => {
            let handle = Managed::new(None, connector);
            handle.rebuild();
            handle
        }
    })
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

/// Waits, at most `timeout`, until the local tier's tracking is on (or
/// refused), so that a cache `build` returns is coherent from its first call.
async fn wait_for_tracking(cache: &Cache, timeout: Duration) {
    let Some(local) = cache.local() else { return };
    let _ = tokio::time::timeout(timeout, local.settled()).await;
}

/// A cache on `store` with `options`.
pub(super) fn assemble(store: Backend, options: Options) -> Cache {
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
