//! The connection to a Redis Cluster, and its repair.
//!
//! redis-rs's cluster connection routes every command to the primary owning
//! its key's slot, follows `MOVED`/`ASK` and refreshes its slot map after a
//! failover. Under many concurrent calls at the moment a primary dies, its
//! slot refresh can stall, leaving every command to time out. So this handle
//! keeps the client it came from: after [`REBUILD_AFTER`] consecutive
//! connection failures or timeouts it connects again from the seeds in the
//! background (at most once per [`REBUILD_EVERY`]) and swaps the new
//! connection in; calls in the meantime fail open as usual.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;

use crate::error::Error;

/// Consecutive failures after which the connection is built again.
const REBUILD_AFTER: u32 = 3;
/// Least time between two rebuilds.
const REBUILD_EVERY: Duration = Duration::from_secs(2);

/// A cluster connection that rebuilds itself when it stops answering.
pub(crate) struct ClusterHandle {
    conn: ArcSwap<ClusterConnection>,
    client: ClusterClient,
    connect_timeout: Duration,
    failures: AtomicU32,
    rebuilding: AtomicBool,
    last_rebuild: Mutex<Option<Instant>>,
}

impl ClusterHandle {
    pub(crate) fn new(
        conn: ClusterConnection,
        client: ClusterClient,
        connect_timeout: Duration,
    ) -> Arc<Self> {
        Arc::new(ClusterHandle {
            conn: ArcSwap::from_pointee(conn),
            client,
            connect_timeout,
            failures: AtomicU32::new(0),
            rebuilding: AtomicBool::new(false),
            last_rebuild: Mutex::new(None),
        })
    }

    /// The connection to send the next command through (a cheap clone).
    pub(crate) fn current(&self) -> ClusterConnection {
        ClusterConnection::clone(&self.conn.load())
    }

    /// Notes how a command ended: a success clears the failure count; a
    /// connection failure or a timeout may start a rebuild.
    pub(crate) fn observe<T>(self: &Arc<Self>, result: &Result<T, Error>) {
        match result {
            Ok(_) => {
                if self.failures.load(Ordering::Relaxed) != 0 {
                    self.failures.store(0, Ordering::Relaxed);
                }
            }
            Err(Error::Timeout(_) | Error::Connection(_)) => {
                let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                if failures >= REBUILD_AFTER {
                    self.rebuild();
                }
            }
            Err(_) => {}
        }
    }

    fn rebuild(self: &Arc<Self>) {
        {
            let mut last = self.last_rebuild.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|at| at.elapsed() < REBUILD_EVERY) {
                return;
            }
            if self.rebuilding.swap(true, Ordering::AcqRel) {
                return;
            }
            *last = Some(Instant::now());
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.rebuilding.store(false, Ordering::Release);
            return;
        };
        let handle = Arc::clone(self);
        runtime.spawn(async move {
            let connect = handle.client.get_async_connection();
            if let Ok(Ok(conn)) = tokio::time::timeout(handle.connect_timeout, connect).await {
                handle.conn.store(Arc::new(conn));
                handle.failures.store(0, Ordering::Relaxed);
            }
            handle.rebuilding.store(false, Ordering::Release);
        });
    }
}
