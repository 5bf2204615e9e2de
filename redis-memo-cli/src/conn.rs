//! The Redis the CLI talks to: one server, or every primary of a Redis
//! Cluster.
//!
//! Two handles on it. A [`redis_memo::Cache`] for what the library itself
//! does (listing the keys under a prefix, which on a cluster scans every
//! primary of the current topology, and invalidating them, which takes the
//! same path as `Cache::invalidate_prefix` in an application: the same
//! escaping of the prefix, the same scan and unlink, and a broadcast that
//! reaches other processes' local tiers); and a plain connection for the
//! per-key reads of `list` and `show` (`PTTL`, `STRLEN`, `GETRANGE`, `GET`),
//! which on a cluster redis-rs sends to the primary owning each key. A
//! server is taken for a cluster node when `--cluster` is given or when its
//! `INFO cluster` says `cluster_enabled:1`.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis_memo::Cache;

/// How long connecting, and each reply, may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A plain connection, for per-key commands.
pub enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Conn {
    /// Connects to `url`; as a cluster when `cluster` is set or the server
    /// says it is a cluster node.
    pub async fn open(url: &str, cluster: bool) -> Result<Conn, String> {
        let client = redis::Client::open(url).map_err(|e| format!("invalid Redis URL: {e}"))?;
        if !cluster {
            let mut conn = bounded(client.get_multiplexed_async_connection()).await?;
            // A user without +info is taken for a standalone server.
            let info: Result<String, _> = redis::cmd("INFO")
                .arg("cluster")
                .query_async(&mut conn)
                .await;
            if !info.is_ok_and(|info| info.contains("cluster_enabled:1")) {
                return Ok(Conn::Single(conn));
            }
        }
        let client = ClusterClient::builder([url])
            .connection_timeout(TIMEOUT)
            .response_timeout(TIMEOUT)
            .build()
            .map_err(|e| format!("invalid Redis Cluster URL: {e}"))?;
        Ok(Conn::Cluster(bounded(client.get_async_connection()).await?))
    }

    /// The cache on the same Redis: a cluster cache when this is a cluster.
    /// Built lazily: the plain connection was made already, and a server
    /// `Cache::connect` would refuse to cache in (a replica) can still be
    /// listed.
    pub async fn cache(&self, url: &str) -> Result<Cache, String> {
        let builder = Cache::builder()
            .connect_timeout(TIMEOUT)
            .response_timeout(TIMEOUT);
        let builder = match self {
            Conn::Single(_) => builder.url(url),
            Conn::Cluster(_) => builder.cluster_nodes([url]),
        };
        builder.build_lazy().await.map_err(|err| err.to_string())
    }

    /// Runs one command, routed by its key on a cluster.
    pub async fn query<T: redis::FromRedisValue>(
        &mut self,
        cmd: &redis::Cmd,
    ) -> redis::RedisResult<T> {
        match self {
            Conn::Single(conn) => cmd.query_async(conn).await,
            Conn::Cluster(conn) => cmd.query_async(conn).await,
        }
    }
}

async fn bounded<C>(connecting: impl Future<Output = redis::RedisResult<C>>) -> Result<C, String> {
    match tokio::time::timeout(TIMEOUT, connecting).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(err)) => Err(format!("cannot connect to Redis: {err}")),
        Err(_) => Err(format!(
            "cannot connect to Redis: timed out after {TIMEOUT:?}"
        )),
    }
}
