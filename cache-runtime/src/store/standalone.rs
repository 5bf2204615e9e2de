//! The connection to a standalone server: a redis-rs `MultiplexedConnection`,
//! built again when it breaks (see [`Managed`]).

use std::time::Duration;

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;

use super::managed::{Connect, Managed, Reaction};
use super::server::ServerKind;
use crate::error::Error;

/// A standalone server's connection.
pub(crate) type StandaloneHandle = Managed<Standalone>;

/// How to connect to a standalone server again.
pub(crate) struct Standalone {
    client: redis::Client,
    config: AsyncConnectionConfig,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl Standalone {
    pub(crate) fn new(
        client: redis::Client,
        config: AsyncConnectionConfig,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Self {
        Standalone {
            client,
            config,
            connect_timeout,
            response_timeout,
        }
    }
}

impl Connect for Standalone {
    async fn connect(&self) -> Result<MultiplexedConnection, Error> {
        let connect = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config);
        match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(err)) if err.is_timeout() => Err(Error::Timeout(self.connect_timeout)),
            Ok(Err(err)) => Err(Error::from_connect(err)),
            Err(_) => Err(Error::Timeout(self.connect_timeout)),
        }
    }

    fn response_timeout(&self) -> Duration {
        self.response_timeout
    }

    fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// A dropped or refused connection, or refused credentials (a rotated
    /// password, a re-created user), needs a new connection. A `READONLY`
    /// reply means the server may have been demoted.
    fn react(&self, err: &Error) -> Reaction {
        if matches!(err, Error::Connection(_)) || err.is_auth_failure() {
            Reaction::Rebuild
        } else if err.is_read_only() {
            Reaction::Recheck
        } else {
            Reaction::Nothing
        }
    }

    fn demoted(&self, kind: ServerKind) {
        if kind == ServerKind::Replica {
            crate::log::warning!(
                "redis-memo: the server this cache connects to has become a read-only replica \
                 (a failover?): writes fail and reads may be stale until the URL names the \
                 primary again; when Sentinel manages it, connect with Cache::connect_sentinel \
                 (or CacheBuilder::sentinel) so the cache follows failovers"
            );
        } else if let Some(err) = kind.refusal() {
            crate::log::warning!(error = %err, "redis-memo: the server this cache connects to has changed kind");
        }
    }
}
