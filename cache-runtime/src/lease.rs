//! Cross-process stampede control: a short lease in Redis.
//!
//! The process that misses first takes `SET {key}:lease <token> NX PX <lease>`
//! and runs the body; the others see the lease taken and poll `GET {key}` until
//! the value appears or the lease duration has passed, then run the body
//! themselves. The holder releases the lease with a compare-and-delete script,
//! so it never deletes a lease that expired and was taken by another process.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;

use crate::backend::RedisStore;
use crate::codec::Format;

pub(crate) enum Acquire {
    /// This process holds the lease, identified by the token.
    Held(String),
    /// Another process holds it.
    Busy,
    /// Redis did not answer: run without a lease.
    Unavailable,
}

/// Compare-and-delete: delete the lease only if it still holds our token.
static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
    )
});

/// First and last wait between two polls of a busy lease.
const POLL_MIN: Duration = Duration::from_millis(5);
const POLL_MAX: Duration = Duration::from_millis(50);

pub(crate) fn lease_key(key: &str) -> String {
    format!("{key}:lease")
}

fn token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}:{nanos:x}:{n}", std::process::id())
}

pub(crate) async fn acquire(store: &RedisStore, key: &str, lease: Duration) -> Acquire {
    let token = token();
    let mut cmd = redis::cmd("SET");
    cmd.arg(lease_key(key))
        .arg(&token)
        .arg("NX")
        .arg("PX")
        .arg(lease.as_millis().max(1) as u64);
    match store.query::<Option<String>>(&cmd).await {
        Ok(Some(_)) => Acquire::Held(token),
        Ok(None) => Acquire::Busy,
        Err(err) => {
            tracing::warn!(key, error = %err, "redis-memo: cannot take the lease; running without it");
            Acquire::Unavailable
        }
    }
}

pub(crate) async fn release(store: &RedisStore, key: &str, token: &str) {
    let mut invocation = RELEASE.prepare_invoke();
    invocation.key(lease_key(key)).arg(token);
    let mut conn = store.conn.clone();
    let released = tokio::time::timeout(
        store.response_timeout,
        invocation.invoke_async::<i64>(&mut conn),
    )
    .await;
    if !matches!(released, Ok(Ok(_))) {
        tracing::debug!(key, "redis-memo: lease not released; it expires by itself");
    }
}

/// Polls for the value another process is computing, for at most `lease`.
pub(crate) async fn wait_for_value<T: DeserializeOwned>(
    store: &RedisStore,
    key: &str,
    lease: Duration,
    format: Format,
) -> Option<(Vec<u8>, T)> {
    let deadline = Instant::now() + lease;
    let mut pause = POLL_MIN;
    while Instant::now() < deadline {
        tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        pause = (pause * 2).min(POLL_MAX);
        // The value, and whether the lease is still held, in one round trip:
        // the holder may have finished without a cacheable value (an `Err`),
        // and once the lease is gone there is nothing to wait for.
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(key).cmd("EXISTS").arg(lease_key(key));
        match store.query_pipe::<(Option<Vec<u8>>, bool)>(&pipe).await {
            Ok((Some(bytes), _)) => {
                if let Ok(value) = format.decode::<T>(&bytes) {
                    return Some((bytes, value));
                }
            }
            Ok((None, false)) => return None,
            _ => {}
        }
    }
    None
}
