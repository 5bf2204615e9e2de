//! A real `redis-server` per test: started on a free port in a temporary
//! directory with persistence off, and killed when dropped; or the server
//! `REDIS_URL` names.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis_memo::Cache;

/// A Redis server for one test.
pub struct TestRedis {
    url: String,
    port: u16,
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
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
            let mut child = match spawned {
                Ok(child) => child,
                Err(err) => panic!(
                    "cannot start `{binary}` ({err}). The tests need a real Redis: install it \
                     (`apt-get install redis-server`, `brew install redis`), or point REDIS_URL \
                     at a scratch server (redis://127.0.0.1:6379/15), or REDIS_SERVER at the binary."
                ),
            };
            if wait_for_ping(port, Duration::from_secs(10)) {
                return TestRedis {
                    url: format!("redis://127.0.0.1:{port}"),
                    port,
                    child: Some(child),
                    dir: Some(dir),
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            last_error = format!("redis-server on port {port} did not answer PING");
        }
        panic!("{last_error}");
    }

    /// `redis://127.0.0.1:{port}` (or `REDIS_URL`).
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
            let mut child = server_command(&binary, self.port, dir.path(), extra)
                .spawn()
                .expect("start redis-server again");
            if wait_for_ping(self.port, Duration::from_secs(5)) {
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

    /// A plain redis-rs connection, to read back what the cache wrote.
    pub async fn client(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url.as_str())
            .expect("test URL")
            .get_multiplexed_async_connection()
            .await
            .expect("plain redis connection to the test server")
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

pub(crate) fn server_binary() -> String {
    std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
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

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

pub(crate) fn wait_for_ping(port: u16, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
            let mut buf = [0u8; 7];
            if stream.write_all(b"PING\r\n").is_ok()
                && stream.read_exact(&mut buf).is_ok()
                && &buf == b"+PONG\r\n"
            {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}
