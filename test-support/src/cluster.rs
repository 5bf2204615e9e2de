//! A real Redis Cluster per test: six `redis-server --cluster-enabled yes`
//! nodes (three primaries, three replicas) on free ports, each in its own
//! directory of one temporary directory, persistence off, joined with
//! `redis-cli --cluster create`, and killed when dropped.
//!
//! Starting, killing, restarting and the waits block the calling thread
//! (they poll with deadlines and panic with what they saw when one passes);
//! the connections are async.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use redis::cluster::ClusterClient;

use crate::process::{
    free_port, info_field, kill_child, log_tail, poll_until, query, server_binary,
    spawn_or_explain, wait_for_ping,
};

/// How long the cluster gets to form, or to settle after a change.
const SETTLE: Duration = Duration::from_secs(30);

/// Whether a node serves slots or copies a primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeRole {
    /// Serves a range of slots.
    Primary,
    /// Replicates a primary.
    Replica,
}

/// One node as the cluster describes it (`CLUSTER NODES`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    /// The node's port on 127.0.0.1.
    pub port: u16,
    /// `redis://127.0.0.1:{port}`.
    pub url: String,
    /// The 40-character node id.
    pub id: String,
    /// Primary or replica.
    pub role: NodeRole,
    /// For a replica, the id of its primary.
    pub primary_id: Option<String>,
    /// The slot ranges a primary serves, inclusive.
    pub slots: Vec<(u16, u16)>,
    /// Whether the cluster flags it as failed (`fail`).
    pub failed: bool,
}

/// One `redis-server` process of the cluster.
struct Node {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// A Redis Cluster of three primaries and three replicas for one test.
pub struct TestCluster {
    nodes: Vec<Node>,
    /// The slots each killed primary served when it was killed.
    killed_slots: HashMap<u16, Vec<(u16, u16)>>,
    _dir: tempfile::TempDir,
}

impl TestCluster {
    /// Starts six nodes, creates the cluster (one replica per primary) and
    /// waits until every node reports `cluster_state:ok` with all 16384
    /// slots assigned and every replica is in sync with its primary.
    pub fn start() -> TestCluster {
        // One cluster starts at a time in this process: a free port picked for
        // one cluster could otherwise be taken by a node of another starting
        // alongside, whose PING would then answer for it and whose cluster
        // `--cluster create` would join (two clusters merged into one).
        static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _starting = STARTING.lock().unwrap_or_else(|p| p.into_inner());
        let mut last_error = String::new();
        for _ in 0..3 {
            match Self::try_start() {
                Ok(cluster) => return cluster,
                Err(err) => last_error = err,
            }
        }
        panic!("{last_error}");
    }

    fn try_start() -> Result<TestCluster, String> {
        let binary = server_binary();
        let dir = tempfile::tempdir().expect("cannot create a temporary directory");
        let mut cluster = TestCluster {
            nodes: Vec::new(),
            killed_slots: HashMap::new(),
            _dir: dir,
        };
        for port in cluster_ports(6) {
            let node_dir = cluster._dir.path().join(format!("node-{port}"));
            std::fs::create_dir(&node_dir).expect("create a node directory");
            let spawned = node_command(&binary, port, &node_dir).spawn();
            let child = spawn_or_explain(&binary, spawned);
            cluster.nodes.push(Node {
                port,
                dir: node_dir,
                child: Some(child),
            });
        }
        for node in &mut cluster.nodes {
            // A node that exited (its port taken) must not be answered for by
            // another process on that port.
            let answered = wait_for_ping(node.port, Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(50));
            let exited = node
                .child
                .as_mut()
                .is_some_and(|child| matches!(child.try_wait(), Ok(Some(_))));
            if exited || !answered {
                return Err(format!(
                    "cluster node on port {} did not answer PING; its log ends:\n{}",
                    node.port,
                    log_tail(&node.dir.join("redis.log"))
                ));
            }
        }
        let cli = cli_binary();
        let output = Command::new(&cli)
            .args(["--cluster", "create"])
            .args(
                cluster
                    .nodes
                    .iter()
                    .map(|n| format!("127.0.0.1:{}", n.port)),
            )
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot run `{cli}` ({err}); the cluster tests need redis-cli, which comes \
                     with redis-server (`apt-get install redis-tools`, `brew install redis`), or \
                     REDIS_CLI pointing at it"
                )
            });
        if !output.status.success() {
            return Err(format!(
                "redis-cli --cluster create failed ({}):\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        cluster.wait_healthy();
        Ok(cluster)
    }

    /// `redis://127.0.0.1:{port}` for every node, running or not.
    pub fn seed_urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| url(n.port)).collect()
    }

    /// The ports of all six nodes, running or not.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// Every node, as the first running node that answers sees the cluster.
    pub fn nodes(&self) -> Vec<ClusterNode> {
        poll_until("a cluster node to answer CLUSTER NODES", SETTLE, || {
            let mut last = "no node is running".to_string();
            for port in self.running_ports() {
                match query::<String>(port, redis::cmd("CLUSTER").arg("NODES")) {
                    Ok(text) => return Ok(parse_nodes(&text)),
                    Err(err) => last = format!("CLUSTER NODES on {port}: {err}"),
                }
            }
            Err(last)
        })
    }

    /// The primaries that serve slots and are not flagged as failed, by port.
    pub fn primaries(&self) -> Vec<ClusterNode> {
        let mut primaries: Vec<ClusterNode> = self
            .nodes()
            .into_iter()
            .filter(|n| n.role == NodeRole::Primary && !n.failed && !n.slots.is_empty())
            .collect();
        primaries.sort_by_key(|n| n.port);
        primaries
    }

    /// The node on `port`, as the cluster describes it.
    pub fn node(&self, port: u16) -> ClusterNode {
        self.nodes()
            .into_iter()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
    }

    /// The primary serving `key`'s slot (`CLUSTER KEYSLOT`, then `CLUSTER SLOTS`).
    pub fn primary_for_key(&self, key: &str) -> ClusterNode {
        let port = self.running_ports()[0];
        let slot: u16 = query(port, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key))
            .unwrap_or_else(|err| panic!("CLUSTER KEYSLOT on {port}: {err}"));
        let owner = slot_owners(port)
            .unwrap_or_else(|err| panic!("CLUSTER SLOTS on {port}: {err}"))
            .into_iter()
            .find(|&((start, end), _)| (start..=end).contains(&slot))
            .map(|(_, owner)| owner)
            .unwrap_or_else(|| panic!("no primary serves slot {slot} (key {key:?})"));
        self.node(owner)
    }

    /// The slot of `key` (`CLUSTER KEYSLOT`).
    pub fn key_slot(&self, key: &str) -> u16 {
        let port = self.running_ports()[0];
        query(port, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key))
            .unwrap_or_else(|err| panic!("CLUSTER KEYSLOT on {port}: {err}"))
    }

    /// Every range of slots with the port of the primary serving it
    /// (`CLUSTER SLOTS`).
    pub fn slot_ranges(&self) -> Vec<((u16, u16), u16)> {
        let port = self.running_ports()[0];
        slot_owners(port).unwrap_or_else(|err| panic!("CLUSTER SLOTS on {port}: {err}"))
    }

    /// SIGKILLs the node on `port` and waits until it is gone. A primary's
    /// slots are remembered for [`wait_until_promoted`](Self::wait_until_promoted).
    pub fn kill(&mut self, port: u16) {
        let live = self.running_ports();
        let slots: Vec<(u16, u16)> = live
            .iter()
            .filter(|&&p| p != port)
            .find_map(|&p| slot_owners(p).ok())
            .unwrap_or_default()
            .into_iter()
            .filter(|&(_, owner)| owner == port)
            .map(|(range, _)| range)
            .collect();
        if !slots.is_empty() {
            self.killed_slots.insert(port, slots);
        }
        let node = self.node_mut(port);
        if let Some(child) = &mut node.child {
            kill_child(child);
        }
        node.child = None;
    }

    /// Starts the node on `port` again in its own directory, so that it
    /// rejoins with its `nodes.conf`, and waits until the cluster is healthy
    /// again (see [`wait_healthy`](Self::wait_healthy)).
    pub fn restart(&mut self, port: u16) {
        let binary = server_binary();
        let node = self.node_mut(port);
        if let Some(child) = &mut node.child {
            kill_child(child);
        }
        let mut started = false;
        for _ in 0..50 {
            let spawned = node_command(&binary, port, &node.dir).spawn();
            let mut child = spawn_or_explain(&binary, spawned);
            if wait_for_ping(port, Duration::from_secs(5)) {
                node.child = Some(child);
                started = true;
                break;
            }
            kill_child(&mut child);
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            started,
            "cluster node did not restart on port {port}; its log ends:\n{}",
            log_tail(&node.dir.join("redis.log"))
        );
        self.killed_slots.remove(&port);
        self.wait_healthy();
    }

    /// Waits until a running node other than `dead_primary` is primary for
    /// every slot `dead_primary` served when it was [killed](Self::kill),
    /// answers `ROLE` as master, and every running node reports
    /// `cluster_state:ok`. Returns the promoted node.
    pub fn wait_until_promoted(&self, dead_primary: u16) -> ClusterNode {
        let slots = self
            .killed_slots
            .get(&dead_primary)
            .unwrap_or_else(|| panic!("port {dead_primary} is not a primary this cluster killed"));
        let what = format!("a replica to take over the slots of the killed primary {dead_primary}");
        let port = poll_until(&what, SETTLE, || self.promoted(dead_primary, slots));
        self.node(port)
    }

    fn promoted(&self, dead: u16, slots: &[(u16, u16)]) -> Result<u16, String> {
        let mut new_owner = None;
        for port in self.running_ports() {
            let info: String = query(port, redis::cmd("CLUSTER").arg("INFO"))
                .map_err(|e| format!("CLUSTER INFO on {port}: {e}"))?;
            if info_field(&info, "cluster_state") != Some("ok") {
                return Err(format!("node {port} reports cluster_state not ok"));
            }
            let owners = slot_owners(port).map_err(|e| format!("CLUSTER SLOTS on {port}: {e}"))?;
            for &(start, _) in slots {
                let owner = owners
                    .iter()
                    .find(|&&((s, e), _)| (s..=e).contains(&start))
                    .map(|&(_, owner)| owner)
                    .ok_or_else(|| format!("node {port} sees no owner of slot {start}"))?;
                if owner == dead {
                    return Err(format!(
                        "node {port} still sees {dead} serving slot {start}"
                    ));
                }
                if *new_owner.get_or_insert(owner) != owner {
                    return Err(format!("nodes disagree on who serves slot {start}"));
                }
            }
        }
        let owner = new_owner.ok_or("no running node")?;
        if role(owner).as_deref() != Some("master") {
            return Err(format!("{owner} does not answer ROLE as master yet"));
        }
        Ok(owner)
    }

    /// Waits until every running node reports `cluster_state:ok`, all 16384
    /// slots assigned and served, and knows all six nodes, and every running
    /// replica's link to its primary is up.
    pub fn wait_healthy(&self) {
        poll_until("the test cluster to become healthy", SETTLE, || {
            self.healthy()
        });
    }

    fn healthy(&self) -> Result<(), String> {
        for port in self.running_ports() {
            let info: String = query(port, redis::cmd("CLUSTER").arg("INFO"))
                .map_err(|e| format!("CLUSTER INFO on {port}: {e}"))?;
            for (field, want) in [
                ("cluster_state", "ok".to_string()),
                ("cluster_slots_assigned", "16384".to_string()),
                ("cluster_slots_ok", "16384".to_string()),
                ("cluster_known_nodes", self.nodes.len().to_string()),
            ] {
                let got = info_field(&info, field);
                if got != Some(want.as_str()) {
                    return Err(format!("node {port} reports {field}:{got:?}, not {want}"));
                }
            }
            let replication: String = query(port, redis::cmd("INFO").arg("replication"))
                .map_err(|e| format!("INFO replication on {port}: {e}"))?;
            if info_field(&replication, "role") == Some("slave")
                && info_field(&replication, "master_link_status") != Some("up")
            {
                return Err(format!(
                    "replica {port} is not in sync with its primary yet"
                ));
            }
        }
        Ok(())
    }

    /// A plain redis-rs cluster connection, seeded with every running node,
    /// to read back what the cache wrote.
    pub async fn client(&self) -> redis::cluster_async::ClusterConnection {
        let seeds: Vec<String> = self.running_ports().into_iter().map(url).collect();
        ClusterClient::new(seeds)
            .expect("cluster seed URLs")
            .get_async_connection()
            .await
            .expect("plain cluster connection to the test cluster")
    }

    /// A plain connection to one node, not following redirections.
    pub async fn node_client(&self, port: u16) -> redis::aio::MultiplexedConnection {
        redis::Client::open(url(port))
            .expect("node URL")
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|err| panic!("plain connection to cluster node {port}: {err}"))
    }

    /// The keys matching `pattern` on each primary (SCAN with a plain
    /// connection to each), by port: where the keys live.
    pub async fn keys_by_primary(&self, pattern: &str) -> BTreeMap<u16, Vec<String>> {
        let mut found = BTreeMap::new();
        for primary in self.primaries() {
            let mut conn = self.node_client(primary.port).await;
            let mut keys = Vec::new();
            let mut cursor = 0u64;
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut conn)
                    .await
                    .unwrap_or_else(|err| panic!("SCAN on {}: {err}", primary.port));
                keys.extend(batch);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            keys.sort();
            found.insert(primary.port, keys);
        }
        found
    }

    /// Every key matching `pattern` on any primary, sorted.
    pub async fn keys_on_primaries(&self, pattern: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .keys_by_primary(pattern)
            .await
            .into_values()
            .flatten()
            .collect();
        keys.sort();
        keys
    }

    /// Waits until every primary's writes so far reached its replica
    /// (`WAIT 1` on each primary that has one), so that a failover loses nothing.
    pub async fn wait_replicated(&self) {
        let nodes = self.nodes();
        for primary in nodes
            .iter()
            .filter(|n| n.role == NodeRole::Primary && !n.failed)
        {
            let has_replica = nodes.iter().any(|n| {
                n.primary_id.as_deref() == Some(primary.id.as_str())
                    && !n.failed
                    && self.running_ports().contains(&n.port)
            });
            if !has_replica {
                continue;
            }
            // WAIT would only cover this connection's own writes (none): compare
            // the primary's replication offset with what its replica acknowledged.
            let mut conn = self.node_client(primary.port).await;
            let info = |conn: &mut redis::aio::MultiplexedConnection| {
                let mut conn = conn.clone();
                async move {
                    redis::cmd("INFO")
                        .arg("replication")
                        .query_async::<String>(&mut conn)
                        .await
                        .unwrap_or_default()
                }
            };
            let field = |text: &str, name: &str| -> Option<i64> {
                text.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .and_then(|v| v.trim().parse().ok())
            };
            let target = field(&info(&mut conn).await, "master_repl_offset:").unwrap_or(0);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                let text = info(&mut conn).await;
                let acked = text
                    .lines()
                    .filter(|l| l.starts_with("slave"))
                    .filter_map(|l| l.split(",offset=").nth(1))
                    .filter_map(|rest| rest.split(',').next()?.parse::<i64>().ok())
                    .any(|offset| offset >= target);
                if acked {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the replica of {} did not acknowledge its writes within 10s",
                    primary.port
                );
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }

    fn running_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
            .collect()
    }

    fn node_mut(&mut self, port: u16) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(child) = &mut node.child {
                kill_child(child);
            }
        }
    }
}

fn url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}")
}

fn cli_binary() -> String {
    std::env::var("REDIS_CLI").unwrap_or_else(|_| "redis-cli".into())
}

/// `n` distinct free ports whose cluster bus ports (port + 10000) are free too.
fn cluster_ports(n: usize) -> Vec<u16> {
    let mut ports: Vec<u16> = Vec::new();
    let mut tries = 0;
    while ports.len() < n {
        tries += 1;
        assert!(
            tries < 10_000,
            "no free ports for a test cluster on 127.0.0.1"
        );
        let port = free_port();
        if port > u16::MAX - 10_000 || ports.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            ports.push(port);
        }
    }
    ports
}

/// A cluster node: loopback only, no persistence, its own directory and log.
fn node_command(binary: &str, port: u16, dir: &Path) -> Command {
    let mut command = Command::new(binary);
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .args(["--cluster-enabled", "yes"])
        .args(["--cluster-config-file", "nodes.conf"])
        .args(["--cluster-node-timeout", "2000"])
        .args(["--logfile", "redis.log"])
        .arg("--dir")
        .arg(dir)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// `ROLE`'s first element: `master`, `slave`, or `None` when the node does not answer.
fn role(port: u16) -> Option<String> {
    let reply: Vec<redis::Value> = query(port, &redis::cmd("ROLE")).ok()?;
    match reply.first()? {
        redis::Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        redis::Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// `CLUSTER SLOTS` as asked of `port`: each slot range and its primary's port.
fn slot_owners(port: u16) -> redis::RedisResult<Vec<((u16, u16), u16)>> {
    let reply: Vec<redis::Value> = query(port, redis::cmd("CLUSTER").arg("SLOTS"))?;
    let mut owners = Vec::new();
    for entry in reply {
        let redis::Value::Array(fields) = entry else {
            continue;
        };
        let (Some(start), Some(end), Some(redis::Value::Array(primary))) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            continue;
        };
        let start: u16 = redis::from_redis_value(start.clone())?;
        let end: u16 = redis::from_redis_value(end.clone())?;
        let Some(primary_port) = primary.get(1) else {
            continue;
        };
        owners.push(((start, end), redis::from_redis_value(primary_port.clone())?));
    }
    Ok(owners)
}

/// Parses `CLUSTER NODES`: `<id> <ip:port@cport> <flags> <primary> <ping>
/// <pong> <epoch> <link> <slot>...`.
fn parse_nodes(text: &str) -> Vec<ClusterNode> {
    let mut nodes = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 8 {
            continue;
        }
        let Some(port) = fields[1]
            .split('@')
            .next()
            .and_then(|addr| addr.rsplit(':').next())
            .and_then(|port| port.parse::<u16>().ok())
        else {
            continue;
        };
        let flags: Vec<&str> = fields[2].split(',').collect();
        let role = if flags.contains(&"master") {
            NodeRole::Primary
        } else {
            NodeRole::Replica
        };
        let slots = fields[8..]
            .iter()
            .filter(|s| !s.starts_with('['))
            .filter_map(|range| {
                let (start, end) = range.split_once('-').unwrap_or((range, range));
                Some((start.parse().ok()?, end.parse().ok()?))
            })
            .collect();
        nodes.push(ClusterNode {
            port,
            url: url(port),
            id: fields[0].to_string(),
            role,
            primary_id: (fields[3] != "-").then(|| fields[3].to_string()),
            slots,
            failed: flags.contains(&"fail"),
        });
    }
    nodes.sort_by_key(|n| n.port);
    nodes
}
