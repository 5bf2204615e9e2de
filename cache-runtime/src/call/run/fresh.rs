//! Values that know when they stop being fresh (`stale`, `fail_safe`,
//! `soft_timeout`), for the calls whose body can run in the background: it
//! owns what it uses (`Send + 'static`).
//!
//! ```text
//! read: GET key (the value carries its times, see `codec`)
//!    │ fresh ────────────────────────────────────────────────► value (a hit)
//!    │ the body failed lately (within fail_safe_throttle) ───► value, as it is
//!    │ within `stale` after ttl:
//!    │    claim the key's flight ── taken ───────────────────► stale value
//!    │    spawn the refresh ─────────────────────────────────► stale value
//!    │       lease (opt-in) ── busy: another process refreshes ► done
//!    │       read again ── fresh, gone, or a placeholder ─────► done
//!    │       run the body ── a value: stored over the stale one ► done
//!    │                   └─ an error or a panic: logged; no new try for
//!    │                      fail_safe_throttle (stored with the value) ► done
//!    │ kept past ttl (`fail_safe`), with `soft_timeout`:
//!    │    the body runs in a task ── done in time ──────────► its value
//!    │                             └─ not: it goes on and stores its value
//!    │                                later ──────────────► the kept value
//!    ▼
//! as any call (`run`): the body runs; with a kept value, an error returns it
//! ```
//!
//! A refresh and a soft-timed body run after the call returned, so they own
//! the body: that of a `#[cached]` function (whose parameters are then owned)
//! or the closure given to [`Cache::get_or_set_stale`]. They lead the key's
//! flight, so callers of this process that miss meanwhile wait for their
//! value instead of running the body again.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use serde::{Serialize, de::DeserializeOwned};
use tracing::Instrument;

use super::{Call, HeldHere, Join, Lead, OutOfLine, Read, Shape, resolve};
use crate::cache::Cache;
use crate::call::spec::Age;
use crate::health::{CallStart, Outcome, Warning, warn_limited};
use crate::lease;
use crate::store::{Seen, Store};

/// Runs a call of a function whose values carry their times and whose body
/// can run in the background: like [`run`](super::run), and a stale value is
/// returned at once while a background run replaces it.
pub(crate) fn run<T, R, B, Fut>(call: Call, body: B, shape: Shape<T, R>) -> impl Future<Output = R>
where
    T: Serialize + DeserializeOwned + 'static,
    R: 'static,
    B: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = R> + Send + 'static,
{
    OutOfLine {
        inner: async move {
            let read = call.read().await;
            let (outcome, value) = match aged(&call, &read) {
                Some((bytes, generation, Age::Stale { .. })) => {
                    Box::pin(call.serve_stale(bytes, generation, body, shape)).await
                }
                _ => resolve(&call, read, body, shape).await,
            };
            call.finish(outcome);
            value
        },
    }
}

/// [`run`] for a function with a `soft_timeout` too: a body slower than it
/// leaves the kept value returned while it goes on in a task, so its value
/// crosses tasks (`R: Send`).
pub(crate) fn run_soft<T, R, B, Fut>(
    call: Call,
    body: B,
    shape: Shape<T, R>,
) -> impl Future<Output = R>
where
    T: Serialize + DeserializeOwned + 'static,
    R: Send + 'static,
    B: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = R> + Send + 'static,
{
    OutOfLine {
        inner: async move {
            let read = call.read().await;
            let (outcome, value) = match aged(&call, &read) {
                Some((bytes, generation, Age::Stale { .. })) => {
                    Box::pin(call.serve_stale(bytes, generation, body, shape)).await
                }
                Some((bytes, generation, Age::Expired { kept: true }))
                    if call.windows.soft_timeout.is_some() =>
                {
                    match call.format.decode::<T>(bytes) {
                        Ok(kept) => {
                            let seen = bytes.to_vec();
                            Box::pin(call.soft(generation, seen, kept, body, shape)).await
                        }
                        Err(_) => resolve(&call, read, body, shape).await,
                    }
                }
                _ => resolve(&call, read, body, shape).await,
            };
            call.finish(outcome);
            value
        },
    }
}

/// The stored bytes a read found, their generation and their age.
fn aged<'r>(call: &Call, read: &'r Read) -> Option<(&'r [u8], u64, Age)> {
    let (bytes, generation) = match read {
        Read::Held(held, generation, _) => (held.bytes(), *generation),
        Read::Found(bytes, generation) => (&bytes[..], *generation),
        _ => return None,
    };
    Some((bytes, generation, call.age(bytes)))
}

impl Call {
    /// Returns a stale value read (its `bytes`), and starts its background
    /// refresh; a value that does not decode goes the way of any call.
    async fn serve_stale<T, R, B, Fut>(
        &self,
        bytes: &[u8],
        generation: u64,
        body: B,
        shape: Shape<T, R>,
    ) -> (Outcome, R)
    where
        T: Serialize + DeserializeOwned + 'static,
        R: 'static,
        B: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = R> + Send + 'static,
    {
        match self.format.decode::<T>(bytes) {
            Ok(value) => {
                self.revalidate(generation, bytes.into(), body, shape);
                (Outcome::Stale, (shape.from_cached)(value))
            }
            // Decoded again there, and reported as corrupt.
            Err(_) => resolve(self, Read::Found(bytes.to_vec(), generation), body, shape).await,
        }
    }

    /// Starts the background refresh of the key read under `generation`
    /// (holding `stale`), unless the key is in flight already (a refresh, or
    /// a miss's run).
    fn revalidate<T, R, B, Fut>(
        &self,
        generation: u64,
        stale: Arc<[u8]>,
        body: B,
        shape: Shape<T, R>,
    ) where
        T: Serialize + DeserializeOwned + 'static,
        R: 'static,
        B: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = R> + Send + 'static,
    {
        let Some((cache, target)) = self.parts() else {
            return;
        };
        let key = target.key(generation).into_owned();
        if !cache.flights().try_claim(&key, stale.clone()) {
            return;
        }
        let claim = Claim {
            cache: cache.clone(),
            key,
            seen: stale,
            adopted: false,
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            let _span = self.span.enter();
            warn_limited!(
                cache.health().warnings(),
                Warning::StaleRefresh,
                key = %claim.key,
                "redis-memo: no tokio runtime to refresh a stale value in; it is served until its \
                 stale window ends, then the function runs (call it from within a tokio runtime)"
            );
            return;
        };
        let refresh = self.detach();
        let span = self.span.clone();
        let cacheable = shape.cacheable;
        let fails = shape.fails;
        runtime.spawn(
            refresh
                .refresh(claim, body, cacheable, fails)
                .instrument(span),
        );
    }

    /// The call's settings, owned, for a run that outlives the call.
    fn detach(&self) -> Call {
        Call {
            cache: self.cache.clone(),
            target: self.target.clone(),
            bypass: self.bypass,
            family: self.family,
            windows: self.windows,
            lease: self.lease,
            refresh: false,
            local: self.local,
            held: HeldHere::NotLooked,
            format: self.format,
            span: self.span.clone(),
            start: CallStart::now(),
        }
    }

    /// The background refresh of one key: takes the lease (with `lease`),
    /// checks that the key still holds a value to refresh, runs the body and
    /// stores its value over the stale one. Counts the write (`stores`), not
    /// a call. A body that fails or panics is logged, and the key is not
    /// refreshed again for `fail_safe_throttle`.
    async fn refresh<T, R, B, Fut>(
        self,
        claim: Claim,
        body: B,
        cacheable: fn(&R) -> Option<&T>,
        fails: fn(&R) -> bool,
    ) where
        T: Serialize + DeserializeOwned,
        B: FnOnce() -> Fut,
        Fut: Future<Output = R>,
    {
        let (cache, key, seen) = claim.into_parts();
        let Some(flight) = cache.flights().adopt(&key, &seen) else {
            return;
        };
        let mut lead = Lead {
            flight,
            lease: None,
        };
        if let (Some(duration), Some(store)) = (self.lease, cache.store().redis()) {
            match lease::acquire(store, &key, duration).await {
                Ok(lease::Acquire::Held(token)) => lead.lease = Some(token),
                // Another process refreshes it (or fills it after a miss).
                Ok(lease::Acquire::Busy) => return,
                Err(err) => {
                    warn_limited!(
                        cache.health().warnings(),
                        Warning::Lease,
                        key = %key,
                        error = %err,
                        "redis-memo: cannot take the lease; refreshing without it"
                    );
                }
            }
        }
        // Refreshed since it was read (by this process just before the claim,
        // or by another): hand that value to whoever waits, and stop. Gone,
        // a placeholder, or a failed refresh lately: stop, the key is being
        // handled. A cache that cannot be read now would not take the value
        // either: stop too (the stale value stays; the next stale read tries
        // again). Otherwise the refreshed value replaces the stale one only
        // if the key still holds it when the body is done.
        match cache.health().record(&key, cache.store().get(&key).await) {
            Ok(bytes) => match Seen::of(bytes) {
                Seen::Value(bytes) => match self.age(&bytes) {
                    Age::Fresh => {
                        lead.flight.publish(bytes.into());
                        self.store(&cache, &key, lead, None).await;
                        return;
                    }
                    Age::Throttled { .. } => {
                        self.store(&cache, &key, lead, None).await;
                        return;
                    }
                    Age::Stale { .. } | Age::Expired { .. } => lead.flight.rebase(bytes.into()),
                },
                Seen::Absent | Seen::Placeholder(_) => {
                    self.store(&cache, &key, lead, None).await;
                    return;
                }
            },
            Err(err) => {
                self.failed(Warning::ReadFailed, &err);
                self.store(&cache, &key, lead, None).await;
                return;
            }
        }
        // The value is not kept across an await: it need not be `Send`.
        let (failure, encoded) = {
            let value = AssertUnwindSafe(self.body(body)).catch_unwind().await;
            match &value {
                Ok(value) if !fails(value) => (
                    None,
                    cacheable(value).map(|cached| self.format.encode_round_trip(cached)),
                ),
                Ok(_) => (Some("returned an error"), None),
                Err(_) => (Some("panicked"), None),
            }
        };
        if let Some(failure) = failure {
            let throttled = self.throttle(&cache, &key, &lead).await;
            warn_limited!(
                cache.health().warnings(),
                Warning::StaleRefresh,
                function = %self.family(),
                key = %key,
                failure,
                retry_in = ?throttled.then_some(self.windows.throttle),
                "redis-memo: the background refresh of a stale value {failure}; the stale value is \
                 served, and the refresh is not tried again before fail_safe_throttle (retry_in) \
                 has passed; when the stale window ends, the function runs inline"
            );
            self.store(&cache, &key, lead, None).await;
            return;
        }
        self.store(&cache, &key, lead, encoded).await;
    }

    /// The call of a key whose value is kept past its TTL, with a soft
    /// timeout: the body runs in a task; done in time, its value is the
    /// call's; not, the call returns the kept value and the task stores the
    /// body's value when it is done. Callers of this process that wait for
    /// the key's run wait the soft timeout at most, too.
    async fn soft<T, R, B, Fut>(
        &self,
        generation: u64,
        seen: Vec<u8>,
        kept: T,
        body: B,
        shape: Shape<T, R>,
    ) -> (Outcome, R)
    where
        T: Serialize + DeserializeOwned + 'static,
        R: Send + 'static,
        B: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = R> + Send + 'static,
    {
        let (Some((cache, target)), Some(soft)) = (self.parts(), self.windows.soft_timeout) else {
            return (Outcome::Miss, self.body(body).await);
        };
        let key = target.key(generation).into_owned();
        let seen: Arc<[u8]> = seen.into();
        let lead =
            match tokio::time::timeout(soft, self.join(cache, &key, Some(seen.clone()))).await {
                Err(_) => return (Outcome::FailSafe, (shape.from_cached)(kept)),
                Ok(Join::Shared(bytes)) => match self.format.decode::<T>(&bytes) {
                    Ok(value) => return (Outcome::Shared, (shape.from_cached)(value)),
                    Err(_) => return (Outcome::FailSafe, (shape.from_cached)(kept)),
                },
                Ok(Join::Lead(lead)) => lead,
            };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            let value = self.body(body).await;
            return self.settle(cache, &key, lead, value, shape).await;
        };
        let mut task = runtime.spawn(self.body(body));
        match tokio::time::timeout(soft, &mut task).await {
            Ok(Ok(value)) => self.settle(cache, &key, lead, value, shape).await,
            Ok(Err(err)) if err.is_panic() => {
                drop(lead);
                std::panic::resume_unwind(err.into_panic())
            }
            Ok(Err(_)) => (Outcome::FailSafe, (shape.from_cached)(kept)),
            Err(_) => {
                // The body goes on in its task; so does the key's run.
                let claim = Claim::handed(cache, &key, lead.flight, seen);
                let background = self.detach();
                let (cacheable, fails) = (shape.cacheable, shape.fails);
                runtime.spawn(
                    async move {
                        let (cache, key, seen) = claim.into_parts();
                        let Some(flight) = cache.flights().adopt(&key, &seen) else {
                            return;
                        };
                        let lead = Lead {
                            flight,
                            lease: None,
                        };
                        let Ok(value) = task.await else { return };
                        if fails(&value) {
                            background.fall_back(&cache, &key, lead).await;
                            return;
                        }
                        let encoded = cacheable(&value)
                            .map(|cached| background.format.encode_round_trip(cached));
                        background.store(&cache, &key, lead, encoded).await;
                    }
                    .instrument(self.span.clone()),
                );
                (Outcome::FailSafe, (shape.from_cached)(kept))
            }
        }
    }

    /// What a soft-timed call returns for a body done in time: its value,
    /// stored; or, for a failure, the kept value (see `fall_back`).
    async fn settle<T, R>(
        &self,
        cache: &Cache,
        key: &str,
        lead: Lead<'_>,
        value: R,
        shape: Shape<T, R>,
    ) -> (Outcome, R)
    where
        T: Serialize + DeserializeOwned,
    {
        if (shape.fails)(&value) {
            let kept = self.fall_back(cache, key, lead).await;
            return match kept.map(|bytes| self.format.decode::<T>(&bytes)) {
                Some(Ok(kept)) => (Outcome::FailSafe, (shape.from_cached)(kept)),
                _ => (Outcome::Miss, value),
            };
        }
        let encoded = (shape.cacheable)(&value).map(|cached| self.format.encode_round_trip(cached));
        self.store(cache, key, lead, encoded).await;
        (Outcome::Miss, value)
    }
}

/// A key's flight claimed for a run that goes on in a task. Dropped before
/// the task adopts it (the task never ran), it ends the flight.
struct Claim {
    cache: Cache,
    key: String,
    /// What the key held when the flight began.
    seen: Arc<[u8]>,
    adopted: bool,
}

impl Claim {
    /// The flight a leader hands over to a task.
    fn handed(
        cache: &Cache,
        key: &str,
        leader: crate::flight::Leader<'_>,
        seen: Arc<[u8]>,
    ) -> Claim {
        leader.hand_off();
        Claim {
            cache: cache.clone(),
            key: key.to_owned(),
            seen,
            adopted: false,
        }
    }

    /// Hands the flight over to the task, which adopts it
    /// ([`Flights::adopt`](crate::flight::Flights::adopt): `None` when it is
    /// no longer the key's, an invalidation took it out of the way).
    fn into_parts(mut self) -> (Cache, String, Arc<[u8]>) {
        self.adopted = true;
        (
            self.cache.clone(),
            std::mem::take(&mut self.key),
            self.seen.clone(),
        )
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if !self.adopted {
            drop(self.cache.flights().adopt(&self.key, &self.seen));
        }
    }
}
