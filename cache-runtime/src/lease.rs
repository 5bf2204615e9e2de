//! Cross-process stampede control: a short lease in Redis.
//!
//! The process that misses first takes `SET <lease key> <token> NX PX <lease>`
//! and runs the body; the others see the lease taken and poll `GET {key}` until
//! a value appears or the lease duration has passed, then run the body
//! themselves. The holder releases the lease with a compare-and-delete script,
//! so it never deletes a lease that expired and was taken by another process.
//!
//! The lease key starts with its value key, so it is under the function's
//! `key_prefix` (a Redis user limited to `~{key_prefix}*` may take it), and it
//! is in the value key's Redis Cluster slot (so the poll below is one pipeline
//! on a cluster too): `{key}:lease` when the key has a hash tag, else
//! `{key}:lease{t}`, where the tag `t` is chosen to hash to the key's slot
//! (see `key::slot`).
//!
//! Nothing here logs: the call path decides what is worth a (rate-limited)
//! warning.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::Error;
use crate::key::{same_slot, with_suffix_in_slot};
use crate::store::RedisStore;

/// The lease this process holds on a key.
pub(crate) struct Token(String);

pub(crate) enum Acquire {
    /// This process holds the lease.
    Held(Token),
    /// Another process holds it.
    Busy,
}

/// Compare-and-delete: delete the lease only if it still holds our token. It
/// touches only its one key, so it runs on a cluster too.
static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
    )
});

/// First and last wait between two polls of a busy lease.
const POLL_MIN: Duration = Duration::from_millis(5);
const POLL_MAX: Duration = Duration::from_millis(50);

fn lease_key(key: &str) -> String {
    with_suffix_in_slot(key, ":lease")
}

fn token() -> Token {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    Token(format!("{}:{nanos:x}:{n}", std::process::id()))
}

/// Tries to take the lease of `key` for `lease`.
pub(crate) async fn acquire(
    store: &RedisStore,
    key: &str,
    lease: Duration,
) -> Result<Acquire, Error> {
    let token = token();
    let mut cmd = redis::cmd("SET");
    cmd.arg(lease_key(key))
        .arg(&token.0)
        .arg("NX")
        .arg("PX")
        .arg(lease.as_millis().max(1) as u64);
    Ok(match store.query::<Option<String>>(&cmd).await? {
        Some(_) => Acquire::Held(token),
        None => Acquire::Busy,
    })
}

/// Gives the lease back, if it is still ours. A lease that cannot be released
/// expires by itself.
///
/// Without `+@scripting` (an ACL user), the compare-and-delete is `GET` then
/// `DEL`: a lease that expires between the two and is taken by another
/// process in that instant is deleted, which at worst lets one more process
/// run the body.
pub(crate) async fn release(store: &RedisStore, key: &str, token: Token) -> Result<(), Error> {
    let lease = lease_key(key);
    if store.scripts_allowed() {
        let mut invocation = RELEASE.prepare_invoke();
        invocation.key(&lease).arg(&token.0);
        match store.invoke::<i64>(&invocation).await {
            Err(err) if store.denies_scripts(&err) => {}
            result => return result.map(drop),
        }
    }
    let holder: Option<String> = store.query(redis::cmd("GET").arg(&lease)).await?;
    if holder.as_deref() == Some(token.0.as_str()) {
        store.query::<i64>(redis::cmd("DEL").arg(&lease)).await?;
    }
    Ok(())
}

/// Polls for the value the process holding the lease is computing, for at
/// most `lease`: the first stored bytes other than `seen` (what this process
/// read before, if anything: a value that did not decode). `None` when the
/// holder finished without storing a value, or the time is up.
pub(crate) async fn wait_for_value(
    store: &RedisStore,
    key: &str,
    lease: Duration,
    seen: Option<&[u8]>,
) -> Option<Vec<u8>> {
    let deadline = Instant::now() + lease;
    let mut pause = POLL_MIN;
    while Instant::now() < deadline {
        tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        pause = (pause * 2).min(POLL_MAX);
        // The value, and whether the lease is still held: the holder may have
        // finished without a cacheable value (an `Err`), and once the lease
        // is gone there is nothing to wait for.
        match poll(store, key).await {
            Ok((Some(bytes), _)) if Some(bytes.as_slice()) != seen => return Some(bytes),
            Ok((_, false)) => return None,
            _ => {}
        }
    }
    None
}

/// The value of `key` and whether its lease is still held: one pipelined
/// round trip, the lease key being in the value key's slot. (A key with a `{`
/// but no hash tag cannot have its lease in its slot: on a cluster that is
/// two commands, each sent to its key's primary.)
async fn poll(store: &RedisStore, key: &str) -> Result<(Option<Vec<u8>>, bool), Error> {
    let lease = lease_key(key);
    if store.is_cluster() && !same_slot(key, &lease) {
        let value: Option<Vec<u8>> = store.query(redis::cmd("GET").arg(key)).await?;
        if value.is_some() {
            return Ok((value, true));
        }
        let held: bool = store.query(redis::cmd("EXISTS").arg(lease)).await?;
        return Ok((None, held));
    }
    let mut pipe = redis::pipe();
    pipe.cmd("GET").arg(key).cmd("EXISTS").arg(lease);
    store.query_pipe(&pipe).await
}
