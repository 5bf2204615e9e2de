//! Redis through redis-rs: a `MultiplexedConnection` for a standalone server or
//! the primary a set of Sentinels names, a `cluster_async::ClusterConnection`
//! for a Redis Cluster.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::aio::ConnectionLike;

use super::cluster::ClusterHandle;
use super::sentinel::SentinelHandle;
use super::server::{ServerKind, ask_server_kind};
use super::standalone::StandaloneHandle;
use super::{Claim, FillOf, KeyFilter, KeyTtl, Seen, Store, parse_generation};
use crate::error::Error;
use crate::key::has_hash_tag;

/// The connection a [`RedisStore`] talks through.
pub(crate) enum Connection {
    /// A standalone server: one multiplexed connection that pipelines
    /// concurrent commands; the handle builds it again in the background
    /// when it breaks or the server refuses its credentials.
    Single(Arc<StandaloneHandle>),
    /// The primary a set of Sentinels names: like `Single`, and the handle
    /// asks the sentinels again and reconnects after a failover.
    Sentinel(Arc<SentinelHandle>),
    /// A Redis Cluster: redis-rs routes each command to the primary owning its
    /// key's slot, follows `MOVED`/`ASK` and refreshes the topology after a
    /// failover; the handle rebuilds it when it stops answering.
    Cluster(Arc<ClusterHandle>),
}

/// Runs `$call` with `$conn` bound to the connection to send through (a
/// cheap clone), or gives the error that there is none yet.
macro_rules! with_connection {
    ($store:ident, |$conn:ident| $call:expr) => {
        match &$store.conn {
            Connection::Single(handle) => match handle.connection().await {
                Ok(mut $conn) => $call,
                Err(err) => Err(err),
            },
            Connection::Sentinel(handle) => match handle.connection().await {
                Ok(mut $conn) => $call,
                Err(err) => Err(err),
            },
            Connection::Cluster(handle) => {
                let mut $conn = handle.current();
                $call
            }
        }
    };
}

/// Redis, standalone or cluster: every call path goes through the same
/// methods, whichever connection is underneath.
pub(crate) struct RedisStore {
    conn: Connection,
    response_timeout: Duration,
    /// Set when the server refused a script with NOPERM (an ACL user
    /// without `+@scripting`): grouped reads then use plain commands.
    scripts_denied: AtomicBool,
}

impl RedisStore {
    pub(crate) fn new(conn: Connection, response_timeout: Duration) -> Self {
        RedisStore {
            conn,
            response_timeout,
            scripts_denied: AtomicBool::new(false),
        }
    }

    /// Whether this is a Redis Cluster (where no command or pipeline may
    /// span two slots).
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.conn, Connection::Cluster(_))
    }

    /// Whether this is the primary a set of Sentinels names.
    pub(crate) fn is_sentinel(&self) -> bool {
        matches!(self.conn, Connection::Sentinel(_))
    }

    /// `PING`; on a cluster, every primary of the current topology.
    pub(crate) async fn ping(&self) -> Result<(), Error> {
        match &self.conn {
            Connection::Single(_) | Connection::Sentinel(_) => {
                self.query::<String>(&redis::cmd("PING")).await.map(drop)
            }
            Connection::Cluster(handle) => super::scan::cluster_ping(self, &handle.current()).await,
        }
    }

    pub(crate) fn response_timeout(&self) -> Duration {
        self.response_timeout
    }

    /// Runs one command, its response bounded by `response_timeout` (and each
    /// connection attempt by `connect_timeout`).
    pub(crate) async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, Error> {
        // What `Cmd::query_async` does, through the connection's own method:
        // the `ConnectionLike` path boxes the future of every command.
        let reply = async {
            match &self.conn {
                Connection::Single(handle) => {
                    handle.connection().await?.send_packed_command(cmd).await
                }
                Connection::Sentinel(handle) => {
                    handle.connection().await?.send_packed_command(cmd).await
                }
                Connection::Cluster(handle) => handle.current().req_packed_command(cmd).await,
            }
        };
        self.settle(reply.await)
    }

    /// A command's reply as `T`, or the error it means; the connection sees
    /// how the command ended (see [`observe`](Self::observe)).
    fn settle<T: redis::FromRedisValue>(
        &self,
        reply: redis::RedisResult<redis::Value>,
    ) -> Result<T, Error> {
        let result = reply
            .and_then(|value| Ok(redis::from_redis_value(value.extract_error()?)?))
            .map_err(|e| self.error(e));
        self.observe(&result);
        result
    }

    /// On a cluster: runs `cmd`, whose key is `key`, on the primary of the
    /// key's slot, bounded like [`query`](Self::query). The route is given,
    /// so redis-rs neither works it out from the command again nor copies
    /// the command to own it.
    async fn query_in_slot<T: redis::FromRedisValue>(
        &self,
        handle: &ClusterHandle,
        cmd: redis::Cmd,
        key: &str,
    ) -> Result<T, Error> {
        use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
        let route = Route::with_slot(Slot::for_key(key), SlotAddr::Master);
        let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
        self.settle(handle.current().route_command(cmd, route).await)
    }

    /// The error a failed command means. On a cluster, a redirection or a
    /// refusal that redis-rs could not follow (`MOVED` to a primary that just
    /// died, `TRYAGAIN`, `CLUSTERDOWN`, no connection to the slot's node) is
    /// a shard being unreachable while the cluster fails over, not a
    /// misconfiguration: it counts for that shard's circuit breaker.
    fn error(&self, err: redis::RedisError) -> Error {
        use redis::{ErrorKind, ServerErrorKind};
        let topology = matches!(
            err.kind(),
            ErrorKind::Server(
                ServerErrorKind::Moved
                    | ServerErrorKind::Ask
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
            ) | ErrorKind::ClusterConnectionNotFound
        );
        if topology && self.is_cluster() {
            Error::Connection(err)
        } else {
            Error::from_redis(err, self.response_timeout)
        }
    }

    /// Lets the connection see how a command ended, so that it can repair
    /// itself (see [`ClusterHandle`] and [`Managed`](super::managed::Managed)).
    pub(crate) fn observe<T>(&self, result: &Result<T, Error>) {
        match &self.conn {
            Connection::Single(handle) => handle.observe(result),
            Connection::Sentinel(handle) => handle.observe(result),
            Connection::Cluster(handle) => handle.observe(result),
        }
    }

    /// Runs a pipeline in one round trip, bounded like [`query`](Self::query).
    pub(crate) async fn query_pipe<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, Error> {
        let result = with_connection!(self, |conn| pipe.query_async(&mut conn).await);
        let result = result.map_err(|e| self.error(e));
        self.observe(&result);
        result
    }

    /// Whether scripts may be tried: not after the server refused one with
    /// NOPERM (see [`denies_scripts`](Self::denies_scripts)).
    pub(crate) fn scripts_allowed(&self) -> bool {
        !self.scripts_denied.load(Ordering::Relaxed)
    }

    /// Whether `err` is the server refusing a script to this user (an ACL
    /// user without `+@scripting`); the first time, it says so once and
    /// later callers use their plain-command fallback without asking.
    pub(crate) fn denies_scripts(&self, err: &Error) -> bool {
        let Error::Redis(redis_err) = err else {
            return false;
        };
        if redis_err.kind() != redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm) {
            return false;
        }
        if !self.scripts_denied.swap(true, Ordering::Relaxed) {
            crate::log::info!(
                error = %err,
                "redis-memo: the Redis user may not run scripts (no +@scripting): a miss's value \
                 replaces its placeholder with SET XX GET (a rewrite of the key by another \
                 client during the body is then undone by deleting the key, not refused), \
                 placeholders of bodies that outlive placeholder_ttl are not renewed, grouped \
                 reads use two GETs and leases are released with GET + DEL; grant +@scripting \
                 on the cache's keys to avoid this"
            );
        }
        true
    }

    /// Runs a Lua script (`EVALSHA`, loading it first when Redis does not know it).
    pub(crate) async fn invoke<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, Error> {
        let result = with_connection!(self, |conn| invocation.invoke_async(&mut conn).await);
        let result = result.map_err(|e| self.error(e));
        self.observe(&result);
        result
    }
}

impl RedisStore {
    /// Asks the server what it is. `Err` when it cannot be asked now (not
    /// reachable); `Ok(Unknown)` when it refuses to tell.
    pub(crate) async fn server_kind(&self) -> Result<ServerKind, Error> {
        let timeout = self.response_timeout;
        match &self.conn {
            Connection::Single(handle) => {
                ask_server_kind(current(handle.connection().await)?, timeout).await
            }
            Connection::Sentinel(handle) => {
                ask_server_kind(current(handle.connection().await)?, timeout).await
            }
            Connection::Cluster(handle) => ask_server_kind(handle.current(), timeout).await,
        }
    }
}

fn current<C>(conn: redis::RedisResult<C>) -> Result<C, Error> {
    conn.map_err(Error::Connection)
}

impl Store for RedisStore {
    /// The hit path: one `GET`, its command built in buffers of the right size.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let mut cmd = redis::Cmd::with_capacity(2, "GET".len() + key.len());
        cmd.arg("GET").arg(key);
        match &self.conn {
            Connection::Cluster(handle) => self.query_in_slot(handle, cmd, key).await,
            _ => self.query(&cmd).await,
        }
    }

    /// `MGET`; on a cluster redis-rs sends one per slot, at once, to each
    /// slot's primary, and puts the replies back in order.
    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, Error> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.query(redis::cmd("MGET").arg(keys)).await
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), Error> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value);
        if let Some(ttl) = ttl {
            if ttl.subsec_nanos() == 0 {
                cmd.arg("EX").arg(ttl.as_secs());
            } else {
                cmd.arg("PX").arg(ttl.as_millis().max(1) as u64);
            }
        }
        self.query::<()>(&cmd).await
    }

    /// One `UNLINK`; on a cluster redis-rs splits it into one `UNLINK` per
    /// slot, sent to each slot's primary, and sums the counts.
    async fn delete(&self, keys: &[&str]) -> Result<u64, Error> {
        if keys.is_empty() {
            return Ok(0);
        }
        self.query(redis::cmd("UNLINK").arg(keys)).await
    }

    async fn ttl(&self, key: &str) -> Result<KeyTtl, Error> {
        let ms: i64 = self.query(redis::cmd("PTTL").arg(key)).await?;
        Ok(KeyTtl::from_pttl(ms))
    }

    /// `GET` and `PTTL` of one key in one pipeline: one round trip, and one
    /// slot on a cluster.
    async fn get_with_ttl(&self, key: &str) -> Result<(Option<Vec<u8>>, KeyTtl), Error> {
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(key).cmd("PTTL").arg(key);
        let (value, ms): (Option<Vec<u8>>, i64) = self.query_pipe(&pipe).await?;
        Ok((value, KeyTtl::from_pttl(ms)))
    }

    async fn delete_prefix(&self, prefix: &str, filter: &KeyFilter<'_>) -> Result<u64, Error> {
        match &self.conn {
            Connection::Single(_) | Connection::Sentinel(_) => {
                super::scan::redis_delete_prefix(self, prefix, filter).await
            }
            Connection::Cluster(handle) => {
                super::scan::cluster_delete_prefix(self, handle, prefix, filter).await
            }
        }
    }

    async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let cluster = match &self.conn {
            Connection::Cluster(handle) => Some(&**handle),
            Connection::Single(_) | Connection::Sentinel(_) => None,
        };
        super::scan::keys_with_prefix(self, cluster, prefix).await
    }

    async fn get_grouped(
        &self,
        gen_key: &str,
        head: &str,
        tail: &str,
    ) -> Result<(u64, Option<Vec<u8>>), Error> {
        // The script builds a key it is not given: a cluster allows that only
        // in the slot of the key it is given, which a hash tag in the prefix
        // guarantees. A user without `+@scripting` reads with two `GET`s.
        let one_slot = !self.is_cluster() || has_hash_tag(head);
        if one_slot && self.scripts_allowed() {
            let mut invocation = GET_GROUPED.prepare_invoke();
            invocation.key(gen_key).arg(head).arg(tail);
            match self.invoke::<(String, Option<Vec<u8>>)>(&invocation).await {
                Ok((generation, value)) => return Ok((parse_generation(&generation)?, value)),
                Err(err) if self.denies_scripts(&err) => {}
                Err(err) => return Err(err),
            }
        }
        // Two GETs, each routed to its key's primary.
        let generation = self.generation(gen_key).await?;
        let key = format!("{head}{generation}{tail}");
        Ok((generation, self.get(&key).await?))
    }

    async fn generation(&self, gen_key: &str) -> Result<u64, Error> {
        let raw: Option<String> = self.query(redis::cmd("GET").arg(gen_key)).await?;
        raw.map_or(Ok(0), |raw| parse_generation(&raw))
    }

    async fn bump_generation(&self, gen_key: &str) -> Result<u64, Error> {
        self.query(redis::cmd("INCR").arg(gen_key)).await
    }

    /// `SET key placeholder NX PX ttl`; when the key exists, a `GET` says
    /// what it holds (a second round trip, only then: `SET NX GET` would do
    /// both at once, but needs Redis 7).
    async fn claim(&self, key: &str, placeholder: &[u8], ttl: Duration) -> Result<Claim, Error> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key)
            .arg(placeholder)
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl));
        if self.query::<Option<String>>(&cmd).await?.is_some() {
            return Ok(Claim::Won);
        }
        Ok(Claim::Lost(Seen::of(self.get(key).await?)))
    }

    /// A compare-and-set script. Without `+@scripting`: `SET key value XX
    /// GET`, which never recreates a deleted key; when what it replaced was
    /// not `expected` (another client rewrote the key during the body), the
    /// key is deleted, so the older value is seen for one round trip at most
    /// and the next call reads afresh.
    async fn fill(
        &self,
        key: &str,
        expected: &[u8],
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, Error> {
        let ms = ttl.map_or(0, millis);
        if self.scripts_allowed() {
            let mut invocation = FILL.prepare_invoke();
            invocation.key(key).arg(expected).arg(value).arg(ms);
            match self.invoke::<i64>(&invocation).await {
                Ok(stored) => return Ok(stored == 1),
                Err(err) if self.denies_scripts(&err) => {}
                Err(err) => return Err(err),
            }
        }
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value).arg("XX").arg("GET");
        if ms > 0 {
            cmd.arg("PX").arg(ms);
        }
        match self.query::<Option<Vec<u8>>>(&cmd).await? {
            Some(old) if old == expected => Ok(true),
            None => Ok(false),
            Some(_) => {
                self.query::<i64>(redis::cmd("DEL").arg(key)).await?;
                Ok(false)
            }
        }
    }

    /// A compare-and-expire script; nothing without `+@scripting`.
    async fn renew(&self, key: &str, placeholder: &[u8], ttl: Duration) -> Result<bool, Error> {
        if !self.scripts_allowed() {
            return Ok(false);
        }
        let mut invocation = RENEW.prepare_invoke();
        invocation.key(key).arg(placeholder).arg(millis(ttl));
        match self.invoke::<i64>(&invocation).await {
            Ok(renewed) => Ok(renewed == 1),
            Err(err) if self.denies_scripts(&err) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// One pipeline of `SET NX PX`, then one `MGET` of the keys it did not
    /// claim. On a cluster (where a pipeline may not span slots), one
    /// [`claim`](Store::claim) per key, sent at once.
    async fn claim_many(
        &self,
        keys: &[&str],
        placeholders: &[Arc<[u8]>],
        ttl: Duration,
    ) -> Result<Vec<Option<Claim>>, Error> {
        if self.is_cluster() {
            let claims = keys
                .iter()
                .zip(placeholders)
                .map(|(key, placeholder)| self.claim(key, placeholder, ttl));
            return Ok(futures_util::future::join_all(claims)
                .await
                .into_iter()
                .map(Result::ok)
                .collect());
        }
        let mut pipe = redis::pipe();
        for (key, placeholder) in keys.iter().zip(placeholders) {
            pipe.cmd("SET")
                .arg(key)
                .arg(&**placeholder)
                .arg("NX")
                .arg("PX")
                .arg(millis(ttl));
        }
        let set: Vec<Option<String>> = self.query_pipe(&pipe).await?;
        let lost: Vec<&str> = keys
            .iter()
            .zip(&set)
            .filter(|(_, set)| set.is_none())
            .map(|(key, _)| *key)
            .collect();
        let mut held = self.get_many(&lost).await?.into_iter();
        Ok(set
            .into_iter()
            .map(|set| match set {
                Some(_) => Some(Claim::Won),
                None => Some(Claim::Lost(Seen::of(held.next().flatten()))),
            })
            .collect())
    }

    /// One script storing every value over what its key held. Without
    /// `+@scripting`, one pipeline of `SET XX GET`, and the keys whose older
    /// value it replaced are deleted (see [`fill`](Store::fill)). On a
    /// cluster, one [`fill`](Store::fill) per key, sent at once.
    async fn fill_many(&self, fills: &[FillOf<'_>]) -> Result<Vec<Option<bool>>, Error> {
        if self.is_cluster() {
            let stores = fills
                .iter()
                .map(|fill| self.fill(fill.key, fill.seen, fill.value, fill.ttl));
            return Ok(futures_util::future::join_all(stores)
                .await
                .into_iter()
                .map(Result::ok)
                .collect());
        }
        if self.scripts_allowed() {
            let mut invocation = FILL_MANY.prepare_invoke();
            for fill in fills {
                invocation
                    .key(fill.key)
                    .arg(fill.seen)
                    .arg(fill.value)
                    .arg(fill.ttl.map_or(0, millis));
            }
            match self.invoke::<Vec<i64>>(&invocation).await {
                Ok(stored) => return Ok(stored.into_iter().map(|n| Some(n == 1)).collect()),
                Err(err) if self.denies_scripts(&err) => {}
                Err(err) => return Err(err),
            }
        }
        let mut pipe = redis::pipe();
        for fill in fills {
            pipe.cmd("SET")
                .arg(fill.key)
                .arg(fill.value)
                .arg("XX")
                .arg("GET");
            if let Some(ttl) = fill.ttl {
                pipe.arg("PX").arg(millis(ttl));
            }
        }
        let old: Vec<Option<Vec<u8>>> = self.query_pipe(&pipe).await?;
        let mut stored = Vec::with_capacity(fills.len());
        let mut clobbered = Vec::new();
        for (fill, old) in fills.iter().zip(old) {
            stored.push(Some(match old {
                Some(old) if old == fill.seen => true,
                None => false,
                Some(_) => {
                    clobbered.push(fill.key);
                    false
                }
            }));
        }
        if !clobbered.is_empty() {
            self.query::<i64>(redis::cmd("DEL").arg(&clobbered)).await?;
        }
        Ok(stored)
    }

    /// A compare-and-delete script. Without `+@scripting`, `GET` then `DEL`:
    /// a key that changes between the two is deleted too, which costs at
    /// most a miss.
    async fn delete_if(&self, key: &str, value: &[u8]) -> Result<bool, Error> {
        if self.scripts_allowed() {
            let mut invocation = DELETE_IF.prepare_invoke();
            invocation.key(key).arg(value);
            match self.invoke::<i64>(&invocation).await {
                Ok(deleted) => return Ok(deleted == 1),
                Err(err) if self.denies_scripts(&err) => {}
                Err(err) => return Err(err),
            }
        }
        let held: Option<Vec<u8>> = self.query(redis::cmd("GET").arg(key)).await?;
        if held.as_deref() != Some(value) {
            return Ok(false);
        }
        Ok(self.query::<i64>(redis::cmd("DEL").arg(key)).await? == 1)
    }
}

/// A duration in whole milliseconds, at least 1.
fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Stores `ARGV[2]` (for `ARGV[3]` ms; `0`: no expiry) if the key holds
/// `ARGV[1]`. One key: it runs on a cluster too.
static FILL: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end \
         if ARGV[3] == '0' then redis.call('SET', KEYS[1], ARGV[2]) \
         else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end \
         return 1",
    )
});

/// [`FILL`] for every key: `ARGV` holds, per key, what it must hold, the
/// value and the TTL in ms; the reply has a 1 per stored value, a 0 per
/// refused one. (One slot on a cluster: used on a single server only.)
static FILL_MANY: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "local out = {} \
         for i, key in ipairs(KEYS) do \
           local at = (i - 1) * 3 \
           if redis.call('GET', key) == ARGV[at + 1] then \
             if ARGV[at + 3] == '0' then redis.call('SET', key, ARGV[at + 2]) \
             else redis.call('SET', key, ARGV[at + 2], 'PX', ARGV[at + 3]) end \
             out[i] = 1 \
           else out[i] = 0 end \
         end \
         return out",
    )
});

/// Makes the key expire in `ARGV[2]` ms if it holds `ARGV[1]`.
static RENEW: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then \
         return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0",
    )
});

/// Deletes the key if it holds `ARGV[1]`.
static DELETE_IF: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end \
         return 0",
    )
});

/// Reads a generation and the value of that generation in one round trip.
/// (It builds a key the script was not given in KEYS, so on a cluster it is
/// only used when a hash tag puts both keys in one slot.)
static GET_GROUPED: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "local g = redis.call('GET', KEYS[1]) or '0' \
         return {g, redis.call('GET', ARGV[1] .. g .. ARGV[2])}",
    )
});
