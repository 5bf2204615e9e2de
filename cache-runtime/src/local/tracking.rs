//! The tracking connection: server-assisted client-side caching in BCAST mode.
//!
//! One dedicated RESP3 connection per cache sends `CLIENT TRACKING ON BCAST`
//! and receives an `invalidate` push for every key any client changes (a
//! write, a `DEL`, an expiry, an eviction), and a null one for `FLUSHALL` /
//! `FLUSHDB`. BCAST rather than the default mode, because the default mode
//! tracks the keys read *by that connection*: every fill would have to read
//! through the tracking connection instead of the data connection, and the
//! server would keep a table of keys × clients. In BCAST mode the data path is
//! unchanged and the server keeps no per-key state; the cost is that every
//! process receives an invalidation for every change of any key, whether it
//! holds it or not (one small push per write, per process with a local tier).
//!
//! A lost connection (a `CLIENT KILL`, a restart, a network cut, a `PING` that
//! does not come back) may have missed invalidations: the tier is cleared,
//! and entries filled until tracking is back on live at most `local_ttl`.
//! A server that refuses tracking (an ACL without `client`) leaves the tier
//! in that bounded mode, and the same connection subscribes to the
//! [`broadcast`] of this library's own changes instead. One that cannot
//! even do that (no RESP3) is asked again every [`RETRY_REFUSED`].

use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::{AsyncConnectionConfig, ErrorKind, ProtocolVersion, PushInfo, PushKind, Value};
use tokio::sync::{mpsc, oneshot};

use super::{Coherence, LocalTier, broadcast};
use crate::health::{Warning, warn_limited};

/// The name of the tracking connection in `CLIENT LIST`.
pub(crate) const CLIENT_NAME: &str = "redis-memo-tracking";
/// How often the tracking connection is checked with a `PING`.
const PING_EVERY: Duration = Duration::from_secs(1);
/// How long after a refusal of tracking it is asked again.
const RETRY_REFUSED: Duration = Duration::from_secs(30);
/// Reconnection backoff bounds.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Keeps the tracking task alive; dropping it (with the cache) ends it.
pub(crate) struct Tracker {
    _stop: oneshot::Sender<()>,
}

/// How a tracking session ended.
enum Ended {
    /// The connection failed or was lost: reconnect.
    Lost(redis::RedisError),
    /// The server refused tracking: stay bounded, ask again later.
    Refused(redis::RedisError),
    /// The cache was dropped.
    Dropped,
}

/// Starts tracking for `tier` through a RESP3 connection opened like `client`'s.
pub(crate) fn spawn(
    tier: &Arc<LocalTier>,
    client: &redis::Client,
    connect_timeout: Duration,
    response_timeout: Duration,
) -> Result<Tracker, redis::RedisError> {
    let info = client.get_connection_info().clone();
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    let client = redis::Client::open(info.set_redis_settings(settings))?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        .set_response_timeout(Some(response_timeout));
    let (stop, stopped) = oneshot::channel();
    let tier = Arc::downgrade(tier);
    tokio::spawn(async move {
        tokio::select! {
            _ = stopped => {}
            () = track(tier, client, config) => {}
        }
    });
    Ok(Tracker { _stop: stop })
}

/// Runs tracking sessions until the cache is dropped.
async fn track(tier: Weak<LocalTier>, client: redis::Client, config: AsyncConnectionConfig) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let started = tokio::time::Instant::now();
        let ended = session(&tier, &client, config.clone()).await;
        let Some(local) = tier.upgrade() else { return };
        // Messages published while the subscription is down are lost.
        local.set_broadcasting(false);
        match ended {
            Ended::Dropped => return,
            Ended::Lost(err) => {
                local.set_coherence(Coherence::Connecting);
                warn_limited!(
                    local.warnings,
                    Warning::LocalTier,
                    error = %err,
                    "redis-memo: local tier lost its tracking connection; cleared it, and serves \
                     local entries for at most local_ttl until tracking is back (reconnecting)"
                );
                drop(local);
                if started.elapsed() > MAX_BACKOFF * 4 {
                    backoff = MIN_BACKOFF;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Ended::Refused(err) => {
                local.set_coherence(Coherence::Bounded);
                warn_limited!(
                    local.warnings,
                    Warning::LocalTier,
                    error = %err,
                    "redis-memo: the server refused CLIENT TRACKING (it needs Redis 6+ with RESP3, \
                     and the `client` command for this user); local entries are served for at most \
                     local_ttl, so other processes' changes may be seen that late"
                );
                drop(local);
                tokio::time::sleep(RETRY_REFUSED).await;
            }
        }
    }
}

/// One connection: turns tracking on, then applies invalidations until the
/// connection is lost.
async fn session(
    tier: &Weak<LocalTier>,
    client: &redis::Client,
    config: AsyncConnectionConfig,
) -> Ended {
    let (sender, mut pushes) = mpsc::unbounded_channel::<PushInfo>();
    let config = config.set_push_sender(sender);
    let mut conn = match client
        .get_multiplexed_async_connection_with_config(&config)
        .await
    {
        Ok(conn) => conn,
        Err(err) => return classify(err),
    };
    let named: redis::RedisResult<()> = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(CLIENT_NAME)
        .query_async(&mut conn)
        .await;
    if let Err(err) = named
        && !matches!(err.kind(), ErrorKind::Server(_))
    {
        return Ended::Lost(err);
    }
    let on: redis::RedisResult<()> = redis::cmd("CLIENT")
        .arg("TRACKING")
        .arg("ON")
        .arg("BCAST")
        .query_async(&mut conn)
        .await;
    let tracked = match on {
        Ok(()) => true,
        Err(err) => match classify(err) {
            // Cannot track: listen to the broadcast of this library's own
            // changes instead, and bound every entry by local_ttl.
            Ended::Refused(err) => match conn.subscribe(broadcast::CHANNEL).await {
                Ok(()) => {
                    let Some(local) = tier.upgrade() else {
                        return Ended::Dropped;
                    };
                    warn_limited!(
                        local.warnings,
                        Warning::LocalTier,
                        error = %err,
                        "redis-memo: the server refused CLIENT TRACKING (it needs the `client` \
                         command for this user); local entries are served for at most local_ttl, \
                         and only this library's own changes reach other processes sooner"
                    );
                    false
                }
                Err(_) => return Ended::Refused(err),
            },
            ended => return ended,
        },
    };
    {
        let Some(local) = tier.upgrade() else {
            return Ended::Dropped;
        };
        // Entries read before this point were not tracked.
        if tracked {
            local.set_coherence(Coherence::Tracking);
        } else {
            local.set_coherence(Coherence::Bounded);
            local.set_broadcasting(true);
        }
        local.clear();
    }
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            push = pushes.recv() => {
                let Some(push) = push else {
                    return Ended::Lost(closed("the push channel closed"));
                };
                let Some(local) = tier.upgrade() else {
                    return Ended::Dropped;
                };
                match push.kind {
                    PushKind::Invalidate => apply(&local, push.data),
                    PushKind::Message => {
                        if let Some(Value::BulkString(message)) = push.data.get(1) {
                            broadcast::apply(&local, message);
                        }
                    }
                    PushKind::Disconnection => {
                        return Ended::Lost(closed("the server closed the connection"));
                    }
                    _ => {}
                }
            }
            _ = ping.tick() => {
                let pong: redis::RedisResult<()> = redis::cmd("PING").query_async(&mut conn).await;
                if let Err(err) = pong {
                    return Ended::Lost(err);
                }
                if tier.strong_count() == 0 {
                    return Ended::Dropped;
                }
            }
        }
    }
}

/// On a Redis Cluster (no tracking connection): listens to the
/// [`broadcast`] of this library's own changes through a RESP3 cluster
/// connection on the seeds `nodes`.
pub(crate) fn spawn_cluster(
    tier: &Arc<LocalTier>,
    nodes: Vec<String>,
    connect_timeout: Duration,
    response_timeout: Duration,
) -> Tracker {
    let (stop, stopped) = oneshot::channel();
    let tier = Arc::downgrade(tier);
    let builder = move || {
        redis::cluster::ClusterClient::builder(nodes.clone())
            .connection_timeout(connect_timeout)
            .response_timeout(response_timeout)
            .use_protocol(ProtocolVersion::RESP3)
    };
    tokio::spawn(async move {
        tokio::select! {
            _ = stopped => {}
            () = listen_cluster(tier, builder) => {}
        }
    });
    Tracker { _stop: stop }
}

/// Runs cluster subscriptions until the cache is dropped.
async fn listen_cluster(
    tier: Weak<LocalTier>,
    builder: impl Fn() -> redis::cluster::ClusterClientBuilder,
) {
    loop {
        let ended = cluster_session(&tier, builder()).await;
        let Some(local) = tier.upgrade() else { return };
        local.set_broadcasting(false);
        local.set_coherence(Coherence::Bounded);
        local.clear();
        let err = match ended {
            Ended::Dropped => return,
            Ended::Lost(err) | Ended::Refused(err) => err,
        };
        warn_limited!(
            local.warnings,
            Warning::LocalTier,
            error = %err,
            "redis-memo: the local tier cannot listen to other processes' changes on this \
             cluster; it serves local entries for at most local_ttl (retrying)"
        );
        drop(local);
        tokio::time::sleep(MAX_BACKOFF).await;
    }
}

/// One cluster connection subscribed to the broadcast, until it fails.
async fn cluster_session(
    tier: &Weak<LocalTier>,
    builder: redis::cluster::ClusterClientBuilder,
) -> Ended {
    let (sender, mut pushes) = mpsc::unbounded_channel::<PushInfo>();
    let client = match builder.push_sender(sender).build() {
        Ok(client) => client,
        Err(err) => return Ended::Refused(err),
    };
    let mut conn = match client.get_async_connection().await {
        Ok(conn) => conn,
        Err(err) => return classify(err),
    };
    if let Err(err) = conn.subscribe(broadcast::CHANNEL).await {
        return classify(err);
    }
    match tier.upgrade() {
        Some(local) => {
            local.set_coherence(Coherence::Bounded);
            local.set_broadcasting(true);
            local.clear();
        }
        None => return Ended::Dropped,
    }
    loop {
        let Some(push) = pushes.recv().await else {
            return Ended::Lost(closed("the push channel closed"));
        };
        let Some(local) = tier.upgrade() else {
            return Ended::Dropped;
        };
        match push.kind {
            PushKind::Message => {
                if let Some(Value::BulkString(message)) = push.data.get(1) {
                    broadcast::apply(&local, message);
                }
            }
            // A node's connection dropped (redis-rs reconnects and subscribes
            // again): messages may have been missed meanwhile.
            PushKind::Disconnection | PushKind::Subscribe => local.clear(),
            _ => {}
        }
    }
}

/// Applies one `invalidate` push: an array of keys, or null for a flush.
fn apply(tier: &LocalTier, data: Vec<Value>) {
    match data.into_iter().next() {
        Some(Value::Array(keys)) | Some(Value::Set(keys)) => {
            for key in keys {
                match key {
                    Value::BulkString(key) => tier.pushed(&String::from_utf8_lossy(&key)),
                    Value::SimpleString(key) => tier.pushed(&key),
                    Value::VerbatimString { text, .. } => tier.pushed(&text),
                    // Not a key name: it could have been anything.
                    _ => tier.clear(),
                }
            }
        }
        _ => tier.clear(),
    }
}

/// A failure that a reconnection may cure, or a refusal that it will not.
fn classify(err: redis::RedisError) -> Ended {
    match err.kind() {
        ErrorKind::Server(_) | ErrorKind::RESP3NotSupported | ErrorKind::AuthenticationFailed => {
            Ended::Refused(err)
        }
        _ => Ended::Lost(err),
    }
}

fn closed(why: &'static str) -> redis::RedisError {
    redis::RedisError::from((ErrorKind::Io, "tracking connection lost", why.to_owned()))
}
