//! One tracking connection: a dedicated RESP3 connection to one server (the
//! standalone server, the primary Sentinel names, or one primary of a
//! cluster), named `redis-memo-tracking` in `CLIENT LIST`.
//!
//! It sends `CLIENT TRACKING ON BCAST PREFIX p1 PREFIX p2 ...` with the
//! tier's [`prefixes`](super::prefixes), registers each new one as it comes
//! (`CLIENT TRACKING ON BCAST PREFIX p` again), and applies what the server
//! pushes: an `invalidate` with the keys changed under those prefixes, by
//! any client (a write, a `DEL`, an expiry, an eviction), or a null one for
//! `FLUSHALL` / `FLUSHDB`. BCAST rather than the default mode, because the
//! default mode tracks the keys read *by that connection*: every fill would
//! have to read through the tracking connection instead of the data
//! connection, and the server would keep a table of keys × clients. In BCAST
//! mode the data path is unchanged and the server keeps no per-key state;
//! with prefixes, a process hears of its own keys only. Before any prefix is
//! registered nothing is tracked (a `CLIENT TRACKING OFF` checks that the
//! server would let it).
//!
//! The connection is checked with a `PING` every [`PING_EVERY`], each bounded
//! by the response timeout: a connection that stops answering without
//! closing (a blackholed socket, a paused server) ends the session within
//! `PING_EVERY + response timeout`, like a closed one. A server that
//! refuses tracking (an ACL without `client`) gets the same connection
//! subscribed to the [`broadcast`] of this library's own changes instead.
//! One that cannot even do that (no RESP3) is asked again every
//! [`RETRY_REFUSED`].

use std::sync::Weak;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ErrorKind, PushInfo, PushKind, Value};
use tokio::sync::mpsc;

use super::{Coherence, LocalTier, broadcast};
use crate::health::{Warning, warn_limited};

/// The name of a tracking connection in `CLIENT LIST`.
pub(crate) const CLIENT_NAME: &str = "redis-memo-tracking";
/// How often a tracking connection is checked with a `PING`.
pub(crate) const PING_EVERY: Duration = Duration::from_secs(1);
/// How long after a refusal of tracking it is asked again.
const RETRY_REFUSED: Duration = Duration::from_secs(30);
/// Reconnection backoff bounds.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// What one server's tracking is now, as its task reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// Connecting, or connecting again.
    Connecting,
    /// Tracking (or ready to: no prefix yet), with every prefix up to this
    /// version registered.
    Tracking(u64),
    /// Tracking refused: subscribed to the broadcast instead.
    Subscribed,
    /// Refused, and cannot subscribe either: asked again later.
    Refused,
}

/// Where a task reports its server's state: its id, and the state.
pub(super) type Reports = mpsc::UnboundedSender<(u64, State)>;

/// How a session ended.
enum Ended {
    /// The connection failed or was lost: connect again.
    Lost(redis::RedisError),
    /// The server refused tracking: ask again later.
    Refused(redis::RedisError),
    /// The prefixes were replaced (a new epoch): start again at once.
    Reset,
    /// The cache was dropped.
    Dropped,
}

/// One server's tracking: sessions, one after the other, until the cache is
/// dropped (or the supervisor aborts it: the server no longer holds keys).
pub(super) async fn run(
    tier: Weak<LocalTier>,
    addr: String,
    client: redis::Client,
    config: AsyncConnectionConfig,
    id: u64,
    reports: Reports,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let started = tokio::time::Instant::now();
        let ended = session(&tier, &client, config.clone(), id, &reports).await;
        let Some(local) = tier.upgrade() else { return };
        let state = match &ended {
            Ended::Refused(_) => State::Refused,
            Ended::Dropped => return,
            // Pushes may have been missed from the moment the connection
            // went: the tier is cleared now, not once the supervisor has
            // read the report (it may be looking for servers meanwhile).
            Ended::Lost(_) | Ended::Reset => {
                local.set_broadcasting(false);
                local.set_coherence(Coherence::Connecting);
                State::Connecting
            }
        };
        if reports.send((id, state)).is_err() {
            return;
        }
        let pause = match ended {
            Ended::Dropped => return,
            Ended::Reset => MIN_BACKOFF,
            Ended::Lost(err) => {
                warn_limited!(
                    local.warnings,
                    Warning::LocalTier,
                    server = %addr,
                    error = %err,
                    "redis-memo: local tier lost its tracking connection; cleared it, and serves \
                     local entries for at most local_ttl until tracking is back (reconnecting)"
                );
                if started.elapsed() > MAX_BACKOFF * 4 {
                    backoff = MIN_BACKOFF;
                }
                let pause = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                pause
            }
            Ended::Refused(err) => {
                warn_limited!(
                    local.warnings,
                    Warning::LocalTier,
                    server = %addr,
                    error = %err,
                    "redis-memo: the server refused tracking (it needs Redis 6+ with RESP3, and \
                     the `client` and `ping` commands for this user); local entries are served for \
                     at most local_ttl, so other processes' changes may be seen that late"
                );
                RETRY_REFUSED
            }
        };
        drop(local);
        tokio::time::sleep(pause).await;
    }
}

/// One connection: turns tracking on, then applies pushes and registers
/// new prefixes until the connection is lost.
async fn session(
    tier: &Weak<LocalTier>,
    client: &redis::Client,
    config: AsyncConnectionConfig,
    id: u64,
    reports: &Reports,
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
    let Some(local) = tier.upgrade() else {
        return Ended::Dropped;
    };
    // Watched before the snapshot: no prefix added in between is missed.
    let mut added = local.prefixes.watch();
    let start = local.prefixes.all();
    drop(local);
    let (epoch, mut version) = (start.epoch, start.version);
    let tracked = match turn_on(&mut conn, &start.prefixes).await {
        Ok(()) => true,
        Err(err) => match subscribe_instead(tier, &mut conn, err).await {
            Ok(()) => false,
            Err(ended) => return ended,
        },
    };
    let state = if tracked {
        State::Tracking(version)
    } else {
        State::Subscribed
    };
    if reports.send((id, state)).is_err() {
        return Ended::Dropped;
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
                match pong {
                    Ok(()) => {}
                    // Refused (an ACL without `ping`): without it, a
                    // connection that stops answering would go unnoticed.
                    Err(err) if matches!(err.kind(), ErrorKind::Server(_)) => {
                        return Ended::Refused(err);
                    }
                    Err(err) => return Ended::Lost(err),
                }
                if tier.strong_count() == 0 {
                    return Ended::Dropped;
                }
            }
            changed = added.changed(), if tracked => {
                let Some(local) = tier.upgrade().filter(|_| changed.is_ok()) else {
                    return Ended::Dropped;
                };
                let next = local.prefixes.since(version);
                drop(local);
                if next.epoch != epoch {
                    return Ended::Reset;
                }
                if !next.prefixes.is_empty() {
                    match register(&mut conn, &next.prefixes).await {
                        Ok(()) => {}
                        // Refused now (an ACL changed, an overlap): start
                        // again, which asks again from scratch.
                        Err(err) if matches!(err.kind(), ErrorKind::Server(_)) => {
                            return Ended::Reset;
                        }
                        Err(err) => return Ended::Lost(err),
                    }
                }
                version = next.version;
                if reports.send((id, State::Tracking(version))).is_err() {
                    return Ended::Dropped;
                }
            }
        }
    }
}

/// Turns tracking on for `prefixes`; with none, only checks that the server
/// would let it (`CLIENT TRACKING OFF`): tracking without a prefix would
/// push every key of the database.
async fn turn_on(conn: &mut MultiplexedConnection, prefixes: &[String]) -> redis::RedisResult<()> {
    if prefixes.is_empty() {
        return redis::cmd("CLIENT")
            .arg("TRACKING")
            .arg("OFF")
            .query_async(conn)
            .await;
    }
    register(conn, prefixes).await
}

/// `CLIENT TRACKING ON BCAST PREFIX p1 PREFIX p2 ...`: on a connection that
/// tracks already, adds them.
async fn register(conn: &mut MultiplexedConnection, prefixes: &[String]) -> redis::RedisResult<()> {
    let mut cmd = redis::cmd("CLIENT");
    cmd.arg("TRACKING").arg("ON").arg("BCAST");
    for prefix in prefixes {
        cmd.arg("PREFIX").arg(prefix);
    }
    cmd.query_async(conn).await
}

/// Where tracking is refused: listens to the broadcast of this library's
/// own changes instead (entries then live at most local_ttl).
async fn subscribe_instead(
    tier: &Weak<LocalTier>,
    conn: &mut MultiplexedConnection,
    err: redis::RedisError,
) -> Result<(), Ended> {
    let err = match classify(err) {
        Ended::Refused(err) => err,
        ended => return Err(ended),
    };
    if conn.subscribe(broadcast::CHANNEL).await.is_err() {
        return Err(Ended::Refused(err));
    }
    let Some(local) = tier.upgrade() else {
        return Err(Ended::Dropped);
    };
    warn_limited!(
        local.warnings,
        Warning::LocalTier,
        error = %err,
        "redis-memo: the server refused CLIENT TRACKING (it needs the `client` command for this \
         user); local entries are served for at most local_ttl, and only this library's own \
         changes reach other processes sooner"
    );
    Ok(())
}

/// Applies one `invalidate` push: an array of keys, or null for a flush.
fn apply(tier: &LocalTier, data: Vec<Value>) {
    match data.into_iter().next() {
        Some(Value::Array(keys)) | Some(Value::Set(keys)) => {
            tier.count_pushes(keys.len() as u64);
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
        _ => {
            tier.count_pushes(1);
            tier.clear();
        }
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
