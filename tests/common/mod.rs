//! Shared test setup: a real `redis-server` per test, started on a free port in
//! a temporary directory with persistence off, and killed when dropped; or the
//! server `REDIS_URL` names. No mocks.
#![allow(dead_code, unused_macros, unused_imports)] // each test binary uses part of this module

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis_memo::{Cache, KeyTtl};

/// A Redis server for one test.
pub struct TestRedis {
    url: String,
    port: u16,
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
}

impl TestRedis {
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

fn server_binary() -> String {
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

fn wait_for_ping(port: u16, limit: Duration) -> bool {
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

/// One backend under test: the same behavioural checks run on Redis and in memory.
pub struct Harness {
    pub cache: Cache,
    pub redis: Option<TestRedis>,
}

impl Harness {
    /// A Redis-backed cache. `prefixes` are the test's own key prefixes: when
    /// the server is shared (`REDIS_URL`), keys left under them by an earlier
    /// run are dropped first.
    pub async fn redis(prefixes: &[&str]) -> Harness {
        let redis = TestRedis::start();
        let cache = redis.cache().await;
        for prefix in prefixes {
            cache
                .invalidate_prefix(prefix)
                .await
                .expect("clear the test's prefix");
        }
        Harness {
            cache,
            redis: Some(redis),
        }
    }

    pub fn memory() -> Harness {
        Harness {
            cache: Cache::in_memory(),
            redis: None,
        }
    }

    /// The stored bytes of `key`; on Redis read with a plain client, not through the cache.
    pub async fn raw_get(&self, key: &str) -> Option<Vec<u8>> {
        match &self.redis {
            Some(redis) => redis::cmd("GET")
                .arg(key)
                .query_async(&mut redis.client().await)
                .await
                .expect("GET"),
            None => self.cache.get_raw(key).await.expect("get_raw"),
        }
    }

    /// Overwrites `key` behind the cache's back.
    pub async fn raw_set(&self, key: &str, value: &[u8]) {
        match &self.redis {
            Some(redis) => redis::cmd("SET")
                .arg(key)
                .arg(value)
                .query_async::<()>(&mut redis.client().await)
                .await
                .expect("SET"),
            None => self.cache.set_raw(key, value, None).await.expect("set_raw"),
        }
    }

    /// The key's TTL in Redis's terms: seconds left, `-1` without expiry, `-2` missing.
    pub async fn ttl(&self, key: &str) -> i64 {
        match &self.redis {
            Some(redis) => redis::cmd("TTL")
                .arg(key)
                .query_async(&mut redis.client().await)
                .await
                .expect("TTL"),
            None => match self.cache.ttl(key).await.expect("ttl") {
                KeyTtl::Missing => -2,
                KeyTtl::Persistent => -1,
                KeyTtl::ExpiresIn(left) => left.as_secs_f64().round() as i64,
            },
        }
    }

    /// How many keys start with `prefix`, counted on Redis with SCAN by a plain client.
    pub async fn count_prefix(&self, prefix: &str) -> usize {
        match &self.redis {
            Some(redis) => {
                let mut conn = redis.client().await;
                let mut cursor = 0u64;
                let mut n = 0;
                loop {
                    let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut conn)
                        .await
                        .expect("SCAN");
                    n += keys.iter().filter(|k| k.starts_with(prefix)).count();
                    if next == 0 {
                        return n;
                    }
                    cursor = next;
                }
            }
            None => panic!("count_prefix needs Redis"),
        }
    }
}

/// The key redis-memo must produce: `{prefix}{name}:{sha256 hex of the encoded args}`,
/// computed here from the documented encoding, independently of the crate.
pub fn expected_key(prefix: &str, name: &str, encoded_args: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!(
        "{prefix}{name}:{}",
        hex::encode(Sha256::digest(encoded_args))
    )
}

/// Runs each behaviour `async fn name(h: &Harness)` twice: on a Redis the test
/// starts (after clearing the given prefixes) and on the in-memory backend.
macro_rules! on_both_backends {
    (#[$test:meta] clear $prefixes:expr; $($name:ident),* $(,)?) => {
        mod redis {
            $(
                #[$test]
                async fn $name() {
                    super::$name(&crate::common::Harness::redis(&$prefixes).await).await;
                }
            )*
        }
        mod memory {
            $(
                #[$test]
                async fn $name() {
                    super::$name(&crate::common::Harness::memory()).await;
                }
            )*
        }
    };
}
pub(crate) use on_both_backends;

/// A log sink for a `tracing_subscriber::fmt` subscriber, read back by tests.
#[derive(Clone, Default)]
pub struct Captured(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
