//! A real `redis-server` per test: started on a free port in a temporary
//! directory with persistence off, and killed when dropped; or the server
//! `REDIS_URL` names. Also the helpers the cluster, sentinel and TLS
//! harnesses share: the binaries, free ports, and blocking queries with
//! timeouts.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use redis_memo::Cache;

use crate::process::{free_port, server_binary, spawn_or_explain, wait_for_ping};
use crate::tls::{TestCerts, TlsOptions, wait_for_tls_ping};

/// A Redis server for one test.
pub struct TestRedis {
    url: String,
    port: u16,
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    tls: Option<TlsServer>,
}

/// What a TLS server was started with, to start it again the same way.
struct TlsServer {
    certs: TestCerts,
    options: TlsOptions,
}

impl TestRedis {
    /// Whether this is the shared server `REDIS_URL` names, not one of this test's own.
    pub fn is_shared(&self) -> bool {
        self.child.is_none() && self.dir.is_none()
    }

    /// Starts a private `redis-server`, or uses `REDIS_URL` when it is set.
    pub fn start() -> TestRedis {
        if let Ok(url) = std::env::var("REDIS_URL")
            && !url.is_empty()
        {
            return TestRedis {
                url,
                port: 0,
                child: None,
                dir: None,
                tls: None,
            };
        }
        Self::spawn(&[])
    }

    /// A URL on a free port where nothing listens yet; [`restart`](Self::restart)
    /// starts the server there.
    pub fn not_started() -> TestRedis {
        TestRedis {
            url: String::new(),
            port: free_port(),
            child: None,
            dir: Some(tempfile::tempdir().expect("temporary directory")),
            tls: None,
        }
        .with_url()
    }

    fn with_url(mut self) -> TestRedis {
        self.url = format!("redis://127.0.0.1:{}", self.port);
        self
    }

    /// Starts a private `redis-server` with extra arguments (never `REDIS_URL`),
    /// for tests that kill, pause or reconfigure their server.
    pub fn spawn(extra: &[&str]) -> TestRedis {
        let binary = server_binary();
        let dir = tempfile::tempdir().expect("cannot create a temporary directory");
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            let spawned = server_command(&binary, port, dir.path(), extra).spawn();
            let mut child = spawn_or_explain(&binary, spawned);
            if wait_for_ping(port, Duration::from_secs(10)) {
                return TestRedis {
                    url: format!("redis://127.0.0.1:{port}"),
                    port,
                    child: Some(child),
                    dir: Some(dir),
                    tls: None,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            last_error = format!("redis-server on port {port} did not answer PING");
        }
        panic!("{last_error}");
    }

    /// Starts a private `redis-server` that speaks only TLS, with a fresh set
    /// of [`TestCerts`]: `--port 0 --tls-port {free port}`, the server
    /// certificate for `127.0.0.1`/`localhost`, and `--tls-auth-clients yes`
    /// when `options.client_auth` (clients must then show a certificate the
    /// test CA signed). Returns once it answers a PING over TLS.
    ///
    /// Panics when the installed `redis-server` has no TLS; check
    /// [`tls_supported`](crate::tls_supported) first to skip instead.
    pub fn spawn_tls(options: TlsOptions) -> TestRedis {
        let binary = server_binary();
        let dir = tempfile::tempdir().expect("cannot create a temporary directory");
        let certs = TestCerts::generate();
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            let spawned = tls_server_command(&binary, port, dir.path(), &certs, options).spawn();
            let mut child = spawn_or_explain(&binary, spawned);
            match wait_for_tls_ping(&mut child, port, &certs, Duration::from_secs(10)) {
                Ok(()) => {
                    return TestRedis {
                        url: format!("rediss://127.0.0.1:{port}"),
                        port,
                        child: Some(child),
                        dir: Some(dir),
                        tls: Some(TlsServer { certs, options }),
                    };
                }
                Err(err) => last_error = err,
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "{last_error} (is `{binary}` built with TLS? `redis_memo_test_support::tls_supported()` \
             tells; Debian's and Homebrew's packages are)"
        );
    }

    /// The certificates of a server started with [`spawn_tls`](Self::spawn_tls).
    pub fn certs(&self) -> Option<&TestCerts> {
        self.tls.as_ref().map(|tls| &tls.certs)
    }

    /// `redis://127.0.0.1:{port}` (or `REDIS_URL`), `rediss://127.0.0.1:{tls port}`
    /// for a TLS server.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends a signal (`KILL`, `STOP`, `CONT`) to this test's own server.
    pub fn signal(&self, signal: &str) {
        let child = self
            .child
            .as_ref()
            .expect("only a server this test started");
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// SIGKILLs the server and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a fresh server on the same port (after [`kill`](Self::kill)).
    pub fn restart(&mut self, extra: &[&str]) {
        self.kill();
        let binary = server_binary();
        let dir = self.dir.as_ref().expect("a server this test started");
        for _ in 0..50 {
            let mut command = match &self.tls {
                Some(tls) => {
                    tls_server_command(&binary, self.port, dir.path(), &tls.certs, tls.options)
                }
                None => server_command(&binary, self.port, dir.path(), &[]),
            };
            let mut child = command
                .args(extra)
                .spawn()
                .expect("start redis-server again");
            let up = match &self.tls {
                Some(tls) => {
                    wait_for_tls_ping(&mut child, self.port, &tls.certs, Duration::from_secs(5))
                        .is_ok()
                }
                None => wait_for_ping(self.port, Duration::from_secs(5)),
            };
            if up {
                self.child = Some(child);
                return;
            }
            let _ = child.kill();
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("redis-server did not restart on port {}", self.port);
    }

    /// The port of a server this test started (0 for `REDIS_URL`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A redis-memo cache on this server.
    pub async fn cache(&self) -> Cache {
        Cache::connect(&self.url)
            .await
            .expect("connect redis-memo to the test server")
    }

    /// A plain redis-rs connection, to read back what the cache wrote. On a
    /// TLS server it trusts the test CA and shows the test client certificate.
    pub async fn client(&self) -> redis::aio::MultiplexedConnection {
        let client = match &self.tls {
            Some(tls) => {
                redis::Client::build_with_tls(self.url.as_str(), tls.certs.with_client_cert())
            }
            None => redis::Client::open(self.url.as_str()),
        };
        client
            .expect("test URL")
            .get_multiplexed_async_connection()
            .await
            .expect("plain redis connection to the test server")
    }

    /// Runs one raw command as the default user on a plain connection and
    /// returns the reply; panics on an error reply.
    ///
    /// `redis.command(&["CONFIG", "SET", "maxmemory", "1mb"]).await`
    pub async fn command(&self, args: &[&str]) -> redis::Value {
        let (name, rest) = args.split_first().expect("a command name");
        redis::cmd(name)
            .arg(rest)
            .query_async(&mut self.client().await)
            .await
            .unwrap_or_else(|err| panic!("{} failed: {err}", args.join(" ")))
    }

    /// `ACL SETUSER name rules...` as the default user, e.g.
    /// `acl_setuser("reader", &["on", ">secret", "~*", "+get"])`.
    pub async fn acl_setuser(&self, name: &str, rules: &[&str]) {
        let mut args = vec!["ACL", "SETUSER", name];
        args.extend_from_slice(rules);
        self.command(&args).await;
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
        drop(self.dir.take());
    }
}

/// A server that listens only for TLS on `port`.
fn tls_server_command(
    binary: &str,
    port: u16,
    dir: &std::path::Path,
    certs: &TestCerts,
    options: TlsOptions,
) -> Command {
    let mut command = Command::new(binary);
    command
        .args(certs.server_args(port))
        .args([
            "--tls-auth-clients",
            if options.client_auth { "yes" } else { "no" },
        ])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// A private server: loopback only, no persistence, its own directory.
fn server_command(binary: &str, port: u16, dir: &std::path::Path, extra: &[&str]) -> Command {
    let mut command = Command::new(binary);
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}
