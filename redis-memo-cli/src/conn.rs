//! The Redis the CLI talks to: one server, or every primary of a Redis
//! Cluster.
//!
//! On a cluster, `SCAN` runs on each primary of the current topology
//! (`CLUSTER SLOTS`), and every other command goes through redis-rs's cluster
//! connection, which sends it to the primary owning its key (a multi-key
//! `UNLINK` is split per slot and the counts summed). A server is taken for a
//! cluster node when `--cluster` is given or when its `INFO cluster` says
//! `cluster_enabled:1`.

use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};

/// How long connecting, and each reply, may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// How many keys one `SCAN` step asks for.
const SCAN_COUNT: usize = 1000;

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

    /// Every key that starts with `prefix` (literally), from every primary,
    /// each page handed to `page` as it comes.
    pub async fn scan_prefix(
        &mut self,
        prefix: &str,
        mut page: impl AsyncFnMut(&mut Conn, Vec<String>) -> Result<(), String>,
    ) -> Result<(), String> {
        let pattern = pattern(prefix);
        let routes = match self {
            Conn::Single(_) => vec![None],
            Conn::Cluster(conn) => primaries(conn).await?.into_iter().map(Some).collect(),
        };
        for route in routes {
            let mut cursor = 0u64;
            loop {
                let scan = scan(&pattern, cursor);
                let reply = match (&mut *self, &route) {
                    (Conn::Single(conn), _) => conn.req_packed_command(&scan).await,
                    (Conn::Cluster(conn), Some(route)) => {
                        let route = RoutingInfo::SingleNode(route.clone());
                        conn.route_command(scan, route).await
                    }
                    (Conn::Cluster(conn), None) => conn.req_packed_command(&scan).await,
                };
                let (next, keys): (u64, Vec<String>) = reply
                    .and_then(|value| Ok(redis::from_redis_value(value.extract_error()?)?))
                    .map_err(|e| format!("SCAN failed: {e}"))?;
                page(self, keys).await?;
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(())
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

/// `prefix` as a SCAN pattern matching exactly the keys that start with it.
fn pattern(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 8);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('*');
    out
}

fn scan(pattern: &str, cursor: u64) -> redis::Cmd {
    let mut cmd = redis::cmd("SCAN");
    cmd.arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(SCAN_COUNT);
    cmd
}

/// The primaries that serve slots, from `CLUSTER SLOTS`: each entry is
/// `[first slot, last slot, [host, port, id], replicas...]`.
async fn primaries(conn: &mut ClusterConnection) -> Result<Vec<SingleNodeRoutingInfo>, String> {
    let ranges: Vec<Vec<redis::Value>> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(conn)
        .await
        .map_err(|e| format!("CLUSTER SLOTS failed: {e}"))?;
    let mut nodes: Vec<(String, u16)> = Vec::new();
    for range in ranges {
        let Some(primary) = range.into_iter().nth(2) else {
            continue;
        };
        let fields: Vec<redis::Value> = redis::from_redis_value(primary)
            .map_err(|e| format!("unexpected CLUSTER SLOTS reply: {e}"))?;
        let mut fields = fields.into_iter();
        let (Some(host), Some(port)) = (fields.next(), fields.next()) else {
            continue;
        };
        let host: String = redis::from_redis_value(host)
            .map_err(|e| format!("unexpected CLUSTER SLOTS reply: {e}"))?;
        let port: u16 = redis::from_redis_value(port)
            .map_err(|e| format!("unexpected CLUSTER SLOTS reply: {e}"))?;
        if !nodes.contains(&(host.clone(), port)) {
            nodes.push((host, port));
        }
    }
    Ok(nodes
        .into_iter()
        .map(|(host, port)| SingleNodeRoutingInfo::ByAddress { host, port })
        .collect())
}
