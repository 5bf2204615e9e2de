//! Stale-while-revalidate (`stale = N`, [`Policy::stale`](crate::Policy::stale)).
//!
//! ```text
//! read: GET key + PTTL key (one round trip)
//!    │ left > window: fresh ─────────────────────────────────► value (a hit)
//!    │ nothing, or a placeholder: a miss (see `run`)
//!    │ left ≤ window: stale
//!    ▼
//! claim the key's flight ── taken (a refresh or a miss runs) ─► stale value
//!    │ claimed
//!    ▼
//! spawn the refresh ──────────────────────────────────────────► stale value
//!       lease (opt-in) ── busy: another process refreshes ──► done
//!       read again ── fresh: someone refreshed already ─────► done
//!                  └─ gone, or a placeholder: invalidated ──► done
//!       run the body ── cacheable: store it for ttl + window,
//!                       if the key still holds the stale value ► done
//!                    └─ not (an `Err`): warn; the stale value stays
//! ```
//!
//! Values are stored for `ttl + window`: a key with more than `window` left
//! is fresh, one with less is stale. Staleness is read from the key's own TTL
//! (`PTTL`, pipelined with the `GET`), so it needs no clock shared between
//! processes and leaves the stored value as it is: an entry written by a
//! function without `stale` decodes the same. Functions without `stale` read
//! with a plain `GET`.
//!
//! The refresh runs after the call returned, so it owns its function: the
//! body of a `#[cached]` function (whose parameters are then owned) or the
//! closure given to [`Cache::get_or_set_stale`]. It leads the key's flight,
//! so callers of this process that miss meanwhile wait for its value instead
//! of running the body again, and stale readers do not start another one.

use std::future::Future;

use serde::{Serialize, de::DeserializeOwned};
use tracing::Instrument;

use std::sync::Arc;

use super::{Call, Lead, OutOfLine, Read, Shape, resolve};
use crate::call::spec::Target;
use crate::health::{CallStart, Outcome, Warning, warn_limited};
use crate::store::{KeyTtl, Seen, Store};
use crate::{Cache, Error, lease};

/// Runs a call of a function with `stale`: like [`run`](super::run), and a
/// stale value is returned at once while a background run replaces it.
pub(crate) fn run<T, R, B, Fut>(call: Call, body: B, shape: Shape<T, R>) -> impl Future<Output = R>
where
    T: Serialize + DeserializeOwned + 'static,
    R: 'static,
    B: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = R> + Send + 'static,
{
    OutOfLine {
        inner: async move {
            let (outcome, value) = match call.read().await {
                Read::Stale(bytes, generation) => match call.format.decode::<T>(&bytes) {
                    Ok(value) => {
                        call.revalidate(generation, bytes.into(), body, shape.cacheable);
                        (Outcome::Stale, (shape.from_cached)(value))
                    }
                    // Decoded again there, and reported as corrupt.
                    Err(_) => {
                        let read = Read::Found(bytes, generation);
                        resolve(&call, read, body, shape).await
                    }
                },
                read => resolve(&call, read, body, shape).await,
            };
            call.finish(outcome);
            value
        },
    }
}

impl Call {
    /// The read of a call with `stale`: the value and how long its key has
    /// left, in one round trip (a grouped key: after the generation and the
    /// value, a `PTTL` of the key they name).
    pub(super) async fn read_stale(&self, cache: &Cache, target: &Target) -> Read {
        let store = cache.store();
        let read = match target {
            Target::Key(key) => store
                .get_with_ttl(key)
                .await
                .map(|(bytes, left)| (bytes, left, 0)),
            Target::Grouped {
                gen_key,
                head,
                tail,
            } => {
                Box::pin(async {
                    let (generation, bytes) = store.get_grouped(gen_key, head, tail).await?;
                    let left = match &bytes {
                        Some(_) if !self.refresh => store.ttl(&target.key(generation)).await?,
                        _ => KeyTtl::Missing,
                    };
                    Ok::<_, Error>((bytes, left, generation))
                })
                .await
            }
        };
        match cache.health().record(target.shard_key(), read) {
            Ok((bytes, left, generation)) => match Seen::of(bytes) {
                Seen::Value(bytes) if !self.refresh && self.is_stale(left) => {
                    Read::Stale(bytes, generation)
                }
                seen => self.found(seen, generation),
            },
            Err(err) => Box::pin(self.read_failed(cache, target, err)).await,
        }
    }

    /// Whether a key with `left` to live holds a stale value: it was stored
    /// for `ttl + window`, so less than `window` left means `ttl` has passed.
    fn is_stale(&self, left: KeyTtl) -> bool {
        let Some(window) = self.stale else {
            return false;
        };
        match left {
            KeyTtl::ExpiresIn(left) => left <= window,
            // Expired between the GET and the PTTL.
            KeyTtl::Missing => true,
            KeyTtl::Persistent => false,
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
        cacheable: fn(&R) -> Option<&T>,
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
        if !cache.flights().try_claim(&key, stale) {
            return;
        }
        let claim = Claim {
            cache: cache.clone(),
            key,
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
        runtime.spawn(refresh.refresh(claim, body, cacheable).instrument(span));
    }

    /// The call's settings, owned, for a refresh that outlives the call.
    fn detach(&self) -> Call {
        Call {
            cache: self.cache.clone(),
            target: self.target.clone(),
            bypass: self.bypass,
            family: self.family,
            ttl: self.ttl,
            jitter: self.jitter,
            lease: self.lease,
            stale: self.stale,
            refresh: false,
            local: self.local,
            format: self.format,
            span: self.span.clone(),
            start: CallStart::now(),
        }
    }

    /// The background refresh of one key: takes the lease (with `lease`),
    /// checks that nobody refreshed the key since it was read, runs the body
    /// and stores its value. Counts the write (`stores`), not a call.
    async fn refresh<T, R, B, Fut>(self, claim: Claim, body: B, cacheable: fn(&R) -> Option<&T>)
    where
        T: Serialize + DeserializeOwned,
        B: FnOnce() -> Fut,
        Fut: Future<Output = R>,
    {
        let (cache, key) = claim.into_parts();
        let Some(flight) = cache.flights().adopt(&key) else {
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
        // or a placeholder (invalidated since, and maybe being filled): stop,
        // the next call misses. A cache that cannot be read now would not
        // take the value either: stop too (the stale value stays; the next
        // stale read tries again). Otherwise the refreshed value replaces the
        // stale one only if the key still holds it when the body is done.
        match cache
            .health()
            .record(&key, cache.store().get_with_ttl(&key).await)
        {
            Ok((bytes, left)) => match Seen::of(bytes) {
                Seen::Value(bytes) if !self.is_stale(left) => {
                    lead.flight.publish(bytes.into());
                    self.store(&cache, &key, lead, None).await;
                    return;
                }
                Seen::Value(bytes) => lead.flight.rebase(bytes.into()),
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
        let encoded = {
            let value = self.body(body).await;
            cacheable(&value).map(|cached| self.format.encode_round_trip(cached))
        };
        if encoded.is_none() {
            let _span = self.span.enter();
            warn_limited!(
                cache.health().warnings(),
                Warning::StaleRefresh,
                function = %self.family(),
                key = %key,
                "redis-memo: the background refresh of a stale value returned an error, which is \
                 not cached; the stale value is served until its stale window ends (the next \
                 stale read retries), then the function runs inline"
            );
        }
        self.store(&cache, &key, lead, encoded).await;
    }
}

/// A key's flight claimed for a refresh that has not started yet. Dropped
/// before the refresh adopts it (the task never ran), it ends the flight.
struct Claim {
    cache: Cache,
    key: String,
    adopted: bool,
}

impl Claim {
    /// Hands the flight over to the refresh, which adopts it.
    fn into_parts(mut self) -> (Cache, String) {
        self.adopted = true;
        (self.cache.clone(), std::mem::take(&mut self.key))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if !self.adopted {
            drop(self.cache.flights().adopt(&self.key));
        }
    }
}
