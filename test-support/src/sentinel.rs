//! A real Redis Sentinel setup per test: one primary, one replica and three
//! sentinels (quorum 2) on free ports, each in its own directory of one
//! temporary directory, persistence off, killed when dropped.
//!
//! Starting, killing, failing over and the waits block the calling thread
//! (they poll with deadlines and panic with what they saw when one passes);
//! the connections are async.
//!
//! [`TestSentinel::start_tls`] makes the data nodes serve TLS too (certificates
//! from [`TestCerts`]), replicate over it and be monitored through it, so that
//! the sentinels name their TLS ports; their plain ports stay open for the
//! test's own checks, and the sentinels stay plain.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::TestCerts;
use crate::process::{
    free_port, info_field, kill_child, log_tail, poll_until, query, server_binary,
    spawn_or_explain, wait_for_ping,
};

/// How long the sentinels get to agree, or a failover to finish.
const SETTLE: Duration = Duration::from_secs(30);

/// The name the sentinels monitor the primary under.
const SERVICE: &str = "redis-memo-test";

/// One process: a data node or a sentinel.
struct Process {
    port: u16,
    /// A data node's TLS port, when it serves TLS.
    tls_port: Option<u16>,
    dir: PathBuf,
    child: Option<Child>,
}

/// A primary, its replica and three sentinels watching them, for one test.
pub struct TestSentinel {
    data: Vec<Process>,
    sentinels: Vec<Process>,
    certs: Option<TestCerts>,
    _dir: tempfile::TempDir,
}

impl TestSentinel {
    /// Starts the primary, the replica (`--replicaof` the primary) and three
    /// sentinels, and waits until every sentinel reports the primary, knows
    /// the replica in sync with it, and knows the two other sentinels.
    pub fn start() -> TestSentinel {
        Self::start_with(None)
    }

    /// Like [`start`](Self::start), but the data nodes also serve TLS with
    /// fresh [`TestCerts`] (no client certificate required), replicate over
    /// it, and the sentinels monitor them through it: the ports the sentinels
    /// name ([`primary_port`](Self::primary_port), ...) are TLS ports, for
    /// `rediss://` clients trusting [`certs`](Self::certs)' CA.
    ///
    /// Panics when the installed `redis-server` has no TLS; check
    /// [`tls_supported`](crate::tls_supported) first to skip instead.
    pub fn start_tls() -> TestSentinel {
        Self::start_with(Some(TestCerts::generate()))
    }

    fn start_with(certs: Option<TestCerts>) -> TestSentinel {
        let binary = server_binary();
        let dir = tempfile::tempdir().expect("cannot create a temporary directory");
        let mut setup = TestSentinel {
            data: Vec::new(),
            sentinels: Vec::new(),
            certs,
            _dir: dir,
        };
        let mut taken = Vec::new();
        let primary = setup.spawn_data(&binary, &mut taken, &[]);
        let primary_port = primary.known_port();
        setup.data.push(primary);
        let replicaof = ["--replicaof", "127.0.0.1", &primary_port.to_string()].map(String::from);
        let replica = setup.spawn_data(&binary, &mut taken, &replicaof);
        let replica_port = replica.port;
        setup.data.push(replica);
        wait_until("the replica to sync with the primary", || {
            let info: String = query(replica_port, redis::cmd("INFO").arg("replication"))
                .map_err(|e| e.to_string())?;
            match info_field(&info, "master_link_status") {
                Some("up") => Ok(()),
                other => Err(format!("master_link_status:{other:?}")),
            }
        });
        for _ in 0..3 {
            let port = distinct_free_port(&taken);
            taken.push(port);
            let sentinel = setup.spawn_sentinel(&binary, port, primary_port);
            setup.sentinels.push(sentinel);
        }
        wait_until("the sentinels to agree on the setup", || {
            setup.agreed(primary_port)
        });
        setup
    }

    fn spawn_data(&self, binary: &str, taken: &mut Vec<u16>, extra: &[String]) -> Process {
        let port = distinct_free_port(taken);
        taken.push(port);
        let tls_port = self.certs.as_ref().map(|_| {
            let port = distinct_free_port(taken);
            taken.push(port);
            port
        });
        let dir = self._dir.path().join(format!("node-{port}"));
        std::fs::create_dir(&dir).expect("create a node directory");
        let spawned = Command::new(binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--logfile", "redis.log"])
            .arg("--dir")
            .arg(&dir)
            .args(self.tls_args(tls_port))
            .args(extra)
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = spawn_or_explain(binary, spawned);
        let process = Process {
            port,
            tls_port,
            dir,
            child: Some(child),
        };
        process.wait_for_ping();
        process
    }

    /// A data node's TLS options: serve TLS on `tls_port`, and replicate over it.
    fn tls_args(&self, tls_port: Option<u16>) -> Vec<String> {
        let (Some(certs), Some(tls_port)) = (&self.certs, tls_port) else {
            return Vec::new();
        };
        let path = |p: &std::path::Path| p.display().to_string();
        vec![
            "--tls-port".into(),
            tls_port.to_string(),
            "--tls-cert-file".into(),
            path(&certs.server.cert_path),
            "--tls-key-file".into(),
            path(&certs.server.key_path),
            "--tls-ca-cert-file".into(),
            path(&certs.ca.cert_path),
            "--tls-auth-clients".into(),
            "no".into(),
            "--tls-replication".into(),
            "yes".into(),
        ]
    }

    fn spawn_sentinel(&self, binary: &str, port: u16, primary_port: u16) -> Process {
        let dir = self._dir.path().join(format!("sentinel-{port}"));
        std::fs::create_dir(&dir).expect("create a sentinel directory");
        let config = dir.join("sentinel.conf");
        // With TLS, the sentinel talks to the data nodes over it.
        let tls = self.certs.as_ref().map_or(String::new(), |certs| {
            format!(
                "tls-replication yes\n\
                 tls-cert-file {}\n\
                 tls-key-file {}\n\
                 tls-ca-cert-file {}\n",
                certs.client.cert_path.display(),
                certs.client.key_path.display(),
                certs.ca.cert_path.display(),
            )
        });
        std::fs::write(
            &config,
            format!(
                "port {port}\n\
                 bind 127.0.0.1\n\
                 dir {dir}\n\
                 logfile redis.log\n\
                 {tls}\
                 sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 2\n\
                 sentinel down-after-milliseconds {SERVICE} 1000\n\
                 sentinel failover-timeout {SERVICE} 5000\n",
                dir = dir.display()
            ),
        )
        .expect("write a sentinel config");
        let spawned = Command::new(binary)
            .arg(&config)
            .arg("--sentinel")
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = spawn_or_explain(binary, spawned);
        let process = Process {
            port,
            tls_port: None,
            dir,
            child: Some(child),
        };
        process.wait_for_ping();
        process
    }

    fn agreed(&self, primary_port: u16) -> Result<(), String> {
        let replica_port = self.other_data_port(primary_port);
        for sentinel in self.running(&self.sentinels) {
            let reported = primary_of(sentinel).map_err(|e| format!("sentinel {sentinel}: {e}"))?;
            if reported != Some(primary_port) {
                return Err(format!("sentinel {sentinel} reports primary {reported:?}"));
            }
            let replicas = sentinel_table(sentinel, "REPLICAS")?;
            let in_sync = replicas.iter().any(|r| {
                field(r, "port") == Some(&replica_port.to_string())
                    && field(r, "master-link-status") == Some("ok")
                    && !field(r, "flags").unwrap_or("").contains("down")
                    && !field(r, "flags").unwrap_or("").contains("disconnected")
            });
            if !in_sync {
                return Err(format!(
                    "sentinel {sentinel} does not see replica {replica_port} in sync"
                ));
            }
            let others = sentinel_table(sentinel, "SENTINELS")?.len();
            let want = self.running(&self.sentinels).len() - 1;
            if others < want {
                return Err(format!(
                    "sentinel {sentinel} knows {others} other sentinels"
                ));
            }
        }
        Ok(())
    }

    /// `redis://127.0.0.1:{port}` for every sentinel, running or not.
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels.iter().map(|s| url(s.port)).collect()
    }

    /// The sentinels' ports.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(|s| s.port).collect()
    }

    /// The name the sentinels monitor the primary under.
    pub fn service_name(&self) -> &str {
        SERVICE
    }

    /// The certificates of a setup started with [`start_tls`](Self::start_tls).
    pub fn certs(&self) -> Option<&TestCerts> {
        self.certs.as_ref()
    }

    /// The plain port of the data node the sentinels know as `port` (its
    /// TLS port in a [`start_tls`](Self::start_tls) setup), for plain checks.
    pub fn plain_port(&self, port: u16) -> u16 {
        self.data
            .iter()
            .find(|d| d.known_port() == port)
            .map_or(port, |d| d.port)
    }

    /// The current primary's port, as the first running sentinel that answers reports it.
    pub fn primary_port(&self) -> u16 {
        let mut last = String::new();
        for sentinel in self.running(&self.sentinels) {
            match primary_of(sentinel) {
                Ok(Some(port)) => return port,
                Ok(None) => last = format!("sentinel {sentinel} knows no primary"),
                Err(err) => last = format!("sentinel {sentinel}: {err}"),
            }
        }
        panic!("no sentinel reported the primary ({last})");
    }

    /// The data node that is not the current [primary](Self::primary_port).
    pub fn replica_port(&self) -> u16 {
        self.other_data_port(self.primary_port())
    }

    /// The ports of the two data nodes, as the sentinels know them, the
    /// first started as primary.
    pub fn data_ports(&self) -> Vec<u16> {
        self.data.iter().map(Process::known_port).collect()
    }

    /// SIGKILLs the data node or sentinel on `port` and waits until it is gone.
    pub fn kill(&mut self, port: u16) {
        let process = self
            .data
            .iter_mut()
            .chain(self.sentinels.iter_mut())
            .find(|p| p.port == port || p.tls_port == Some(port))
            .unwrap_or_else(|| panic!("no node or sentinel on port {port}"));
        if let Some(child) = &mut process.child {
            kill_child(child);
        }
        process.child = None;
    }

    /// `SENTINEL FAILOVER` on the first running sentinel (retried while the
    /// sentinel has no suitable replica yet or another failover is in
    /// progress); returns at once, see [`wait_for_primary_change`](Self::wait_for_primary_change).
    pub fn failover(&self) {
        let sentinel = self.running(&self.sentinels)[0];
        wait_until("SENTINEL FAILOVER to be accepted", || {
            query::<String>(
                sentinel,
                redis::cmd("SENTINEL").arg("FAILOVER").arg(SERVICE),
            )
            .map(drop)
            .map_err(|e| format!("sentinel {sentinel}: {e}"))
        });
    }

    /// Waits until every running sentinel reports a primary other than
    /// `old_port` and that node answers `ROLE` as master. Returns its port.
    pub fn wait_for_primary_change(&self, old_port: u16) -> u16 {
        wait_until("the sentinels to report a new primary", || {
            let mut reported = None;
            for sentinel in self.running(&self.sentinels) {
                let port = primary_of(sentinel)
                    .map_err(|e| format!("sentinel {sentinel}: {e}"))?
                    .ok_or_else(|| format!("sentinel {sentinel} knows no primary"))?;
                if port == old_port {
                    return Err(format!("sentinel {sentinel} still reports {old_port}"));
                }
                if *reported.get_or_insert(port) != port {
                    return Err("the sentinels disagree on the primary".into());
                }
            }
            let port = reported.ok_or("no sentinel is running")?;
            let role: Vec<redis::Value> = query(self.plain_port(port), &redis::cmd("ROLE"))
                .map_err(|e| format!("ROLE on {port}: {e}"))?;
            match role.first() {
                Some(redis::Value::BulkString(b)) if b == b"master" => Ok(port),
                other => Err(format!("{port} answers ROLE with {other:?}")),
            }
        })
    }

    /// A plain connection to a data node or a sentinel (a data node's plain
    /// port when given its TLS port). A node changing role (a demoted
    /// primary) may reset new connections for a moment: retried for up to 10 s.
    pub async fn node_client(&self, port: u16) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(url(self.plain_port(port))).expect("node URL");
        let mut last = None;
        for _ in 0..100 {
            match client.get_multiplexed_async_connection().await {
                Ok(conn) => return conn,
                Err(err) => last = Some(err),
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("plain connection to {port}: {last:?}")
    }

    fn other_data_port(&self, port: u16) -> u16 {
        self.data
            .iter()
            .map(Process::known_port)
            .find(|&p| p != port)
            .expect("two data nodes")
    }

    fn running(&self, processes: &[Process]) -> Vec<u16> {
        processes
            .iter()
            .filter(|p| p.child.is_some())
            .map(|p| p.port)
            .collect()
    }
}

impl Process {
    /// The port the sentinels know this node by.
    fn known_port(&self) -> u16 {
        self.tls_port.unwrap_or(self.port)
    }

    fn wait_for_ping(&self) {
        assert!(
            wait_for_ping(self.port, Duration::from_secs(10)),
            "redis-server on port {} did not answer PING; its log ends:\n{}",
            self.port,
            log_tail(&self.dir.join("redis.log"))
        );
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            kill_child(child);
        }
    }
}

impl Drop for TestSentinel {
    fn drop(&mut self) {
        // The sentinels first, so that none of them fails over a dying primary.
        self.sentinels.clear();
        self.data.clear();
    }
}

fn url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}")
}

fn distinct_free_port(taken: &[u16]) -> u16 {
    loop {
        let port = free_port();
        if !taken.contains(&port) {
            return port;
        }
    }
}

fn wait_until<T>(what: &str, check: impl FnMut() -> Result<T, String>) -> T {
    poll_until(what, SETTLE, check)
}

/// `SENTINEL GET-MASTER-ADDR-BY-NAME`: the primary's port, if the sentinel knows one.
fn primary_of(sentinel: u16) -> redis::RedisResult<Option<u16>> {
    let addr: Option<(String, u16)> = query(
        sentinel,
        redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(SERVICE),
    )?;
    Ok(addr.map(|(_, port)| port))
}

/// `SENTINEL REPLICAS` or `SENTINEL SENTINELS`: one list of field-value pairs per entry.
fn sentinel_table(sentinel: u16, what: &str) -> Result<Vec<Vec<(String, String)>>, String> {
    let rows: Vec<Vec<String>> = query(sentinel, redis::cmd("SENTINEL").arg(what).arg(SERVICE))
        .map_err(|e| format!("SENTINEL {what} on {sentinel}: {e}"))?;
    Ok(rows
        .into_iter()
        .map(|row| {
            row.chunks(2)
                .filter_map(|pair| match pair {
                    [k, v] => Some((k.clone(), v.clone())),
                    _ => None,
                })
                .collect()
        })
        .collect())
}

fn field<'a>(row: &'a [(String, String)], name: &str) -> Option<&'a str> {
    row.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}
