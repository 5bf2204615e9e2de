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
use crate::codec::Format;
use crate::flight::{Outcome, Role};
use crate::health::Counters;
use crate::private::Target;
use crate::{Cache, Error, lease};

/// What happened to one call, for its span, its function's counters and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallOutcome {
    /// Read from the cache.
    Hit,
    /// Another caller's run (single-flight or lease) gave the value.
    Shared,
    /// Nothing stored: the body ran.
    Miss,
    /// Something stored that did not decode: the body ran and overwrote it.
    Corrupt,
    /// The cache failed: the body ran.
    Error,
    /// `skip_cache` was true, or the circuit breaker was open.
    Skipped,
    /// `refresh(...)`: the read was skipped on purpose.
    Refreshed,
    /// No cache to use (none installed, or the key could not be built).
    Uncached,
}

impl CallOutcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Hit => "hit",
            CallOutcome::Shared => "shared",
            CallOutcome::Miss => "miss",
            CallOutcome::Corrupt => "corrupt",
            CallOutcome::Error => "error",
            CallOutcome::Skipped => "skipped",
            CallOutcome::Refreshed => "refreshed",
            CallOutcome::Uncached => "uncached",
        }
    }
}

/// How one function uses the cache.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CallOptions {
    /// `None`: no expiry.
    pub(crate) ttl: Option<Duration>,
    /// Cross-process stampede control: how long one process may hold the
    /// right to run the body while others wait for its value.
    pub(crate) lease: Option<Duration>,
    /// Skip the read: run the body and overwrite (`{fn}_refresh`).
    pub(crate) refresh: bool,
    /// How values are encoded.
    pub(crate) format: Format,
}

impl Cache {
    /// Returns the cached value of `key`, or runs `body` (creating its future
    /// only then), caches what `cacheable` picks from its result, and returns
    /// the result.
    pub(crate) async fn get_or_run<T, R, B, Fut>(
        &self,
        target: &Target,
        options: CallOptions,
        body: B,
        cacheable: fn(&R) -> Option<&T>,
        from_cached: fn(T) -> R,
        outcome: &mut CallOutcome,
    ) -> R
    where
        T: Serialize + DeserializeOwned,
        B: FnOnce() -> Fut,
        Fut: Future<Output = R>,
    {
        let inner = self.inner();
        if !inner.breaker.allow() {
            Counters::add(&inner.counters.skipped);
            *outcome = CallOutcome::Skipped;
            // Boxed, like every run of the body: the body's future is not
            // part of this future, which a hit moves and polls.
            return Box::pin(body()).await;
        }
        let key = match target {
            Target::Key(key) => key,
            // A grouped key depends on the group's generation, read with the
            // value by a script: a large future, boxed so that it does not
            // grow the future of every plain call.
            Target::Grouped {
                gen_key,
                head,
                tail,
            } => {
                return Box::pin(async move {
                    let generation = match self
                        .lookup_grouped::<T>(gen_key, head, tail, options.format, outcome)
                        .await
                    {
                        Ok((_, Some(hit))) if !options.refresh => return from_cached(hit),
                        Ok((generation, _)) => generation,
                        // No generation to write under: run uncached.
                        Err(()) => {
                            *outcome = CallOutcome::Error;
                            return body().await;
                        }
                    };
                    if options.refresh {
                        *outcome = CallOutcome::Refreshed;
                    }
                    let key = format!("{head}{generation}{tail}");
                    self.miss(&key, options, body, cacheable, from_cached, outcome)
                        .await
                })
                .await;
            }
        };
        if !options.refresh
            && let Some(hit) = self.lookup::<T>(key, options.format, outcome).await
        {
            return from_cached(hit);
        }
        if options.refresh {
            *outcome = CallOutcome::Refreshed;
        }
        // The miss path lives in its own allocation, so the hit path's future
        // stays small (it is moved and polled on every call).
        Box::pin(self.miss(key, options, body, cacheable, from_cached, outcome)).await
    }

    async fn miss<T, R, B, Fut>(
        &self,
        key: &str,
        options: CallOptions,
        body: B,
        cacheable: fn(&R) -> Option<&T>,
        from_cached: fn(T) -> R,
        outcome: &mut CallOutcome,
    ) -> R
    where
        T: Serialize + DeserializeOwned,
        B: FnOnce() -> Fut,
        Fut: Future<Output = R>,
    {
        let mut leader = match self.flights().join(key) {
            Role::Leader(leader) => leader,
            Role::Waiter(waiter) => match waiter.outcome().await {
                Outcome::Lead(leader) => leader,
                Outcome::Value(bytes) => match options.format.decode::<T>(&bytes) {
                    Ok(value) => {
                        *outcome = CallOutcome::Shared;
                        return from_cached(value);
                    }
                    Err(err) => {
                        // A type whose JSON does not round-trip (NaN floats, ...).
                        tracing::warn!(key, error = %err, "redis-memo: the shared value does not decode; running the function");
                        return body().await;
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
                        lease::wait_for_value::<T>(store, key, duration, options.format).await
                    {
                        leader.publish(bytes.into());
                        *outcome = CallOutcome::Shared;
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

        let value = body().await;
        if let Some(cached) = cacheable(&value) {
            match options.format.encode(cached) {
                Ok(bytes) => {
                    let bytes: Arc<[u8]> = bytes.into();
                    leader.publish(bytes.clone());
                    match self.inner().max_value_bytes {
                        Some(limit) if bytes.len() > limit => {
                            tracing::warn!(
                                key,
                                size = bytes.len(),
                                limit,
                                "redis-memo: value larger than max_value_bytes; returned but not cached"
                            );
                        }
                        _ => self.write(key, &bytes, options.ttl).await,
                    }
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
    async fn lookup<T: DeserializeOwned>(
        &self,
        key: &str,
        format: Format,
        outcome: &mut CallOutcome,
    ) -> Option<T> {
        let read = self.inner().breaker.record(self.backend().get(key).await);
        self.found(key, read, format, outcome)
    }

    /// Decodes what a read found, and counts it.
    fn found<T: DeserializeOwned>(
        &self,
        key: &str,
        read: Result<Option<Vec<u8>>, Error>,
        format: Format,
        outcome: &mut CallOutcome,
    ) -> Option<T> {
        let value = match read {
            Ok(Some(bytes)) => match format.decode(&bytes) {
                Ok(value) => Some(value),
                Err(err) => {
                    self.corrupt(key, &err, outcome);
                    None
                }
            },
            Ok(None) => {
                *outcome = CallOutcome::Miss;
                None
            }
            Err(err) => {
                *outcome = CallOutcome::Error;
                self.failed(
                    key,
                    &err,
                    "cache read failed; running the function uncached",
                );
                None
            }
        };
        if value.is_some() {
            *outcome = CallOutcome::Hit;
        }
        value
    }

    /// Counts and reports a stored value that does not decode: a miss that the
    /// write after the body overwrites.
    fn corrupt(&self, key: &str, err: &Error, outcome: &mut CallOutcome) {
        Counters::add(&self.inner().counters.corrupt);
        *outcome = CallOutcome::Corrupt;
        tracing::warn!(key, error = %err, "redis-memo: cached value does not decode; treating it as a miss and overwriting it");
    }

    /// Counts a failed cache operation and warns, at most once a second.
    fn failed(&self, key: &str, err: &Error, what: &str) {
        Counters::add(&self.inner().counters.errors);
        if let Some(suppressed) = self.inner().warn_errors.permit() {
            tracing::warn!(key, error = %err, suppressed, "redis-memo: {what}");
        }
    }

    /// A grouped call's generation and value, in one round trip; `Err`
    /// (logged) when the generation cannot be read. The key is built by the
    /// caller only when the body has to run, so a hit allocates nothing.
    async fn lookup_grouped<T: DeserializeOwned>(
        &self,
        gen_key: &str,
        head: &str,
        tail: &str,
        format: Format,
        outcome: &mut CallOutcome,
    ) -> Result<(u64, Option<T>), ()> {
        let read = self.backend().get_grouped(gen_key, head, tail).await;
        match self.inner().breaker.record(read) {
            Ok((generation, None)) => {
                *outcome = CallOutcome::Miss;
                Ok((generation, None))
            }
            Ok((generation, Some(bytes))) => match format.decode(&bytes) {
                Ok(value) => {
                    *outcome = CallOutcome::Hit;
                    Ok((generation, Some(value)))
                }
                Err(err) => {
                    self.corrupt(&format!("{head}{generation}{tail}"), &err, outcome);
                    Ok((generation, None))
                }
            },
            Err(err) => {
                self.failed(
                    gen_key,
                    &err,
                    "cache read failed; running the function uncached",
                );
                Err(())
            }
        }
    }

    /// Stores encoded bytes under `key`; failures are logged, never returned.
    async fn write(&self, key: &str, bytes: &[u8], ttl: Option<Duration>) {
        let written = self.backend().set(key, bytes, ttl).await;
        match self.inner().breaker.record(written) {
            Ok(()) => Counters::add(&self.inner().counters.stores),
            Err(err) => self.failed(
                key,
                &err,
                "cache write failed; the value is returned but not cached",
            ),
        }
    }
}

tokio::task_local! {
    static REFRESH: std::cell::Cell<bool>;
}

/// Runs one call of a `#[cached]` function so that it skips the read, runs the
/// body and overwrites the cached entry with the new result (an `Err` is
/// returned and leaves the old entry in place). Only that call is refreshed:
/// cached functions its body calls read the cache as usual.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use redis_memo::{Cache, cached, refresh};
///
/// #[cached(cache = cache)]
/// async fn now_ms(cache: &Cache) -> u128 {
///     std::time::SystemTime::UNIX_EPOCH.elapsed().unwrap().as_millis()
/// }
///
/// let cache = Cache::in_memory();
/// let first = now_ms(&cache).await;
/// tokio::time::sleep(std::time::Duration::from_millis(5)).await;
/// let fresh = refresh(now_ms(&cache)).await; // runs the body again
/// assert!(fresh > first);
/// assert_eq!(now_ms(&cache).await, fresh); // and stored its result
/// # }
/// ```
pub async fn refresh<F: Future>(call: F) -> F::Output {
    REFRESH.scope(std::cell::Cell::new(true), call).await
}

/// Whether the current call is a [`refresh`]; consumed by the first cached call.
pub(crate) fn take_refresh() -> bool {
    REFRESH
        .try_with(|flag| flag.replace(false))
        .unwrap_or(false)
}
