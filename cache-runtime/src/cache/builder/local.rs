//! The local tier's side of the builder: the tier, and where its tracking
//! connections go on each topology.

use std::sync::Arc;

use super::CacheBuilder;
use crate::local::tracking::{self, Nodes, Settings, Tracker};
use crate::local::{Coherence, LocalTier};
use crate::store::Connection;

impl CacheBuilder {
    /// Sends the local tier's tracking connections to the server at `from`
    /// (`host:port`, as the cache would reach it: the URL's, or as `CLUSTER
    /// SLOTS` names a primary) to `to` instead, leaving the data connection
    /// as it is. For tests that put a fault between the tier and Redis (a
    /// relay that stops forwarding); not for production use.
    ///
    /// ```
    /// let builder = redis_memo::Cache::builder()
    ///     .url("redis://127.0.0.1:6379")
    ///     .local_cache(1 << 20)
    ///     .tracking_redirect("127.0.0.1:6379", "127.0.0.1:16379");
    /// # let _ = builder;
    /// ```
    #[doc(hidden)]
    pub fn tracking_redirect(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.tracking_redirects.push((from.into(), to.into()));
        self
    }

    /// The local tier, when `local_cache` is set, tracked through
    /// connections of its own to the servers behind `conn`: the standalone
    /// server, the primary the Sentinels name (following the data
    /// connection), every primary of a cluster.
    pub(super) fn local_tier(
        &self,
        conn: &Connection,
    ) -> (Option<Arc<LocalTier>>, Option<Tracker>) {
        let Some(max_bytes) = self.options.local_bytes else {
            return (None, None);
        };
        let tier = Arc::new(LocalTier::new(
            max_bytes,
            self.options.local_ttl,
            self.response_timeout,
            Coherence::Connecting,
        ));
        let nodes = match conn {
            Connection::Single(_) => self.tracking_seed.clone().map(Nodes::Single),
            Connection::Sentinel(handle) => Some(Nodes::Sentinel(Arc::downgrade(handle))),
            Connection::Cluster(handle) => self.tracking_seed.as_ref().map(|seed| Nodes::Cluster {
                handle: Arc::downgrade(handle),
                seed: seed.get_connection_info().clone(),
            }),
        };
        let Some(nodes) = nodes else {
            tier.set_coherence(Coherence::Bounded);
            return (Some(tier), None);
        };
        let settings = Settings {
            connect_timeout: self.connect_timeout,
            response_timeout: self.response_timeout,
            redirects: self.tracking_redirects.clone(),
        };
        let tracker = tracking::spawn(&tier, nodes, settings);
        (Some(tier), Some(tracker))
    }
}
