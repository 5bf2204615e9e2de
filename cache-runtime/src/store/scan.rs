//! Prefix invalidation on Redis: every key that literally starts with a prefix
//! (and the listing of those keys, [`keys_with_prefix`], for tooling).
//!
//! It is `SCAN cursor MATCH <escaped prefix>* COUNT 1000`, with each
//! batch's `UNLINK` pipelined together with the next `SCAN`: one round trip per
//! batch, never `KEYS`, and no command that holds Redis for long. `UNLINK`
//! frees memory in the background and returns how many keys it removed, so the
//! returned count is exact even when `SCAN` reports a key twice.
//!
//! On a Redis Cluster the same runs on every primary of the current topology
//! (`CLUSTER SLOTS`), one after the other: `SCAN` on that node through
//! redis-rs's connection to it, and each page's keys unlinked there in one
//! pipeline of one `UNLINK` per key (never a command that spans two slots),
//! sent at once with the node's next `SCAN`. The pipeline starts with
//! `CLUSTER MYID`: redis-rs sends a pipeline in which one reply is a
//! redirection again as a whole to another node, and its counts are only
//! taken when they are this node's. Keys of a slot being migrated get
//! `ASKING` + `UNLINK` one by one, which redis-rs redirects by itself.
//!
//! Slots may move while this runs: a key may leave a primary not yet scanned
//! for one already scanned. So each pass takes the topology before and
//! after (every primary's own slots, `CLUSTER NODES`, where a slot being
//! migrated or imported shows as `[slot->-node]` / `[slot-<-node]`), and a
//! pass counts as complete only when the topology did not change during it,
//! no slot was moving at its start or end, and every node answered. Otherwise
//! another pass follows over the topology as it is then, up to
//! [`CLUSTER_PASSES`] passes; past that the call fails rather than return a
//! count that may have missed keys.
//!
//! An `UNLINK` that gets no reply (a timeout: redis-rs's cluster connection
//! can stall for a while when it refreshes its slot map under load) may have
//! run: its keys are looked at again (`EXISTS`) before the next pass, and
//! those gone are counted.
//!
//! What is guaranteed when it returns `Ok(n)`: every key matching the prefix
//! that existed for the whole of the last pass is deleted, and `n` is the
//! number of keys this call deleted (summed `UNLINK` replies, across passes),
//! exact unless a key whose `UNLINK` got no reply was also deleted or expired
//! by something else at that moment.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::future::join_all;

use redis::aio::ConnectionLike;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};

use super::{ClusterHandle, KeyFilter, RedisStore};
use crate::error::Error;
use crate::key::key_slot;

/// How many keys one `SCAN` step asks for.
const SCAN_COUNT: usize = 1000;

/// One step of `SCAN`: `SCAN cursor MATCH pattern COUNT 1000`.
fn scan_cmd(pattern: &str, cursor: u64) -> redis::Cmd {
    let mut cmd = redis::cmd("SCAN");
    cmd.arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(SCAN_COUNT);
    cmd
}

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
    let scan = |cursor: u64| scan_cmd(&pattern, cursor);
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

/// Every key that starts with `prefix`, sorted, each once: `SCAN` on the
/// server, or on every primary of a cluster (`cluster`) in turn.
pub(crate) async fn keys_with_prefix(
    store: &RedisStore,
    cluster: Option<&ClusterHandle>,
    prefix: &str,
) -> Result<Vec<String>, Error> {
    let pattern = format!("{}*", escape_glob(prefix));
    let mut keys = Vec::new();
    match cluster {
        None => {
            let mut cursor = 0;
            loop {
                let (next, page): (u64, Vec<String>) =
                    store.query(&scan_cmd(&pattern, cursor)).await?;
                keys.extend(page);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Some(handle) => {
            let conn = handle.current();
            for (host, port) in primaries(store).await? {
                let node = Node {
                    store,
                    conn: conn.clone(),
                    route: SingleNodeRoutingInfo::ByAddress { host, port },
                    id: "",
                };
                let mut cursor = 0;
                loop {
                    let (next, page) = node.scan(&pattern, cursor).await?;
                    keys.extend(page);
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
            }
        }
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}

/// How many passes over a cluster a prefix deletion makes at most before it
/// gives up on a topology that keeps changing or a node that keeps failing.
const CLUSTER_PASSES: u32 = 6;

/// Deletes the keys that start with `prefix` and that `filter` accepts on
/// every primary of a cluster; see the module documentation.
pub(crate) async fn cluster_delete_prefix(
    store: &RedisStore,
    handle: &ClusterHandle,
    prefix: &str,
    filter: &KeyFilter<'_>,
) -> Result<u64, Error> {
    let pattern = format!("{}*", escape_glob(prefix));
    let mut progress = Progress::default();
    let mut last_error = None;
    for pass in 0..CLUSTER_PASSES {
        if pass > 0 {
            // Let a failover or a slot migration settle before looking again.
            tokio::time::sleep(Duration::from_millis(100 << pass.min(4))).await;
        }
        // The connection as it is now: it may have been rebuilt since the
        // last pass (see `ClusterHandle`).
        let conn = &handle.current();
        let before = match Topology::of(store, conn).await {
            Ok(topology) if !topology.nodes.is_empty() => topology,
            Ok(_) => continue,
            Err(err) => {
                last_error = Some(err);
                continue;
            }
        };
        let mut clean = !before.moving() && progress.settle(store).await;
        let moving = before.moving_slots();
        for primary in &before.nodes {
            let node = Node {
                store,
                conn: conn.clone(),
                route: SingleNodeRoutingInfo::ByAddress {
                    host: primary.host.clone(),
                    port: primary.port,
                },
                id: &primary.id,
            };
            if let Err(err) = node
                .delete_matching(&pattern, filter, &moving, &mut progress)
                .await
            {
                clean = false;
                last_error = Some(err);
            }
        }
        clean &= progress.unsure.is_empty();
        match Topology::of(store, conn).await {
            Ok(after) if clean && after == before => return Ok(progress.deleted),
            Ok(_) => {}
            Err(err) => last_error = Some(err),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        Error::Redis(redis::RedisError::from((
            redis::ErrorKind::Io,
            "prefix invalidation: the cluster's slots kept moving; some keys may be left, \
             call it again once the resharding or failover is over",
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
    primaries_in(store.query(&cluster_slots()).await?)
}

/// The primaries serving slots now, as `(host, port)`, asked through `conn`
/// (`CLUSTER SLOTS` on any node): the servers a local tier tracks.
pub(crate) async fn cluster_primaries(
    conn: &ClusterConnection,
) -> Result<Vec<(String, u16)>, Error> {
    let reply = conn.clone().req_packed_command(&cluster_slots()).await;
    primaries_in(parse(reply.map_err(Error::Redis)?)?)
}

fn cluster_slots() -> redis::Cmd {
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg("SLOTS");
    cmd
}

/// The primaries of a `CLUSTER SLOTS` reply, each once: every range is
/// `[first slot, last slot, [host, port, id, ...], replicas...]`.
fn primaries_in(slots: Vec<redis::Value>) -> Result<Vec<(String, u16)>, Error> {
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

/// What a prefix deletion has done so far.
#[derive(Default)]
struct Progress {
    /// Keys deleted (summed `UNLINK` replies, and the keys of `settle`).
    deleted: u64,
    /// Keys whose `UNLINK` got no reply (a timeout, a dropped connection): it
    /// may or may not have run.
    unsure: Vec<String>,
}

impl Progress {
    /// Looks again at the keys whose `UNLINK` got no reply: one that is gone
    /// was deleted by that `UNLINK` (or, at the same moment, by another
    /// client or by its TTL: counted all the same); one still there is
    /// found again by the next scan. `false` while some cannot be looked at.
    async fn settle(&mut self, store: &RedisStore) -> bool {
        let unsure = std::mem::take(&mut self.unsure);
        let exists = join_all(unsure.iter().map(|key| async move {
            let mut cmd = redis::cmd("EXISTS");
            cmd.arg(key);
            store.query::<bool>(&cmd).await
        }))
        .await;
        for (key, exists) in unsure.into_iter().zip(exists) {
            match exists {
                Ok(false) => self.deleted += 1,
                Ok(true) => {}
                Err(_) => self.unsure.push(key),
            }
        }
        self.unsure.is_empty()
    }
}

/// Every primary of a cluster and the slots it says it serves, moving ones
/// included: what a pass over the cluster must see unchanged to be complete.
#[derive(Debug, PartialEq, Eq)]
struct Topology {
    nodes: Vec<Primary>,
}

/// One primary, as its own `CLUSTER NODES` line describes it.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Primary {
    host: String,
    port: u16,
    id: String,
    /// The slot fields: `0-5460 [6093->-<id>]`.
    slots: String,
}

impl Topology {
    async fn of(store: &RedisStore, conn: &ClusterConnection) -> Result<Topology, Error> {
        let mut nodes = Vec::new();
        for (host, port) in primaries(store).await? {
            let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                host: host.clone(),
                port,
            });
            let reply = conn
                .clone()
                .route_command(redis::cmd("CLUSTER").arg("NODES").to_owned(), route)
                .await
                .map_err(|e| Error::from_redis(e, store.response_timeout()));
            store.observe(&reply);
            let text: String = parse(reply?)?;
            // `<id> <addr> <flags> <primary> <ping> <pong> <epoch> <state> <slot>...`
            let myself = text
                .lines()
                .find(|line| line.split(' ').nth(2).is_some_and(|f| f.contains("myself")))
                .unwrap_or_default();
            nodes.push(Primary {
                host,
                port,
                id: myself.split(' ').next().unwrap_or_default().to_owned(),
                slots: myself.split(' ').skip(8).collect::<Vec<_>>().join(" "),
            });
        }
        nodes.sort();
        Ok(Topology { nodes })
    }

    /// Whether a slot is being migrated or imported.
    fn moving(&self) -> bool {
        self.nodes.iter().any(|node| node.slots.contains('['))
    }

    /// The slots being migrated or imported: `[5000->-<id>]`, `[5000-<-<id>]`.
    fn moving_slots(&self) -> BTreeSet<u16> {
        self.nodes
            .iter()
            .flat_map(|node| node.slots.split(' '))
            .filter_map(|field| field.strip_prefix('['))
            .filter_map(|field| field.split('-').next()?.parse().ok())
            .collect()
    }
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
    /// Its node id, to tell a reply from it from one redis-rs got elsewhere.
    id: &'a str,
}

impl Node<'_> {
    /// Scans the node and unlinks what matches, noting in `progress` what
    /// it deleted and which keys' `UNLINK` got no reply.
    ///
    /// `SCAN` goes to this node; each page's keys are unlinked through the
    /// cluster connection, one `UNLINK` per slot, all at once and together
    /// with the next `SCAN`. Routed by slot, each follows `MOVED`/`ASK` by
    /// itself. (Not one pipeline to the node: redis-rs sends a pipeline in
    /// which one reply is a redirection again as a whole to the other node,
    /// `SCAN` cursor included, and loses the counts of what did run.)
    async fn delete_matching(
        self,
        pattern: &str,
        filter: &KeyFilter<'_>,
        moving: &BTreeSet<u16>,
        progress: &mut Progress,
    ) -> Result<(), Error> {
        let (mut cursor, mut keys) = self.scan(pattern, 0).await?;
        loop {
            keys.retain(|key| filter(key));
            let next = async {
                match cursor {
                    0 => Ok(None),
                    cursor => self.scan(pattern, cursor).await.map(Some),
                }
            };
            let ((unlinked, unsure), next) = tokio::join!(self.unlink(keys, moving), next);
            progress.deleted += unlinked;
            progress.unsure.extend(unsure);
            match next? {
                None => return Ok(()),
                Some(page) => (cursor, keys) = page,
            }
        }
    }

    /// One `SCAN` step on this node.
    async fn scan(&self, pattern: &str, cursor: u64) -> Result<(u64, Vec<String>), Error> {
        let cmd = scan_cmd(pattern, cursor);
        let reply = self
            .conn
            .clone()
            .route_command(cmd, RoutingInfo::SingleNode(self.route.clone()))
            .await
            .map_err(|e| Error::from_redis(e, self.store.response_timeout()));
        self.store.observe(&reply);
        parse(reply?)
    }
}

impl Node<'_> {
    /// Unlinks `keys`, found on this node: how many were deleted, and the
    /// keys whose `UNLINK` may or may not have run.
    ///
    /// One pipeline to this node: `CLUSTER MYID`, then one `UNLINK` per key.
    /// redis-rs sends a pipeline in which a reply is `MOVED`/`ASK` again as a
    /// whole to the other node, so the counts are only taken when `MYID`
    /// says the replies are this node's; otherwise (a slot moved meanwhile)
    /// every key of the page is unsure, and looked at again before the next
    /// pass. The keys of a slot that is `moving` get one `ASKING` + `UNLINK`
    /// each instead: the node may be importing the slot (and answer `MOVED`
    /// without `ASKING`), and redis-rs follows an `ASK` of one command.
    async fn unlink(&self, keys: Vec<String>, moving: &BTreeSet<u16>) -> (u64, Vec<String>) {
        let (one_by_one, keys): (Vec<String>, Vec<String>) = keys
            .into_iter()
            .partition(|key| moving.contains(&key_slot(key.as_bytes())));
        // `None`: the replies are not this node's.
        let paged = async {
            if keys.is_empty() {
                return Ok(Some((0, Vec::new())));
            }
            let mut pipe = redis::pipe();
            pipe.cmd("CLUSTER").arg("MYID");
            for key in &keys {
                pipe.cmd("UNLINK").arg(key);
            }
            let replies = self
                .conn
                .clone()
                .route_pipeline(pipe, 0, keys.len() + 1, self.route.clone())
                .await?;
            let mut replies = replies.into_iter();
            let id: Option<String> = replies
                .next()
                .and_then(|id| redis::from_redis_value(id).ok());
            if id.as_deref() != Some(self.id) {
                return Ok(None);
            }
            let mut deleted = 0;
            let mut unsure = Vec::new();
            for (key, reply) in keys.iter().zip(replies) {
                match reply {
                    redis::Value::Int(n) => deleted += n.max(0) as u64,
                    _ => unsure.push(key.clone()),
                }
            }
            Ok(Some((deleted, unsure)))
        };
        let singles = join_all(one_by_one.iter().map(|key| async move {
            let mut pipe = redis::pipe();
            pipe.cmd("ASKING").ignore().cmd("UNLINK").arg(key);
            let replies = self
                .conn
                .clone()
                .route_pipeline(pipe, 1, 1, self.route.clone())
                .await?;
            let reply = replies.into_iter().next().unwrap_or(redis::Value::Nil);
            Ok(redis::from_redis_value::<u64>(reply.extract_error()?)?)
        }));
        let (paged, singles): (redis::RedisResult<_>, Vec<redis::RedisResult<u64>>) =
            tokio::join!(paged, singles);
        let timeout = self.store.response_timeout();
        let paged = paged.map_err(|e| Error::from_redis(e, timeout));
        self.store.observe(&paged);
        let (mut deleted, mut unsure) = match paged {
            Ok(Some(counted)) => counted,
            Ok(None) | Err(_) => (0, keys),
        };
        for (key, reply) in one_by_one.into_iter().zip(singles) {
            let reply = reply.map_err(|e| Error::from_redis(e, timeout));
            self.store.observe(&reply);
            match reply {
                Ok(n) => deleted += n,
                Err(_) => unsure.push(key),
            }
        }
        (deleted, unsure)
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
