//! What a server says it is (`ROLE`, `INFO cluster`), and what a standalone
//! or Sentinel connection does about a server that is not a primary.

use std::time::Duration;

use redis::aio::ConnectionLike;

use crate::error::Error;

/// What a server says it is (`ROLE`, `INFO cluster`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerKind {
    /// A standalone primary: what a standalone cache needs.
    Primary,
    Replica,
    Sentinel,
    ClusterNode,
    /// The server would not say (an ACL user without `+role` or `+info`).
    Unknown,
}

/// Asks a server what it is (`ROLE`, then `INFO cluster` on a primary).
/// `Err` when it cannot be asked now (not reachable); `Ok(Unknown)` when it
/// refuses to tell.
pub(crate) async fn ask_server_kind(
    mut conn: impl ConnectionLike,
    timeout: Duration,
) -> Result<ServerKind, Error> {
    let role = match redis::cmd("ROLE")
        .query_async::<Vec<redis::Value>>(&mut conn)
        .await
        .map_err(|e| Error::from_redis(e, timeout))
    {
        Ok(reply) => match reply.first() {
            Some(redis::Value::BulkString(role)) => role.clone(),
            Some(redis::Value::SimpleString(role)) => role.clone().into_bytes(),
            _ => return Ok(ServerKind::Unknown),
        },
        Err(err @ (Error::Connection(_) | Error::Timeout(_))) => return Err(err),
        Err(_) => return Ok(ServerKind::Unknown),
    };
    Ok(match role.as_slice() {
        b"slave" | b"replica" => ServerKind::Replica,
        b"sentinel" => ServerKind::Sentinel,
        b"master" => match redis::cmd("INFO")
            .arg("cluster")
            .query_async::<String>(&mut conn)
            .await
            .map_err(|e| Error::from_redis(e, timeout))
        {
            Ok(info) if info.contains("cluster_enabled:1") => ServerKind::ClusterNode,
            Ok(_) => ServerKind::Primary,
            Err(err @ (Error::Connection(_) | Error::Timeout(_))) => return Err(err),
            Err(_) => ServerKind::Unknown,
        },
        _ => ServerKind::Unknown,
    })
}

impl ServerKind {
    /// The error a standalone constructor gives for this kind of server.
    pub(crate) fn refusal(self) -> Option<Error> {
        let (found, advice) = match self {
            ServerKind::Primary | ServerKind::Unknown => return None,
            ServerKind::Replica => (
                "a read-only replica",
                "every write would fail; connect to the primary (with Sentinel, the one \
                 `SENTINEL get-master-addr-by-name` names)",
            ),
            ServerKind::Sentinel => (
                "a Sentinel",
                "it stores nothing; connect to the primary it monitors (`SENTINEL \
                 get-master-addr-by-name <service>`)",
            ),
            ServerKind::ClusterNode => (
                "a Redis Cluster node",
                "keys of other nodes would all fail with MOVED; connect with \
                 Cache::connect_cluster (or CacheBuilder::cluster_nodes)",
            ),
        };
        Some(Error::WrongServer { found, advice })
    }
}
