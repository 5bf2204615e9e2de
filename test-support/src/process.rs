//! The processes behind the test servers: finding the binary and a free
//! port, starting, waiting for, asking and killing a `redis-server`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Child;
use std::time::{Duration, Instant};

pub(crate) fn server_binary() -> String {
    std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
}

/// The spawned server, or a panic that says how to install one.
pub(crate) fn spawn_or_explain(binary: &str, spawned: std::io::Result<Child>) -> Child {
    match spawned {
        Ok(child) => child,
        Err(err) => panic!(
            "cannot start `{binary}` ({err}). The tests need a real Redis: install it \
             (`apt-get install redis-server`, `brew install redis`), or point REDIS_URL \
             at a scratch server (redis://127.0.0.1:6379/15), or REDIS_SERVER at the binary."
        ),
    }
}

/// One command on a fresh blocking connection to `127.0.0.1:{port}`, with
/// timeouts so that a stopped or dead node gives an error instead of a hang.
pub(crate) fn query<T: redis::FromRedisValue>(
    port: u16,
    cmd: &redis::Cmd,
) -> redis::RedisResult<T> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(1))?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    conn.set_write_timeout(Some(Duration::from_secs(2)))?;
    cmd.query(&mut conn)
}

/// The fields of an `INFO` reply, or of `CLUSTER INFO`: `name:value` lines.
pub(crate) fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        line.trim_end()
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
    })
}

/// Polls `check` every 100 ms until it gives a value; after `limit`, panics
/// with `what` and the last error it gave.
pub(crate) fn poll_until<T>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        let seen = match check() {
            Ok(value) => return value,
            Err(err) => err,
        };
        if Instant::now() > deadline {
            panic!("waited {limit:?} for {what}; last seen: {seen}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SIGKILLs a child and reaps it.
pub(crate) fn kill_child(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The last lines of a log file, to say in a panic why a node did not come up.
pub(crate) fn log_tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
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
