//! A multiplexed connection that is replaced in the background when it breaks.
//!
//! Commands go straight to a redis-rs `MultiplexedConnection` (one socket,
//! concurrent commands pipelined), as a hand-written client would send them.
//! redis-rs's `ConnectionManager` would reconnect by itself, but it costs
//! every command a second shared-future hop (about a tenth of a hit's
//! throughput at 64 tasks), reconnects only to the address it was built for,
//! and gives up for good when reconnecting fails for another reason than I/O:
//! after a failed `AUTH` (a rotated password, a re-created ACL user) every
//! later command would fail until the process restarts. Behind Sentinel the
//! address itself moves. So a [`Managed`] connection keeps what it needs to
//! connect again (a [`Connect`]), and when a command's error says the
//! connection will not come back by itself (dropped, refused, refused
//! credentials, a demoted primary), it builds a new one in the background —
//! one at a time, with backoff between failed attempts — and swaps it in. The
//! hit path only loads the current connection (no lock, no allocation) and
//! clones it; calls in the meantime fail open as usual.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use redis::aio::MultiplexedConnection;

use super::server::{ServerKind, ask_server_kind};
use crate::error::Error;

/// First wait after a failed rebuild; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between two rebuild attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// After a rebuild, errors are not taken as a reason for another one for this
/// long: commands sent on the replaced connection are still failing.
const SETTLE: Duration = Duration::from_millis(300);
/// Consecutive timeouts after which a connector that asks for it is rebuilt.
const REBUILD_AFTER_TIMEOUTS: u32 = 3;
/// Least time between two checks of what the server has become.
const RECHECK_EVERY: Duration = Duration::from_secs(10);

/// What a failed command means for the connection it was sent on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reaction {
    /// Nothing to do: a transient fault the connection survives (a
    /// timeout), or not a
    /// connection matter at all.
    Nothing,
    /// Connect again (and, behind Sentinel, find the primary again).
    Rebuild,
    /// Ask the server what it is now (a `READONLY` reply on a standalone
    /// connection: a failover may have demoted it).
    Recheck,
}

/// How to make a new connection, and when one is needed.
pub(crate) trait Connect: Send + Sync + 'static {
    /// A new connection, checked to be one a cache can use.
    fn connect(&self) -> impl Future<Output = Result<MultiplexedConnection, Error>> + Send;

    /// The bound on one command, for the errors it reports.
    fn response_timeout(&self) -> Duration;

    /// The bound on one connection attempt.
    fn connect_timeout(&self) -> Duration;

    /// What an error from a command means for the connection.
    fn react(&self, err: &Error) -> Reaction;

    /// Whether [`REBUILD_AFTER_TIMEOUTS`] consecutive timeouts call for a new
    /// connection (the address may be gone without a word).
    fn rebuild_on_timeouts(&self) -> bool {
        false
    }

    /// Called after a [`Reaction::Recheck`] found the server is no longer a
    /// primary.
    fn demoted(&self, kind: ServerKind) {
        let _ = kind;
    }
}

/// A connection rebuilt in the background when it cannot recover by itself.
pub(crate) struct Managed<C> {
    /// `None` before the first connection, and once the last one broke.
    conn: ArcSwapOption<MultiplexedConnection>,
    /// Why the last connection attempt failed: what calls report while there
    /// is no connection (so that refused credentials count as such).
    failure: ArcSwapOption<redis::RedisError>,
    /// Woken when a connection is swapped in.
    swapped: tokio::sync::Notify,
    connector: C,
    /// A rebuild task is running.
    rebuilding: AtomicBool,
    /// A rebuild was asked for while one was running: run once more.
    again: AtomicBool,
    timeouts: AtomicU32,
    /// When the last rebuild (or a recheck) happened, in ms since `epoch`.
    last_rebuild_ms: AtomicU64,
    last_recheck_ms: AtomicU64,
    epoch: Instant,
}

impl<C: Connect> Managed<C> {
    /// A managed connection that starts with `conn` (`None`: not connected
    /// yet; [`rebuild`](Self::rebuild) makes the first one).
    pub(crate) fn new(conn: Option<MultiplexedConnection>, connector: C) -> Arc<Self> {
        Arc::new(Managed {
            conn: ArcSwapOption::new(conn.map(Arc::new)),
            failure: ArcSwapOption::empty(),
            swapped: tokio::sync::Notify::new(),
            connector,
            rebuilding: AtomicBool::new(false),
            again: AtomicBool::new(false),
            timeouts: AtomicU32::new(0),
            last_rebuild_ms: AtomicU64::new(0),
            last_recheck_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    /// The connection to send the next command through (a cheap clone).
    pub(crate) fn current(&self) -> redis::RedisResult<MultiplexedConnection> {
        match &*self.conn.load() {
            Some(conn) => Ok(MultiplexedConnection::clone(conn)),
            None => Err(match &*self.failure.load() {
                Some(failure) => redis::RedisError::clone(failure),
                None => redis::RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::NotConnected,
                    "not connected (the connection is being made in the background)",
                )),
            }),
        }
    }

    /// [`current`](Self::current), except that while the very first
    /// connection is being made (a lazily built cache) it waits for it, up to
    /// the connect timeout, as a command on a fresh connection would.
    pub(crate) async fn connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        if let Some(conn) = &*self.conn.load() {
            return Ok(MultiplexedConnection::clone(conn));
        }
        // Boxed: the wait would otherwise make every hit's future larger.
        Box::pin(self.wait_for_first()).await;
        self.current()
    }

    async fn wait_for_first(&self) {
        let first = self.last_rebuild_ms.load(Ordering::Relaxed) == 0
            && self.failure.load().is_none()
            && self.rebuilding.load(Ordering::Acquire);
        if !first {
            return;
        }
        let swapped = self.swapped.notified();
        tokio::pin!(swapped);
        swapped.as_mut().enable();
        if self.conn.load().is_none() && self.failure.load().is_none() {
            let _ = tokio::time::timeout(self.connector.connect_timeout(), swapped).await;
        }
    }

    pub(crate) fn connector(&self) -> &C {
        &self.connector
    }

    /// Returns after the next attempt to connect again, made or failed.
    pub(crate) async fn swapped(&self) {
        self.swapped.notified().await
    }

    /// Notes how a command ended; an error may start a rebuild or a recheck.
    pub(crate) fn observe<T>(self: &Arc<Self>, result: &Result<T, Error>) {
        let err = match result {
            Ok(_) => {
                if self.timeouts.load(Ordering::Relaxed) != 0 {
                    self.timeouts.store(0, Ordering::Relaxed);
                }
                return;
            }
            Err(err) => err,
        };
        if let Error::Timeout(_) = err {
            let timeouts = self.timeouts.fetch_add(1, Ordering::Relaxed) + 1;
            if timeouts >= REBUILD_AFTER_TIMEOUTS && self.connector.rebuild_on_timeouts() {
                self.rebuild_unless_settling();
            }
            return;
        }
        match self.connector.react(err) {
            Reaction::Nothing => {}
            Reaction::Rebuild => {
                if self.rebuild_unless_settling() && matches!(err, Error::Connection(_)) {
                    // The connection is gone: until the new one is made, calls
                    // fail at once with why, instead of on a dead socket.
                    self.conn.store(None);
                }
            }
            Reaction::Recheck => self.recheck(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A rebuild for a command's error: none when one is running or has
    /// just finished, since commands still in flight on the replaced
    /// connection keep failing for a moment.
    /// Whether it started one.
    fn rebuild_unless_settling(self: &Arc<Self>) -> bool {
        if self.rebuilding.load(Ordering::Acquire) {
            return false;
        }
        let last = self.last_rebuild_ms.load(Ordering::Relaxed);
        if last != 0 && self.now_ms().saturating_sub(last) < SETTLE.as_millis() as u64 {
            return false;
        }
        self.rebuild()
    }

    /// Builds a new connection in the background and swaps it in, retrying
    /// with backoff until one is made (or the cache is dropped). At most one
    /// rebuild runs at a time; asked for during one (a failover announced
    /// while the last one was being connected to), it runs once more after.
    /// Whether it started one.
    pub(crate) fn rebuild(self: &Arc<Self>) -> bool {
        if self.rebuilding.swap(true, Ordering::AcqRel) {
            self.again.store(true, Ordering::Release);
            return false;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.rebuilding.store(false, Ordering::Release);
            return false;
        };
        runtime.spawn(rebuild_loop(Arc::downgrade(self)));
        true
    }

    /// Asks the server what it is, at most once per [`RECHECK_EVERY`], and
    /// tells the connector when it is no longer a primary.
    fn recheck(self: &Arc<Self>) {
        let now = self.now_ms().max(1);
        let last = self.last_recheck_ms.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < RECHECK_EVERY.as_millis() as u64 {
            return;
        }
        if self
            .last_recheck_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Ok(conn) = self.current() else { return };
        let timeout = self.connector.response_timeout();
        let weak = Arc::downgrade(self);
        runtime.spawn(async move {
            let Ok(kind) = ask_server_kind(conn, timeout).await else {
                return;
            };
            if let Some(this) = weak.upgrade()
                && kind != ServerKind::Primary
                && kind != ServerKind::Unknown
            {
                this.connector.demoted(kind);
            }
        });
    }
}

async fn rebuild_loop<C: Connect>(weak: Weak<Managed<C>>) {
    let mut backoff = MIN_BACKOFF;
    let mut failures = 0u32;
    loop {
        let Some(this) = weak.upgrade() else { return };
        this.again.store(false, Ordering::Release);
        match this.connector.connect().await {
            Ok(conn) => {
                this.conn.store(Some(Arc::new(conn)));
                this.failure.store(None);
                this.swapped.notify_waiters();
                this.timeouts.store(0, Ordering::Relaxed);
                this.last_rebuild_ms
                    .store(this.now_ms().max(1), Ordering::Relaxed);
                if !this.again.swap(false, Ordering::AcqRel) {
                    this.rebuilding.store(false, Ordering::Release);
                    // Asked for between the check and the release: go on.
                    if !this.again.load(Ordering::Acquire)
                        || this.rebuilding.swap(true, Ordering::AcqRel)
                    {
                        return;
                    }
                }
                backoff = MIN_BACKOFF;
                failures = 0;
            }
            Err(err) => {
                let failure = match err.redis_error() {
                    Some(failure) => failure.clone(),
                    None => redis::RedisError::from(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        err.to_string(),
                    )),
                };
                this.failure.store(Some(Arc::new(failure)));
                this.swapped.notify_waiters();
                // The first failure, then about every half minute.
                if failures.is_multiple_of(16) {
                    crate::log::warning!(
                        error = %err,
                        "redis-memo: reconnecting failed; calls run uncached meanwhile and \
                         it is retried with backoff"
                    );
                }
                failures = failures.wrapping_add(1);
            }
        }
        drop(this);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
