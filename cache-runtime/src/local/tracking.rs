//! Server-assisted client-side caching for the local tier, on every
//! topology: one tracking connection per server that holds keys (see
//! [`session`](super::session)), and a supervisor that knows which servers
//! those are and what the tier's coherence is from their states.
//!
//! ```text
//! which servers ([`Nodes`])                 one task per server (session.rs)
//!   standalone: the server                    connect, CLIENT TRACKING ON BCAST
//!   Sentinel: the primary the data            PREFIX ..., apply pushes, PING,
//!     connection uses (moved with it)         register new prefixes
//!   cluster: every primary (CLUSTER SLOTS,         │ its state
//!     looked at every LOOK_EVERY)                  ▼
//!          │ a server gone: its task ends   supervisor: every server tracking
//!          │ a new one: a task, Connecting    ── Tracking (tier cleared when it
//!          └────────────────────────────────►    turns on), prefixes covered
//!                                             some connecting ── Connecting
//!                                             refused ── Bounded (+ broadcast)
//! ```
//!
//! Whenever a server is not tracked (connecting, a lost or frozen connection,
//! a new primary after a failover or a resharding that the last look did not
//! know), the tier is cleared and its entries live at most `local_ttl`; when
//! every server is tracked again it is cleared once more (entries read
//! meanwhile were not tracked). So a change is either pushed to the tier, or
//! the tier is cleared within the time it takes to notice: at once for a
//! closed connection, `PING_EVERY` + the response timeout for one that stopped
//! answering, and on a cluster [`LOOK_EVERY`] + a connection for a new
//! primary (behind Sentinel, the data connection's own switch).

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::{AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, ProtocolVersion};
use tokio::sync::{mpsc, oneshot};

use super::session::{self, Reports, State};
use super::{Coherence, LocalTier};
use crate::store::{ClusterHandle, SentinelHandle, cluster_primaries};

/// How often the servers to track are looked for again (a cluster's
/// primaries, the primary behind Sentinel).
pub(crate) const LOOK_EVERY: Duration = Duration::from_secs(1);

/// Keeps the tracking tasks alive; dropping it (with the cache) ends them.
pub(crate) struct Tracker {
    _stop: oneshot::Sender<()>,
}

/// Which servers hold the keys, and so which to track.
pub(crate) enum Nodes {
    /// A standalone server, reached like this client.
    Single(redis::Client),
    /// The primary the data connection behind Sentinel is connected to.
    Sentinel(Weak<SentinelHandle>),
    /// Every primary of a cluster, reached like this seed (its TLS,
    /// credentials and db), at the address `CLUSTER SLOTS` gives.
    Cluster {
        handle: Weak<ClusterHandle>,
        seed: ConnectionInfo,
    },
}

/// How tracking connections are made.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
    /// Tracking connections to the first address (`host:port`) go to the
    /// second instead (tests: through a relay).
    pub(crate) redirects: Vec<(String, String)>,
}

/// Starts tracking for `tier` on `nodes`.
pub(crate) fn spawn(tier: &Arc<LocalTier>, nodes: Nodes, settings: Settings) -> Tracker {
    let (stop, stopped) = oneshot::channel();
    let tier = Arc::downgrade(tier);
    tokio::spawn(async move {
        tokio::select! {
            _ = stopped => {}
            () = supervise(tier, nodes, settings) => {}
        }
    });
    Tracker { _stop: stop }
}

/// One server's task, and what it last reported.
struct Child {
    id: u64,
    state: State,
    task: tokio::task::AbortHandle,
}

impl Drop for Child {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Keeps one task per server to track, and the tier's coherence in line
/// with their states, until the cache is dropped.
async fn supervise(tier: Weak<LocalTier>, nodes: Nodes, settings: Settings) {
    let (reports, mut reported) = mpsc::unbounded_channel();
    let mut children: HashMap<String, Child> = HashMap::new();
    let mut next_id = 0u64;
    let mut look = tokio::time::interval(LOOK_EVERY);
    look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // Reports first: a lost server must not wait for a look.
            biased;
            report = reported.recv() => {
                let Some((id, state)) = report else { return };
                if let Some(child) = children.values_mut().find(|c| c.id == id) {
                    child.state = state;
                }
                // Several reports at once: settle once, after all of them.
                while let Ok((id, state)) = reported.try_recv() {
                    if let Some(child) = children.values_mut().find(|c| c.id == id) {
                        child.state = state;
                    }
                }
                let Some(local) = tier.upgrade() else { return };
                settle(&local, &children);
                continue;
            }
            _ = look.tick() => {}
            () = nodes.switched() => {}
        }
        if let Some(servers) = nodes.servers(&settings).await {
            children.retain(|addr, _| servers.iter().any(|(a, _)| a == addr));
            for (addr, info) in servers {
                if children.contains_key(&addr) {
                    continue;
                }
                next_id += 1;
                let task = start(&tier, &addr, info, &settings, next_id, &reports);
                let child = Child {
                    id: next_id,
                    state: State::Connecting,
                    task,
                };
                children.insert(addr, child);
            }
        }
        let Some(local) = tier.upgrade() else { return };
        settle(&local, &children);
    }
}

/// Starts the task of the server at `addr`.
fn start(
    tier: &Weak<LocalTier>,
    addr: &str,
    info: ConnectionInfo,
    settings: &Settings,
    id: u64,
    reports: &Reports,
) -> tokio::task::AbortHandle {
    let info = settings.redirect(info);
    let resp3 = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(settings.connect_timeout))
        .set_response_timeout(Some(settings.response_timeout));
    let (tier, addr, reports) = (tier.clone(), addr.to_owned(), reports.clone());
    tokio::spawn(async move {
        match redis::Client::open(info.set_redis_settings(resp3)) {
            Ok(client) => session::run(tier, addr, client, config, id, reports).await,
            // What opened once for the data connection opens here too.
            Err(_) => drop(reports.send((id, State::Refused))),
        }
    })
    .abort_handle()
}

/// The tier's coherence from its servers' states: tracking when every one
/// tracks, connecting while one connects, bounded when one refuses.
fn settle(local: &LocalTier, children: &HashMap<String, Child>) {
    let states = || children.values().map(|child| child.state);
    if children.is_empty() || states().any(|s| s == State::Connecting) {
        local.set_broadcasting(false);
        local.set_coherence(Coherence::Connecting);
    } else if let Some(registered) = states()
        .map(|s| match s {
            State::Tracking(version) => Some(version),
            _ => None,
        })
        .collect::<Option<Vec<u64>>>()
    {
        local.set_broadcasting(false);
        local.set_coherence(Coherence::Tracking);
        local.cover(registered.into_iter().min().unwrap_or(0));
    } else {
        local.set_coherence(Coherence::Bounded);
        local.set_broadcasting(states().any(|s| s == State::Subscribed));
    }
}

impl Nodes {
    /// The servers to track now, by address (`host:port`), with how to
    /// reach each; `None` when that cannot be told now (tracking goes on
    /// where it is).
    async fn servers(&self, settings: &Settings) -> Option<Vec<(String, ConnectionInfo)>> {
        match self {
            Nodes::Single(client) => {
                let info = client.get_connection_info().clone();
                Some(vec![(info.addr().to_string(), info)])
            }
            Nodes::Sentinel(handle) => {
                let primary = handle.upgrade()?.connector().primary_client();
                Some(
                    primary
                        .map(|client| {
                            let info = client.get_connection_info().clone();
                            (info.addr().to_string(), info)
                        })
                        .into_iter()
                        .collect(),
                )
            }
            Nodes::Cluster { handle, seed } => {
                let conn = handle.upgrade()?.current();
                let asked = cluster_primaries(&conn);
                let primaries = tokio::time::timeout(settings.response_timeout * 2, asked)
                    .await
                    .ok()?
                    .ok()?;
                let servers = primaries
                    .into_iter()
                    .map(|(host, port)| (format!("{host}:{port}"), at(seed, &host, port)))
                    .collect();
                Some(servers)
            }
        }
    }

    /// Returns when the data connection behind Sentinel switched to another
    /// connection (maybe another primary); never elsewhere.
    async fn switched(&self) {
        if let Nodes::Sentinel(handle) = self
            && let Some(handle) = handle.upgrade()
        {
            return handle.swapped().await;
        }
        std::future::pending().await
    }
}

impl Settings {
    /// `info`, at the address its own is redirected to, if any.
    fn redirect(&self, info: ConnectionInfo) -> ConnectionInfo {
        let addr = info.addr().to_string();
        let to = self
            .redirects
            .iter()
            .find(|(from, _)| *from == addr)
            .and_then(|(_, to)| to.rsplit_once(':'))
            .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)));
        match to {
            Some((host, port)) => at(&info, host, port),
            None => info,
        }
    }
}

/// `info` at `host:port`, with its TLS settings.
fn at(info: &ConnectionInfo, host: &str, port: u16) -> ConnectionInfo {
    let addr = match info.addr() {
        ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host: host.to_owned(),
            port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        _ => ConnectionAddr::Tcp(host.to_owned(), port),
    };
    info.clone().set_addr(addr)
}
