//! The connection to the primary a set of Sentinels names.
//!
//! redis-rs's `SentinelClient` asks the sentinels for the service's primary
//! and checks with `ROLE` that the node it names is one; a multiplexed
//! connection to that node then carries the commands. A failover retires
//! that address, so the connection is [`Managed`]: a `READONLY` reply (the
//! node was demoted), a dropped connection, repeated timeouts or an
//! authentication failure make it ask the sentinels again in the background
//! and swap in a connection to the primary they name now, checked with `ROLE`
//! too. A task subscribed to `+switch-master` on one sentinel at a time
//! starts the same re-resolution as soon as a failover ends, before any
//! command notices. Calls in the meantime fail open.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use redis::sentinel::SentinelClient;

use super::managed::{Connect, Managed, Reaction};
use super::server::{ServerKind, ask_server_kind};
use crate::error::Error;

/// The connection to the primary of a Sentinel-managed service.
pub(crate) type SentinelHandle = Managed<SentinelConnector>;

/// How to find the primary and connect to it.
pub(crate) struct SentinelConnector {
    resolver: tokio::sync::Mutex<SentinelClient>,
    service: String,
    /// One client per Sentinel, to ask them why no primary was found.
    sentinels: Vec<redis::Client>,
    config: AsyncConnectionConfig,
    connect_timeout: Duration,
    response_timeout: Duration,
    /// `host:port` of the primary connected to, for the logs.
    primary: Mutex<Option<String>>,
    /// How the primary connected to was reached: the local tier tracks it.
    primary_client: Mutex<Option<redis::Client>>,
    /// Ends the `+switch-master` watcher with the connection.
    watcher: Mutex<Option<tokio::task::AbortHandle>>,
}

impl SentinelConnector {
    pub(crate) fn new(
        resolver: SentinelClient,
        service: String,
        sentinels: Vec<redis::Client>,
        config: AsyncConnectionConfig,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Self {
        SentinelConnector {
            resolver: tokio::sync::Mutex::new(resolver),
            service,
            sentinels,
            config,
            connect_timeout,
            response_timeout,
            primary: Mutex::new(None),
            primary_client: Mutex::new(None),
            watcher: Mutex::new(None),
        }
    }

    /// How the primary of the last connection made was reached (`None`
    /// before the first).
    pub(crate) fn primary_client(&self) -> Option<redis::Client> {
        self.primary_client
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Asks the sentinels for the primary: a client for it, and its address.
    async fn resolve(&self) -> Result<(redis::Client, String), Error> {
        let resolve = async {
            let mut resolver = self.resolver.lock().await;
            resolver.async_get_client().await
        };
        // Up to three sentinels are asked, and the node each names is checked.
        let bound = self.connect_timeout * 2;
        let client = match tokio::time::timeout(bound, resolve).await {
            Ok(Ok(client)) => client,
            Ok(Err(err)) => return Err(self.resolution_error(err).await),
            Err(_) => return Err(Error::Timeout(bound)),
        };
        let addr = client.get_connection_info().addr().to_string();
        Ok((client, addr))
    }

    async fn resolution_error(&self, err: redis::RedisError) -> Error {
        match err.kind() {
            redis::ErrorKind::InvalidClientConfig
                if err.to_string().contains("does not point to a sentinel") =>
            {
                Error::WrongServer {
                    found: "not a Sentinel",
                    advice: "connect_sentinel takes the addresses of the Sentinels (port 26379 \
                             by default), not of Redis itself; for a standalone server use \
                             Cache::connect",
                }
            }
            redis::ErrorKind::MasterNameNotFoundBySentinel => Error::NoPrimary {
                service: self.service.clone(),
                advice: if self.known().await == Some(false) {
                    "no Sentinel monitors a service of this name; give the name of `sentinel \
                     monitor <name> ...` in sentinel.conf"
                } else {
                    "the Sentinels know the service, but the primary they name is down or does \
                     not answer ROLE as master (a failover in progress?); a lazy cache \
                     (CacheBuilder::build_lazy) connects by itself when it ends"
                },
            },
            _ => Error::from_connect(err),
        }
    }

    /// Whether the first Sentinel that answers monitors the service
    /// (`SENTINEL GET-MASTER-ADDR-BY-NAME`); `None` when none answers.
    async fn known(&self) -> Option<bool> {
        let mut ask = redis::cmd("SENTINEL");
        ask.arg("GET-MASTER-ADDR-BY-NAME").arg(&self.service);
        for sentinel in &self.sentinels {
            let asked = async {
                let mut conn = sentinel.get_multiplexed_async_connection().await?;
                ask.query_async::<Option<(String, u16)>>(&mut conn).await
            };
            if let Ok(Ok(addr)) = tokio::time::timeout(self.connect_timeout, asked).await {
                return Some(addr.is_some());
            }
        }
        None
    }
}

impl Connect for SentinelConnector {
    async fn connect(&self) -> Result<MultiplexedConnection, Error> {
        let (client, addr) = self.resolve().await?;
        let connect = client.get_multiplexed_async_connection_with_config(&self.config);
        let conn = match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(err)) => return Err(Error::from_connect(err)),
            Err(_) => return Err(Error::Timeout(self.connect_timeout)),
        };
        // The sentinels' answer may be late: the node must say it is the primary.
        match ask_server_kind(conn.clone(), self.response_timeout).await? {
            ServerKind::Primary | ServerKind::Unknown => {}
            ServerKind::Replica => {
                return Err(Error::NoPrimary {
                    service: self.service.clone(),
                    advice: "the node the Sentinels name is a replica (a failover in progress?)",
                });
            }
            kind => {
                return Err(kind.refusal().unwrap_or(Error::NoPrimary {
                    service: self.service.clone(),
                    advice: "the node the Sentinels name is not a standalone primary",
                }));
            }
        }
        *self
            .primary_client
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(client);
        let mut primary = self.primary.lock().unwrap_or_else(|e| e.into_inner());
        if primary.as_deref() != Some(addr.as_str()) {
            crate::log::info!(
                service = %self.service,
                primary = %addr,
                "redis-memo: caching in the primary the Sentinels name"
            );
            *primary = Some(addr);
        }
        Ok(conn)
    }

    fn response_timeout(&self) -> Duration {
        self.response_timeout
    }

    fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Any sign that the node is no longer the reachable primary: ask the
    /// sentinels again.
    fn react(&self, err: &Error) -> Reaction {
        if matches!(err, Error::Connection(_)) || err.is_read_only() || err.is_auth_failure() {
            Reaction::Rebuild
        } else {
            Reaction::Nothing
        }
    }

    fn rebuild_on_timeouts(&self) -> bool {
        true
    }
}

impl Drop for SentinelConnector {
    fn drop(&mut self) {
        if let Some(watcher) = self
            .watcher
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            watcher.abort();
        }
    }
}

/// Starts the task that re-resolves the primary on `+switch-master` for
/// `handle`'s service, through `sentinels` (one at a time; the next when one
/// goes away). It ends with the handle.
pub(crate) fn watch_failovers(handle: &Arc<SentinelHandle>, sentinels: Vec<redis::Client>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let connector = handle.connector();
    let task = runtime.spawn(watch(
        Arc::downgrade(handle),
        sentinels,
        connector.service.clone(),
        connector.connect_timeout,
    ));
    *connector.watcher.lock().unwrap_or_else(|e| e.into_inner()) = Some(task.abort_handle());
}

async fn watch(
    handle: Weak<SentinelHandle>,
    sentinels: Vec<redis::Client>,
    service: String,
    connect_timeout: Duration,
) {
    loop {
        for sentinel in &sentinels {
            let subscribed = async {
                let mut pubsub = sentinel.get_async_pubsub().await?;
                pubsub.subscribe("+switch-master").await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            let Ok(Ok(mut pubsub)) = tokio::time::timeout(connect_timeout, subscribed).await else {
                continue;
            };
            let mut messages = pubsub.on_message();
            // `<service> <old-ip> <old-port> <new-ip> <new-port>`
            while let Some(message) = messages.next().await {
                let payload: String = message.get_payload().unwrap_or_default();
                if payload.split(' ').next() != Some(service.as_str()) {
                    continue;
                }
                let Some(handle) = handle.upgrade() else {
                    return;
                };
                crate::log::info!(
                    service = %service,
                    event = %payload,
                    "redis-memo: a Sentinel announced a new primary; reconnecting"
                );
                handle.rebuild();
            }
            if handle.strong_count() == 0 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        if handle.strong_count() == 0 {
            return;
        }
    }
}
