//! Cross-process stampede control (`lease = N`).
//!
//! A miss claims its key with a placeholder (see `store::placeholder`), so a
//! process that misses while another runs the body finds that process's
//! placeholder instead of nothing: with a lease it waits for the value,
//! polling `GET {key}` (5 to 50 ms apart) until a value replaces the
//! placeholder, the key goes away (the holder's body failed, or the key was
//! invalidated: this process then claims it and runs the body), or `lease`
//! has passed (it runs the body itself, and its value may replace that
//! placeholder like the holder's would). The placeholder is the lease: a
//! process that dies mid-body holds the others up for `lease` at most.
//!
//! The background refresh of a stale value keeps the old value readable, so
//! it cannot hold a placeholder: it takes a separate lease key with `SET
//! <lease key> <token> NX PX <lease>` and gives it back with a
//! compare-and-delete, so it never deletes a lease that expired and was taken
//! by another process. The lease key starts with its value key, so it is under
//! the function's `key_prefix` (a Redis user limited to `~{key_prefix}*` may
//! take it), and it is in the value key's Redis Cluster slot: `{key}:lease`
//! when the key has a hash tag, else `{key}:lease{t}`, where the tag `t` is
//! chosen to hash to the key's slot (see `key::slot`).
//!
//! Nothing here logs: the call path decides what is worth a (rate-limited)
//! warning.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::key::with_suffix_in_slot;
use crate::store::{RedisStore, Seen, Store, new_placeholder};

/// The lease this process holds on a key: bytes no other holder writes.
pub(crate) struct Token(Arc<[u8]>);

pub(crate) enum Acquire {
    /// This process holds the lease.
    Held(Token),
    /// Another process holds it.
    Busy,
}

/// First and last wait between two polls of a busy lease.
const POLL_MIN: Duration = Duration::from_millis(5);
const POLL_MAX: Duration = Duration::from_millis(50);

fn lease_key(key: &str) -> String {
    with_suffix_in_slot(key, ":lease")
}

/// Tries to take the lease of `key` for `lease`.
pub(crate) async fn acquire(
    store: &RedisStore,
    key: &str,
    lease: Duration,
) -> Result<Acquire, Error> {
    let token = Token(new_placeholder());
    let mut cmd = redis::cmd("SET");
    cmd.arg(lease_key(key))
        .arg(&*token.0)
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
pub(crate) async fn release(store: &RedisStore, key: &str, token: Token) -> Result<(), Error> {
    store.delete_if(&lease_key(key), &token.0).await.map(drop)
}

/// How waiting for another process's value ended.
pub(crate) enum Awaited {
    /// Its value.
    Value(Vec<u8>),
    /// The key went away: its body failed, or the key was invalidated.
    Gone,
    /// `lease` passed first; the key holds this placeholder.
    TimedOut(Arc<[u8]>),
}

/// Waits up to `lease` for the value of the call that holds `placeholder`
/// on `key` (another process: this one's callers share its flight).
pub(crate) async fn await_value(
    store: &RedisStore,
    key: &str,
    placeholder: Arc<[u8]>,
    lease: Duration,
) -> Awaited {
    let deadline = Instant::now() + lease;
    let mut pause = POLL_MIN;
    let mut holder = placeholder;
    while Instant::now() < deadline {
        tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        pause = (pause * 2).min(POLL_MAX);
        match store.get(key).await.map(Seen::of) {
            Ok(Seen::Value(bytes)) => return Awaited::Value(bytes),
            Ok(Seen::Absent) => return Awaited::Gone,
            // Another process may have taken over the key meanwhile.
            Ok(Seen::Placeholder(now)) => holder = now,
            Err(_) => {}
        }
    }
    Awaited::TimedOut(holder)
}
