//! The get-or-run path of one cached call.
//!
//! ```text
//! GET key ── hit, decodes ──────────────────────────────► value
//!    │ miss / corrupt / Redis error (logged)
//!    ▼
//! single-flight in this process ── waiter ──────────────► the leader's value
//!    │ leader
//!    ▼
//! lease across processes (opt-in) ── busy: poll GET ────► another process's value
//!    │ acquired, or not configured, or waited too long
//!    ▼
//! run the body ── cacheable? ── SET key value EX ttl ───► value
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::{Serialize, de::DeserializeOwned};

use crate::backend::{Backend, Store};
use crate::flight::{Outcome, Role};
use crate::{Cache, codec, lease};

/// How one function uses the cache.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CallOptions {
    /// `None`: no expiry.
    pub(crate) ttl: Option<Duration>,
    /// Cross-process stampede control: how long one process may hold the
    /// right to run the body while others wait for its value.
    pub(crate) lease: Option<Duration>,
}

impl Cache {
    /// Returns the cached value of `key`, or runs `body`, caches what
    /// `cacheable` picks from its result, and returns the result.
    pub(crate) async fn get_or_run<T, R, Fut>(
        &self,
        key: &str,
        options: CallOptions,
        body: Fut,
        cacheable: fn(&R) -> Option<&T>,
        from_cached: fn(T) -> R,
    ) -> R
    where
        T: Serialize + DeserializeOwned,
        Fut: Future<Output = R>,
    {
        if let Some(hit) = self.lookup::<T>(key).await {
            return from_cached(hit);
        }
        // The miss path lives in its own allocation, so the hit path's future
        // stays small (it is moved and polled on every call).
        Box::pin(self.miss(key, options, body, cacheable, from_cached)).await
    }

    async fn miss<T, R, Fut>(
        &self,
        key: &str,
        options: CallOptions,
        body: Fut,
        cacheable: fn(&R) -> Option<&T>,
        from_cached: fn(T) -> R,
    ) -> R
    where
        T: Serialize + DeserializeOwned,
        Fut: Future<Output = R>,
    {
        let mut leader = match self.flights().join(key) {
            Role::Leader(leader) => leader,
            Role::Waiter(waiter) => match waiter.outcome().await {
                Outcome::Lead(leader) => leader,
                Outcome::Value(bytes) => match codec::decode::<T>(&bytes) {
                    Ok(value) => return from_cached(value),
                    Err(err) => {
                        // A type whose JSON does not round-trip (NaN floats, ...).
                        tracing::warn!(key, error = %err, "redis-memo: the shared value does not decode; running the function");
                        return body.await;
                    }
                },
            },
        };

        let mut held = None;
        if let (Some(duration), Backend::Redis(store)) = (options.lease, self.backend()) {
            match lease::acquire(store, key, duration).await {
                lease::Acquire::Held(token) => held = Some(token),
                lease::Acquire::Busy => {
                    if let Some((bytes, value)) =
                        lease::wait_for_value::<T>(store, key, duration).await
                    {
                        leader.publish(bytes.into());
                        return from_cached(value);
                    }
                    tracing::warn!(
                        key,
                        "redis-memo: no value from the process holding the lease in time; running the function"
                    );
                }
                lease::Acquire::Unavailable => {}
            }
        }

        let value = body.await;
        if let Some(cached) = cacheable(&value) {
            match codec::encode(cached) {
                Ok(bytes) => {
                    let bytes: Arc<[u8]> = bytes.into();
                    leader.publish(bytes.clone());
                    self.write(key, &bytes, options.ttl).await;
                }
                Err(err) => {
                    tracing::warn!(key, error = %err, "redis-memo: cannot encode the value; it is returned but not cached");
                }
            }
        }
        if let (Some(token), Backend::Redis(store)) = (held, self.backend()) {
            lease::release(store, key, &token).await;
        }
        drop(leader); // ends the flight, after the write
        value
    }

    /// The cached value of `key`, or `None` on a miss, an undecodable value
    /// (logged) or a cache error (logged). Never fails.
    async fn lookup<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        match self.backend().get(key).await {
            Ok(Some(bytes)) => match codec::decode(&bytes) {
                Ok(value) => Some(value),
                Err(err) => {
                    tracing::warn!(key, error = %err, "redis-memo: cached value does not decode; treating it as a miss and overwriting it");
                    None
                }
            },
            Ok(None) => None,
            Err(err) => {
                tracing::warn!(key, error = %err, "redis-memo: cache read failed; running the function uncached");
                None
            }
        }
    }

    /// Stores encoded bytes under `key`; failures are logged, never returned.
    async fn write(&self, key: &str, bytes: &[u8], ttl: Option<Duration>) {
        if let Err(err) = self.backend().set(key, bytes, ttl).await {
            tracing::warn!(key, error = %err, "redis-memo: cache write failed; the value is returned but not cached");
        }
    }
}
