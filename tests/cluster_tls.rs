//! A Redis Cluster that speaks only TLS (`tls-port`, `tls-cluster yes`),
//! with certificates from a CA the test generates: `tls_ca_certificate`
//! applies to every node of `cluster_nodes`, not only the seed.
//!
//! Skipped, with a message, when the installed redis-server has no TLS.

use redis_memo_test_support as support;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use redis_memo::{Cache, Error, cached};
use support::TestCerts;

/// Three TLS-only primaries in one cluster, killed on drop.
struct TlsCluster {
    ports: Vec<u16>,
    children: Vec<Child>,
    certs: TestCerts,
    _dir: tempfile::TempDir,
}

impl Drop for TlsCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

impl TlsCluster {
    fn start() -> TlsCluster {
        let certs = TestCerts::generate();
        let dir = tempfile::tempdir().expect("temporary directory");
        // Cluster bus ports are the TLS port + 10000: keep them below 65536.
        let ports: Vec<u16> = (0..3)
            .map(|_| {
                loop {
                    let port = free_port();
                    if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
                        break port;
                    }
                }
            })
            .collect();
        let mut children = Vec::new();
        for port in &ports {
            let node_dir = dir.path().join(format!("node-{port}"));
            std::fs::create_dir(&node_dir).unwrap();
            let child = Command::new("redis-server")
                .args(certs.server_args(*port))
                .args(["--tls-cluster", "yes", "--tls-replication", "yes"])
                .args(["--tls-auth-clients", "no"])
                // A node connecting to another over the bus shows a client
                // certificate, which the bus always checks.
                .arg("--tls-client-cert-file")
                .arg(&certs.client.cert_path)
                .arg("--tls-client-key-file")
                .arg(&certs.client.key_path)
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                ])
                .args(["--save", "", "--appendonly", "no", "--logfile", "redis.log"])
                .arg("--dir")
                .arg(&node_dir)
                .current_dir(&node_dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start redis-server");
            children.push(child);
        }
        let cluster = TlsCluster {
            ports,
            children,
            certs,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let created = cluster
                .cli_within(Duration::from_secs(20))
                .args(["--cluster", "create"])
                .args(cluster.ports.iter().map(|p| format!("127.0.0.1:{p}")))
                .args(["--cluster-yes"])
                .output()
                .expect("run redis-cli");
            if created.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "redis-cli --cluster create over TLS failed: {}{}\n{}",
                String::from_utf8_lossy(&created.stdout),
                String::from_utf8_lossy(&created.stderr),
                cluster.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        loop {
            let ok = cluster.ports.iter().all(|port| {
                let info = cluster
                    .cli()
                    .args(["-p", &port.to_string(), "CLUSTER", "INFO"])
                    .output()
                    .expect("run redis-cli");
                String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok")
            });
            if ok {
                return cluster;
            }
            assert!(
                Instant::now() < deadline,
                "the TLS cluster never reached cluster_state:ok"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `redis-cli` over TLS, trusting the test CA.
    fn cli(&self) -> Command {
        let mut command = Command::new("redis-cli");
        command
            .args(["-h", "127.0.0.1", "--tls", "--cacert"])
            .arg(&self.certs.ca.cert_path)
            .stdin(Stdio::null());
        command
    }

    /// `redis-cli` over TLS, stopped after `limit` (`timeout` from coreutils).
    fn cli_within(&self, limit: Duration) -> Command {
        let mut command = Command::new("timeout");
        command
            .arg(limit.as_secs().to_string())
            .args(["redis-cli", "-h", "127.0.0.1", "--tls", "--cacert"])
            .arg(&self.certs.ca.cert_path)
            .stdin(Stdio::null());
        command
    }

    /// The end of every node's log, for a failure message.
    fn logs(&self) -> String {
        let mut out = String::new();
        for port in &self.ports {
            let log = self._dir.path().join(format!("node-{port}/redis.log"));
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(8).collect();
            out.push_str(&format!("node {port}:\n"));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// One seed: the other nodes are discovered through it.
    fn seed(&self) -> Vec<String> {
        vec![format!("rediss://127.0.0.1:{}", self.ports[0])]
    }

    /// Keys on every node, by port (over TLS, trusting the test CA).
    fn keys_by_node(&self, pattern: &str) -> Vec<(u16, usize)> {
        self.ports
            .iter()
            .map(|port| {
                let out = self
                    .cli()
                    .args(["-p", &port.to_string(), "--scan", "--pattern", pattern])
                    .output()
                    .expect("run redis-cli");
                (*port, String::from_utf8_lossy(&out.stdout).lines().count())
            })
            .collect()
    }
}

#[cached(ttl = 60, key_prefix = "tls:", cache = cache, ignore(runs))]
async fn item(cache: &Cache, runs: &AtomicUsize, id: u64) -> u64 {
    runs.fetch_add(1, SeqCst);
    id * 3
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_is_trusted_on_every_node_of_a_tls_cluster() {
    if !support::tls_supported() {
        eprintln!("skipped: the installed redis-server has no TLS support");
        return;
    }
    let cluster = TlsCluster::start();
    let cache = Cache::builder()
        .cluster_nodes(cluster.seed())
        .tls_ca_certificate(cluster.certs.ca.cert_pem.clone())
        .response_timeout(Duration::from_secs(2))
        .build()
        .await
        .expect("connect to the TLS cluster trusting the test CA");
    let runs = AtomicUsize::new(0);
    for _ in 0..2 {
        for id in 0..30 {
            assert_eq!(item(&cache, &runs, id).await, id * 3);
        }
    }
    assert_eq!(runs.load(SeqCst), 30, "the second round is all hits");
    let spread = cluster.keys_by_node("tls:*");
    assert!(
        spread.iter().all(|&(_, n)| n > 0),
        "entries on every node, each reached over TLS: {spread:?}"
    );
    cache.ping().await.expect("every primary answers over TLS");
    assert_eq!(cache.invalidate_prefix("tls:").await.unwrap(), 30);
    let stats = cache.stats();
    assert_eq!(stats.errors + stats.misconfigured, 0, "{stats:?}");

    // Without the CA, the nodes' certificates are not trusted.
    let untrusted = Cache::builder()
        .cluster_nodes(cluster.seed())
        .tls_ca_certificate(cluster.certs.other_ca.cert_pem.clone())
        .connect_timeout(Duration::from_secs(2))
        .build()
        .await;
    assert!(
        untrusted.is_err(),
        "a CA that did not sign the nodes' certificates"
    );

    // Certificates with a plain seed are a mistake, said at build time.
    let plain = Cache::builder()
        .cluster_nodes([format!("redis://127.0.0.1:{}", cluster.ports[0])])
        .tls_ca_certificate(cluster.certs.ca.cert_pem.clone())
        .build()
        .await;
    assert!(matches!(plain, Err(Error::InvalidUrl { .. })), "{plain:?}");
}
