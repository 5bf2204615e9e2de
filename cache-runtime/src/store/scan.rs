//! Prefix invalidation on Redis: every key that literally starts with a prefix.
//!
//! It is `SCAN cursor MATCH <escaped prefix>* COUNT 1000`, with each
//! batch's `UNLINK` pipelined together with the next `SCAN`: one round trip per
//! batch, never `KEYS`, and no command that holds Redis for long. `UNLINK`
//! frees memory in the background and returns how many keys it removed, so the
//! returned count is exact even when `SCAN` reports a key twice.
//!
//! On a Redis Cluster the same runs on every primary of the current topology
//! (`CLUSTER SLOTS`), one after the other, each through redis-rs's connection
//! to that node: `SCAN` there, and one `UNLINK` per key (never a command that
//! spans two slots), pipelined with the node's next `SCAN`. A pass in which a
//! node failed or answered `MOVED`/`ASK` (slots moved) is followed by another
//! pass over the topology as it is then, up to [`CLUSTER_PASSES`] passes.
//! What is guaranteed when it returns `Ok(n)`: every key matching the prefix
//! that existed on its primary for the whole of the last pass is deleted, and
//! `n` is the exact number of keys this call deleted (summed `UNLINK` replies,
//! across passes).

use std::time::Duration;

use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};

use super::{KeyFilter, RedisStore};
use crate::Error;

/// How many keys one `SCAN` step asks for.
const SCAN_COUNT: usize = 1000;

/// Escapes the glob characters of a Redis `MATCH` pattern (`* ? [ ] \`), so that
/// the pattern `escape_glob(prefix) + "*"` matches exactly the keys that start
/// with `prefix`.
pub(crate) fn escape_glob(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 8);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Deletes the keys that start with `prefix` and that `filter` accepts.
pub(crate) async fn redis_delete_prefix(
    store: &RedisStore,
    prefix: &str,
    filter: &KeyFilter<'_>,
) -> Result<u64, Error> {
    let pattern = format!("{}*", escape_glob(prefix));
    let scan = |cursor: u64| {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT);
        cmd
    };
    let mut deleted = 0u64;
    let (mut cursor, mut keys): (u64, Vec<String>) = store.query(&scan(0)).await?;
    loop {
        keys.retain(|key| filter(key));
        if keys.is_empty() {
            if cursor == 0 {
                return Ok(deleted);
            }
            (cursor, keys) = store.query(&scan(cursor)).await?;
            continue;
        }
        let mut unlink = redis::cmd("UNLINK");
        unlink.arg(&keys);
        if cursor == 0 {
            let n: u64 = store.query(&unlink).await?;
            return Ok(deleted + n);
        }
        let mut pipe = redis::pipe();
        pipe.add_command(unlink).add_command(scan(cursor));
        let (n, (next, next_keys)): (u64, (u64, Vec<String>)) = store.query_pipe(&pipe).await?;
        deleted += n;
        (cursor, keys) = (next, next_keys);
    }
}

/// How many passes over a cluster a prefix deletion makes at most before it
/// gives up on a topology that keeps changing or a node that keeps failing.
const CLUSTER_PASSES: u32 = 6;

/// Deletes the keys that start with `prefix` and that `filter` accepts on
/// every primary of a cluster; see the module documentation.
pub(crate) async fn cluster_delete_prefix(
    store: &RedisStore,
    conn: &ClusterConnection,
    prefix: &str,
    filter: &KeyFilter<'_>,
) -> Result<u64, Error> {
    let pattern = format!("{}*", escape_glob(prefix));
    let mut deleted = 0u64;
    let mut last_error = None;
    for pass in 0..CLUSTER_PASSES {
        if pass > 0 {
            // Let a failover or a slot migration settle before looking again.
            tokio::time::sleep(Duration::from_millis(100 << pass.min(4))).await;
        }
        let primaries = match primaries(store).await {
            Ok(primaries) if !primaries.is_empty() => primaries,
            Ok(_) => continue,
            Err(err) => {
                last_error = Some(err);
                continue;
            }
        };
        let mut clean = true;
        for (host, port) in primaries {
            let node = Node {
                store,
                conn: conn.clone(),
                route: SingleNodeRoutingInfo::ByAddress { host, port },
            };
            match node.delete_matching(&pattern, filter, &mut deleted).await {
                Ok(true) => {}
                Ok(false) => clean = false,
                Err(err) => {
                    clean = false;
                    last_error = Some(err);
                }
            }
        }
        if clean {
            return Ok(deleted);
        }
    }
    Err(last_error.unwrap_or_else(|| {
        Error::Redis(redis::RedisError::from((
            redis::ErrorKind::Io,
            "prefix invalidation: the cluster's slots kept moving",
        )))
    }))
}

/// `PING` on every primary of the current topology, each through the
/// cluster connection's own connection to it; fails when one does not answer.
pub(crate) async fn cluster_ping(
    store: &RedisStore,
    conn: &ClusterConnection,
) -> Result<(), Error> {
    let primaries = primaries(store).await?;
    if primaries.is_empty() {
        return Err(Error::Redis(redis::RedisError::from((
            redis::ErrorKind::ClusterConnectionNotFound,
            "the cluster reports no primary",
        ))));
    }
    for (host, port) in primaries {
        let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
        let reply = conn.clone().route_command(redis::cmd("PING"), route).await;
        let reply = reply.map_err(|e| Error::from_redis(e, store.response_timeout()));
        store.observe(&reply);
        reply?.extract_error().map_err(Error::Redis)?;
    }
    Ok(())
}

/// The primaries serving slots, as `(host, port)`, from `CLUSTER SLOTS`.
async fn primaries(store: &RedisStore) -> Result<Vec<(String, u16)>, Error> {
    let slots: Vec<redis::Value> = store.query(redis::cmd("CLUSTER").arg("SLOTS")).await?;
    let mut primaries: Vec<(String, u16)> = Vec::new();
    for range in slots {
        let redis::Value::Array(fields) = range else {
            continue;
        };
        let Some(redis::Value::Array(primary)) = fields.get(2) else {
            continue;
        };
        let (Some(host), Some(port)) = (primary.first(), primary.get(1)) else {
            continue;
        };
        let host: String = parse(host.clone())?;
        let port: u16 = parse(port.clone())?;
        if !host.is_empty() && !primaries.contains(&(host.clone(), port)) {
            primaries.push((host, port));
        }
    }
    Ok(primaries)
}

/// A reply as `T`; a server error or a reply of another shape is an error.
fn parse<T: redis::FromRedisValue>(reply: redis::Value) -> Result<T, Error> {
    let parsed = reply
        .extract_error()
        .and_then(|value| Ok(redis::from_redis_value(value)?));
    parsed.map_err(Error::Redis)
}

/// One primary of a cluster, reached through the cluster connection's own
/// connection to it (no redirection is followed).
struct Node<'a> {
    store: &'a RedisStore,
    conn: ClusterConnection,
    route: SingleNodeRoutingInfo,
}

impl Node<'_> {
    /// Scans the node and unlinks what matches, adding to `deleted` as it
    /// goes. `Ok(false)` when a key had moved to another node.
    async fn delete_matching(
        mut self,
        pattern: &str,
        filter: &KeyFilter<'_>,
        deleted: &mut u64,
    ) -> Result<bool, Error> {
        let scan = |cursor: u64| {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT);
            cmd
        };
        let timeout = self.store.response_timeout();
        let reply = self
            .conn
            .route_command(scan(0), RoutingInfo::SingleNode(self.route.clone()))
            .await
            .map_err(|e| Error::from_redis(e, timeout));
        self.store.observe(&reply);
        let reply = reply?;
        let (mut cursor, mut keys): (u64, Vec<String>) = parse(reply)?;
        let mut in_place = true;
        loop {
            keys.retain(|key| filter(key));
            let mut pipe = redis::pipe();
            for key in &keys {
                pipe.cmd("UNLINK").arg(key);
            }
            if cursor != 0 {
                pipe.add_command(scan(cursor));
            }
            let count = keys.len() + usize::from(cursor != 0);
            if count == 0 {
                return Ok(in_place);
            }
            let replies = self
                .conn
                .route_pipeline(pipe, 0, count, self.route.clone())
                .await
                .map_err(|e| Error::from_redis(e, timeout));
            self.store.observe(&replies);
            let mut replies = replies?;
            let next = (cursor != 0).then(|| replies.pop());
            for reply in replies {
                match reply {
                    redis::Value::Int(n) => *deleted += n.max(0) as u64,
                    // MOVED, ASK, TRYAGAIN: the key's slot is elsewhere now.
                    _ => in_place = false,
                }
            }
            match next {
                None => return Ok(in_place),
                Some(reply) => {
                    let reply = reply.unwrap_or(redis::Value::Nil);
                    (cursor, keys) = parse(reply)?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::escape_glob;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(escape_glob("users:"), "users:");
        assert_eq!(escape_glob("a*b?c[d]e\\f"), "a\\*b\\?c\\[d\\]e\\\\f");
    }
}
