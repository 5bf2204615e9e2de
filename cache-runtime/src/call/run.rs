//! The get-or-run path of one call.
//!
//! ```text
//! local tier (opt-in) ── hit, decodes ───────────────────────► value (no I/O)
//!    │ no local entry (the read below fills it)
//!    ▼
//! read: GET ── a value that decodes ─────────────────────────► value
//!    │ nothing: claim the key, SET key <placeholder> NX PX ── taken meanwhile:
//!    │                                      a value ─────────► value
//!    │ a placeholder: another call runs the body (in this process or another)
//!    │ a value that does not decode, or one `refresh` replaces
//!    │ the read failed (counted, warned): run, store nothing
//!    ▼
//! join: single-flight in this process, among the callers that saw the key
//!       hold the same ─────────────────────────── waiter ────► the leader's value
//!    │ leader
//!    ▼
//!       with `lease`, another process's placeholder: wait ─► that process's value
//!    │ our placeholder, or the wait ended without a value
//!    ▼
//! run the body (renewing the placeholder) ── cacheable? ── store it, only if
//!       the key still holds what the read saw ──────────────► value
//! ```
//!
//! The value replaces what the key held when the call looked (its placeholder,
//! another process's, or the undecodable value) with a compare-and-set, so an
//! invalidation, a `set` or another client's `DEL` during the body wins: the
//! caller gets its value, the store is refused (`fills_refused`). Callers join
//! only a flight that began from what they saw themselves, so none receives
//! the value of a body that began before the key last changed.
//!
//! Only [`run`] depends on the value's type: it decodes, runs the body and
//! encodes. Everything else (reads, claims, writes, single-flight, leases,
//! counters, warnings) is in [`Call`]'s methods, compiled once for every
//! cached function, so that each one adds little to a build.

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::{Serialize, de::DeserializeOwned};
use tracing::{Instrument, Span};

use super::refresh::take_refresh;
use super::reuse::{self, Reuse};
use super::spec::{Age, KeyText, Policy, Spec, Target, Windows};
use crate::cache::Cache;
use crate::cache::{Write, Written};
use crate::codec::{self, Format, now_ms};
use crate::error::Error;
use crate::flight::{Leader, Outcome as FlightOutcome, Role};
use crate::health::{CallStart, Counter, Family, Outcome, Warning, info_limited, warn_limited};
use crate::key::{FnName, KeyBuilder};
use crate::local::LocalTier;
use crate::store::{Claim, Held, Seen, Store, is_placeholder};
use crate::{lease, log};

/// Values that know when they stop being fresh: stale-while-revalidate, and
/// the soft timeout that needs a body run in the background. A part of this
/// path, so it shares the call's steps.
pub(crate) mod fresh;

/// One call of a cached function (or of [`Cache::get_or_set`]): where its
/// value lives and how it is cached. Everything about the call that does not
/// depend on the value's type.
#[derive(Debug)]
pub struct Call {
    /// `None`: no cache to use; the body just runs.
    cache: Option<Cache>,
    /// `None`: the cache is not used (skipped, or the key could not be built).
    target: Option<Target>,
    /// Why the cache is not used, when it is not.
    bypass: Outcome,
    family: CallFamily,
    /// How long values live, and the windows after that.
    windows: Windows,
    lease: Option<Duration>,
    refresh: bool,
    /// Whether the cache's local tier serves and keeps this call's value.
    local: bool,
    /// What this process holds for the call, looked up when the call was
    /// made (see `Call::new`).
    held: HeldHere,
    format: Format,
    span: Span,
    start: CallStart,
}

/// What this process holds for a call, looked up when the call was made,
/// so that its read does not look again.
#[derive(Debug, Clone, Default)]
enum HeldHere {
    /// Not looked up (no store in the process, a grouped key, a refresh):
    /// the read looks.
    #[default]
    NotLooked,
    /// Nothing, or a placeholder.
    Absent,
    Held(Arc<Held>),
}

impl From<Option<Arc<Held>>> for HeldHere {
    fn from(held: Option<Arc<Held>>) -> HeldHere {
        held.map_or(HeldHere::Absent, HeldHere::Held)
    }
}

/// Whose counters a call adds to.
#[derive(Debug, Clone, Copy)]
enum CallFamily {
    Function(FnName<'static>),
    /// A key used directly: its family is its first `len` bytes.
    Key {
        len: usize,
    },
}

/// What the read found.
enum Read {
    /// A value held in this process (the local tier, the in-memory store),
    /// its generation (grouped keys), and what finding it is (a local hit,
    /// a hit).
    Held(Arc<Held>, u64, Outcome),
    /// Stored bytes, and the generation they were read under (grouped keys).
    Found(Vec<u8>, u64),
    /// Run the body and store its value (under that generation) over what
    /// the key held, `seen` (`None`: unknown, the read failed: store nothing).
    Run {
        outcome: Outcome,
        generation: u64,
        seen: Option<Seen>,
    },
    /// Run the body without the cache.
    Bypass(Outcome),
}

/// What joining the callers of the key gave.
enum Join<'a> {
    /// Another caller's value, encoded.
    Shared(Arc<[u8]>),
    /// This caller runs the body.
    Lead(Lead<'a>),
}

/// The caller that runs the body: its flight, and the lease key it holds
/// (a stale value's background refresh, with `lease`).
struct Lead<'a> {
    flight: Leader<'a>,
    lease: Option<lease::Token>,
}

/// How claiming the key of a call that read nothing went.
enum Claimed {
    /// The key holds this placeholder, this call's or another's.
    Placeholder(Arc<[u8]>),
    /// A value appeared in between.
    Value(Vec<u8>),
    /// The claim failed: run the body, store nothing.
    Failed,
}

impl Call {
    /// A call of a `#[cached]` function whose `skip_cache` was true: it neither
    /// reads nor writes (it is still counted).
    pub fn skip(cache: Option<Cache>, spec: &Spec<'static>) -> Call {
        let mut call = Call::bare(cache, CallFamily::Function(spec.name()), spec.policy());
        call.bypass = Outcome::Skipped;
        call.with_span()
    }

    /// A call of a `#[cached]` function with these arguments. The key is built
    /// only when there is a cache to use it with.
    ///
    /// A call whose value this process holds (a local tier, the in-memory
    /// store) finds it by what identifies the call, the function and its
    /// argument bytes, when it found it before and the key has not changed
    /// since: then the key's SHA-256 is not computed and no key is looked up
    /// (see `store::shortcut`).
    pub fn new(cache: Option<Cache>, args: &KeyBuilder, spec: &Spec<'static>) -> Call {
        let mut call = Call::bare(cache, CallFamily::Function(spec.name()), spec.policy());
        if let Some(cache) = &call.cache {
            let local = cache.local().filter(|_| call.local);
            let memory = cache.store().memory();
            let held_here =
                (local.is_some() || memory.is_some()) && !spec.is_grouped() && !call.refresh;
            let id = held_here
                .then(|| args.call_id(spec.prefix(), spec.name(), spec.version_in(cache)))
                .flatten();
            let shortcut = match (id, local, memory) {
                (Some(id), Some(local), _) => local.shortcut(&id),
                (Some(id), None, Some(memory)) => memory.shortcut(&id),
                _ => None,
            };
            if let Some((key, held)) = shortcut {
                call.target = Some(Target::Key(KeyText::Shared(key)));
                call.held = HeldHere::Held(held);
                return call.with_span();
            }
            match spec.target(cache, args) {
                Ok(target) => {
                    // Found the long way, and the shortcut remembered.
                    call.held = match (id, &target, local, memory) {
                        (Some(id), Target::Key(key), Some(local), _) => {
                            HeldHere::from(local.get_for(id, key))
                        }
                        (Some(id), Target::Key(key), None, Some(memory)) => {
                            HeldHere::from(memory.held_for(id, key))
                        }
                        _ => HeldHere::NotLooked,
                    };
                    call.target = Some(target);
                }
                Err(err) => {
                    call.bypass = Outcome::Error;
                    warn_limited!(
                        cache.health().warnings(),
                        Warning::Key,
                        function = %spec.name(),
                        error = %err,
                        "redis-memo: cannot build the cache key (an argument's Serialize failed); running uncached"
                    );
                }
            }
        }
        call.with_span()
    }

    /// A call of [`Cache::get_or_set`]: `key` as given.
    pub(crate) fn direct(cache: &Cache, key: &str, policy: &Policy) -> Call {
        let len = key.find(':').map_or(0, |i| i + 1);
        let mut call = Call::bare(Some(cache.clone()), CallFamily::Key { len }, policy);
        call.target = Some(Target::Key(KeyText::Built(key.to_owned())));
        call.with_span()
    }

    fn bare(cache: Option<Cache>, family: CallFamily, policy: &Policy) -> Call {
        let format = cache
            .as_ref()
            .map_or_else(Format::default, |cache| policy.format(cache));
        Call {
            bypass: if cache.is_some() {
                Outcome::Miss
            } else {
                Outcome::Uncached
            },
            cache,
            target: None,
            family,
            windows: policy.windows(),
            lease: policy.lease_duration(),
            refresh: take_refresh(),
            local: policy.uses_local(),
            held: HeldHere::NotLooked,
            format,
            span: Span::none(),
            start: CallStart::now(),
        }
    }

    /// Opens the call's debug-level span, named after its family.
    fn with_span(mut self) -> Call {
        self.span = tracing::debug_span!(
            target: "redis_memo",
            "redis_memo::call",
            function = %self.family(),
            outcome = tracing::field::Empty,
            fill = tracing::field::Empty,
        );
        self
    }

    fn family(&self) -> Family<'_> {
        match (self.family, &self.target) {
            (CallFamily::Function(name), _) => Family::Function(name),
            (CallFamily::Key { len }, Some(Target::Key(key))) => {
                Family::Key(Cow::Borrowed(&key[..len]))
            }
            (CallFamily::Key { .. }, _) => Family::Key(Cow::Borrowed("")),
        }
    }

    /// The cache and the target, when the call uses the cache.
    fn parts(&self) -> Option<(&Cache, &Target)> {
        self.cache.as_ref().zip(self.target.as_ref())
    }

    /// Reads the stored value. Counts nothing; warns (rate-limited) on
    /// errors. What reads Redis runs in the call's span; a hit in this
    /// process does not enter it (wrapping the whole read would move its
    /// large future on every call).
    ///
    /// This and the other steps are compiled once for all cached functions:
    /// only the driver that awaits them is typed.
    async fn read(&self) -> Read {
        let Some((cache, target)) = self.parts() else {
            return Read::Bypass(self.bypass);
        };
        let local = self.local_tier(cache);
        let looked = match &self.held {
            HeldHere::Held(held) => {
                tokio::task::consume_budget().await;
                let outcome = match local {
                    Some(_) => Outcome::LocalHit,
                    None => Outcome::Hit,
                };
                return Read::Held(held.clone(), 0, outcome);
            }
            HeldHere::Absent => true,
            HeldHere::NotLooked => false,
        };
        if let (Some(local), false, false) = (local, self.refresh, looked)
            && let Some((bytes, generation)) = super::local_read::hit(local, target)
        {
            // No I/O: take part in cooperative scheduling, like an await
            // on a socket would.
            tokio::task::consume_budget().await;
            return Read::Held(bytes, generation, Outcome::LocalHit);
        }
        if let (Some(memory), Target::Key(key), false) =
            (cache.store().memory(), target, self.refresh)
        {
            // In this process: no bytes to copy, maybe nothing to decode.
            let held = match looked && local.is_none() {
                true => None,
                false => memory.held(key).await,
            };
            return match held {
                Some(held) => Read::Held(held, 0, Outcome::Hit),
                // Nothing, or a placeholder: the claim tells which.
                None => Read::Run {
                    outcome: Outcome::Miss,
                    generation: 0,
                    seen: Some(Seen::Absent),
                },
            };
        }
        // The GET below is not boxed: its future is large (redis-rs's alone
        // is over 1 KiB), which makes every call's future large, but
        // allocating it would cost each Redis hit more (about 10% of the
        // hits/s at 64 tasks) than moving it costs a local one.
        let health = cache.health();
        if !health.allow(target.shard_key()) {
            return Read::Bypass(Outcome::BreakerSkipped);
        }
        let span = self.span.clone();
        let read = match (target, local) {
            // A refresh reads what its value replaces, and fills no tier.
            (Target::Key(key), _) if self.refresh => cache
                .store()
                .get(key)
                .instrument(span)
                .await
                .map(|bytes| (bytes, 0)),
            (_, Some(local)) => {
                Box::pin(super::local_read::read_through(cache, local, target))
                    .instrument(span)
                    .await
            }
            (Target::Key(key), None) => cache
                .store()
                .get(key)
                .instrument(span)
                .await
                .map(|bytes| (bytes, 0)),
            (
                Target::Grouped {
                    gen_key,
                    head,
                    tail,
                },
                None,
            ) => Box::pin(cache.store().get_grouped(gen_key, head, tail))
                .instrument(span)
                .await
                .map(|(generation, bytes)| (bytes, generation)),
        };
        let recorded = {
            let _span = self.span.enter();
            health.record(target.shard_key(), read)
        };
        match recorded {
            Ok((bytes, generation)) => self.found(Seen::of(bytes), generation),
            Err(err) => Box::pin(self.read_failed(cache, target, err)).await,
        }
    }

    /// What a read that failed leads to: a key of another Redis type is
    /// replaced like a value that does not decode; otherwise the body runs
    /// and nothing is stored.
    async fn read_failed(&self, cache: &Cache, target: &Target, err: Error) -> Read {
        if is_wrong_type(&err) {
            return self.wrong_type(cache, target).await;
        }
        self.failed(Warning::ReadFailed, &err);
        match target {
            Target::Key(_) => Read::Run {
                outcome: Outcome::Error,
                generation: 0,
                seen: None,
            },
            // No generation to write under.
            Target::Grouped { .. } => Read::Bypass(Outcome::Error),
        }
    }

    /// What a read that found `seen` under `generation` leads to.
    fn found(&self, seen: Seen, generation: u64) -> Read {
        let outcome = if self.refresh {
            Outcome::Refreshed
        } else {
            Outcome::Miss
        };
        match seen {
            Seen::Value(bytes) if !self.refresh => Read::Found(bytes, generation),
            seen => Read::Run {
                outcome,
                generation,
                seen: Some(seen),
            },
        }
    }

    /// The key is of another Redis type (a hash, a list, ...): not a value
    /// any codec wrote. It is reported like a value that does not decode and
    /// deleted, so that the body's value can take its place.
    async fn wrong_type(&self, cache: &Cache, target: &Target) -> Read {
        let Target::Key(key) = target else {
            return Read::Bypass(Outcome::Error);
        };
        self.corrupt(0, &Error::Decode("the key holds another Redis type".into()));
        match cache.write(Write::Delete(&[key]), None).await {
            Ok(_) => Read::Run {
                outcome: Outcome::Corrupt,
                generation: 0,
                seen: Some(Seen::Absent),
            },
            Err(err) => {
                self.failed(Warning::ReadFailed, &err);
                Read::Run {
                    outcome: Outcome::Corrupt,
                    generation: 0,
                    seen: None,
                }
            }
        }
    }

    /// Where stored `bytes` are in their life: a value that carries no times
    /// (not enveloped, or a function without windows) is fresh.
    fn age(&self, bytes: &[u8]) -> Age {
        match codec::unwrap(bytes) {
            Some((times, _)) if self.windows.enveloped() => self.windows.age(times, now_ms()),
            _ => Age::Fresh,
        }
    }

    /// What a call that cannot refresh in the background does with a value
    /// of `age` (a stale value is expired to it): `hit` is how finding a
    /// fresh one counts.
    fn judged(&self, age: Age, hit: Outcome) -> Judged {
        match age {
            Age::Fresh => Judged::Serve(hit),
            Age::Throttled { stale: true } => Judged::Serve(Outcome::Stale),
            Age::Throttled { stale: false } => Judged::Serve(Outcome::FailSafe),
            Age::Stale { kept } | Age::Expired { kept } => Judged::Run { kept },
        }
    }

    /// The leader's body failed and the key holds a value kept past its
    /// TTL: the value is kept, marked not to run the body again for
    /// `fail_safe_throttle` (for every process), and handed to the callers
    /// waiting here; the bytes of the value to return. When the key no
    /// longer holds what was read: what it holds now if that is a value to
    /// return (another caller kept it, or refreshed it), `None` otherwise (it
    /// was invalidated: an invalidation wins, the error is returned).
    async fn fall_back(&self, cache: &Cache, key: &str, lead: Lead<'_>) -> Option<Vec<u8>> {
        let kept = self.throttle(cache, key, &lead).await;
        let Lead { mut flight, lease } = lead;
        let mut value = None;
        if kept
            && let Some(seen) = flight.seen().cloned()
            && let Some((_, inner)) = codec::unwrap(&seen)
        {
            flight.publish(inner.into());
            value = Some(inner.to_vec());
            let _span = self.span.enter();
            warn_limited!(
                cache.health().warnings(),
                Warning::FailSafe,
                key,
                throttle = ?self.windows.throttle,
                "redis-memo: the function returned an error; returned the value kept past its \
                 ttl instead (fail_safe), and the function is not run again for this key for \
                 fail_safe_throttle; once the kept value's window ends, callers get the errors: \
                 look at what the function calls"
            );
        }
        self.store(cache, key, Lead { flight, lease }, None).await;
        if value.is_none()
            && let Ok(Some(bytes)) = cache.store().get(key).await
            && !is_placeholder(&bytes)
            && !matches!(self.age(&bytes), Age::Expired { kept: false })
        {
            value = Some(bytes);
        }
        value
    }

    /// Marks the value the leader's flight began from (an enveloped value)
    /// not to run the body again for the key for `fail_safe_throttle`, if
    /// the key still holds it; whether it did. Not counted as a store.
    async fn throttle(&self, cache: &Cache, key: &str, lead: &Lead<'_>) -> bool {
        let Some(seen) = lead.flight.seen() else {
            return false;
        };
        let Some((times, inner)) = codec::unwrap(seen) else {
            return false;
        };
        let now = now_ms();
        let Some(left) = self.windows.left(times, now) else {
            return false;
        };
        let bytes = codec::wrap(self.windows.throttled(times, now), inner);
        let write = Write::Fill {
            key,
            seen,
            bytes: &bytes,
            ttl: Some(left),
            local: self.local,
        };
        matches!(cache.write(write, None).await, Ok(Written::Stored))
    }

    /// The cache's local tier, when this call uses it.
    fn local_tier<'a>(&self, cache: &'a Cache) -> Option<&'a LocalTier> {
        cache.local().filter(|_| self.local)
    }

    /// Warns, rate-limited, about a cache operation that failed (and counts
    /// a read that failed for misconfiguration; writes count themselves).
    fn failed(&self, kind: Warning, err: &Error) {
        let Some(cache) = &self.cache else { return };
        if let Some(advice) = err.misconfiguration() {
            if kind != Warning::WriteFailed {
                cache
                    .health()
                    .count(&self.family(), Counter::Misconfigured, 1);
            }
            let _span = self.span.enter();
            warn_limited!(
                cache.health().warnings(),
                Warning::Misconfigured,
                function = %self.family(),
                error = %err,
                "redis-memo: the cache is misconfigured and caches nothing: {advice}"
            );
            return;
        }
        let what = match kind {
            Warning::WriteFailed => "cache write failed; the value is returned but not cached",
            _ => "cache read failed; running the function uncached",
        };
        let _span = self.span.enter();
        warn_limited!(
            cache.health().warnings(),
            kind,
            function = %self.family(),
            error = %err,
            "redis-memo: {what}"
        );
    }

    /// Reports a stored value that does not decode: a miss that the write
    /// after the body overwrites.
    fn corrupt(&self, generation: u64, err: &Error) {
        let Some((cache, target)) = self.parts() else {
            return;
        };
        let _span = self.span.enter();
        warn_limited!(
            cache.health().warnings(),
            Warning::Corrupt,
            key = %target.key(generation),
            error = %err,
            "redis-memo: cached value does not decode; treating it as a miss and overwriting it"
        );
    }

    /// Makes the key of a call that read nothing hold a placeholder, so
    /// that Redis can tell whether the key changes while the body runs.
    async fn claim(&self, cache: &Cache, key: &str) -> Claimed {
        // The key may go away between a lost claim and the read after it:
        // try again, a few times.
        // The invalidation Redis sends back for the placeholder is this
        // process's own, not a change to keep the value from the tier for.
        let _echo = self.local_tier(cache).map(|tier| tier.begin_write(key));
        for _ in 0..3 {
            let placeholder = cache.placeholders().next();
            let claim = cache
                .store()
                .claim(key, &placeholder, cache.placeholder_ttl())
                .await;
            match cache.health().record(key, claim) {
                Ok(Claim::Won) => return Claimed::Placeholder(placeholder),
                Ok(Claim::Lost(Seen::Placeholder(theirs))) => return Claimed::Placeholder(theirs),
                Ok(Claim::Lost(Seen::Value(bytes))) => return Claimed::Value(bytes),
                Ok(Claim::Lost(Seen::Absent)) => {}
                Err(err) => {
                    cache.count_write(Some(&self.family()), Err(Some(&err)));
                    self.failed(Warning::WriteFailed, &err);
                    return Claimed::Failed;
                }
            }
        }
        Claimed::Failed
    }

    /// Joins the callers of `key` in this process that saw it hold `seen`:
    /// one runs the body, the others get its value. With `lease`, a leader
    /// that found another process's placeholder first waits for that
    /// process's value.
    fn join<'a>(
        &'a self,
        cache: &'a Cache,
        key: &'a str,
        seen: Option<Arc<[u8]>>,
    ) -> impl Future<Output = Join<'a>> + 'a {
        self.join_inner(cache, key, seen)
            .instrument(self.span.clone())
    }

    async fn join_inner<'a>(
        &'a self,
        cache: &'a Cache,
        key: &str,
        seen: Option<Arc<[u8]>>,
    ) -> Join<'a> {
        let mut flight = match cache.flights().join(key, seen.as_ref()) {
            Role::Leader(leader) => leader,
            Role::Waiter(waiter) => match waiter.outcome().await {
                FlightOutcome::Lead(leader) => leader,
                FlightOutcome::Value(bytes) => return Join::Shared(bytes),
                // A batch whose loader did not return this element: this
                // call runs its own body, and stores nothing (the batch took
                // its placeholder back).
                FlightOutcome::Absent => cache.flights().detached_leader(key),
            },
        };
        let (Some(duration), Some(store)) = (self.lease, cache.store().redis()) else {
            return Join::Lead(Lead {
                flight,
                lease: None,
            });
        };
        let Some(theirs) = flight
            .seen()
            .filter(|seen| is_placeholder(seen) && !cache.placeholders().is_own(seen))
            .cloned()
        else {
            return Join::Lead(Lead {
                flight,
                lease: None,
            });
        };
        match lease::await_value(store, key, theirs, duration).await {
            lease::Awaited::Value(bytes) => {
                let bytes: Arc<[u8]> = bytes.into();
                flight.publish(bytes.clone());
                return Join::Shared(bytes);
            }
            // Its body failed, or the key was invalidated: claim it afresh.
            lease::Awaited::Gone => match self.claim(cache, key).await {
                Claimed::Placeholder(placeholder) => flight.rebase(placeholder),
                Claimed::Value(bytes) => {
                    let bytes: Arc<[u8]> = bytes.into();
                    flight.publish(bytes.clone());
                    return Join::Shared(bytes);
                }
                Claimed::Failed => {}
            },
            lease::Awaited::TimedOut(placeholder) => {
                flight.rebase(placeholder);
                let _span = self.span.enter();
                warn_limited!(
                    cache.health().warnings(),
                    Warning::Lease,
                    key,
                    "redis-memo: no value from the process holding the lease in time; running the \
                     function (its value may replace that process's placeholder)"
                );
            }
        }
        Join::Lead(Lead {
            flight,
            lease: None,
        })
    }

    /// Runs the leader's body, renewing the placeholder it holds the key with
    /// (if any) every third of `placeholder_ttl`, so that a body of any length
    /// keeps its key claimed.
    async fn run_body<R, B, Fut>(&self, cache: &Cache, key: &str, lead: &Lead<'_>, body: B) -> R
    where
        B: FnOnce() -> Fut,
        Fut: Future<Output = R>,
    {
        let body = self.body(body);
        let Some(placeholder) = lead.flight.seen().filter(|seen| is_placeholder(seen)) else {
            return body.await;
        };
        tokio::select! {
            biased;
            value = body => value,
            never = renew_forever(cache, key, placeholder) => match never {},
        }
    }

    /// Stores what the leader's body gave (`None`: nothing cacheable, such as
    /// an `Err`) over what the key held when the flight began, hands it to
    /// the waiters, releases the lease and ends the flight.
    fn store<'a>(
        &'a self,
        cache: &'a Cache,
        key: &'a str,
        lead: Lead<'a>,
        encoded: Option<Result<Vec<u8>, Error>>,
    ) -> impl Future<Output = ()> + 'a {
        self.store_inner(cache, key, lead, encoded)
            .instrument(self.span.clone())
    }

    async fn store_inner(
        &self,
        cache: &Cache,
        key: &str,
        lead: Lead<'_>,
        encoded: Option<Result<Vec<u8>, Error>>,
    ) {
        let Lead { mut flight, lease } = lead;
        let mut stored = false;
        match encoded {
            Some(Ok(bytes)) => {
                let bytes: Arc<[u8]> = bytes.into();
                flight.publish(bytes.clone());
                if let Some(seen) = flight.seen() {
                    stored = self.fill(cache, key, seen, &bytes).await;
                }
            }
            // The same type fails the same way on every call: one warning
            // per function.
            Some(Err(err)) if cache.health().first_time(&self.family()) => {
                let _span = self.span.enter();
                log::warning!(
                    key,
                    error = %err,
                    "redis-memo: cannot store this function's value (it is returned, not cached); \
                     make its type encode to something that decodes back (reported once per function)"
                );
            }
            Some(Err(_)) => {}
            None => {}
        }
        // A placeholder of this cache that nothing replaced (the body failed,
        // or its value was not stored) would keep processes with a lease
        // waiting: take it back, unless a waiter takes the flight over (and
        // runs the body against it).
        if let Some(seen) = flight.seen()
            && !stored
            && !flight.hands_over()
            && cache.placeholders().is_own(seen)
            && let Err(err) = cache.store().delete_if(key, seen).await
        {
            log::debug!(key, error = %err, "redis-memo: placeholder not removed; it expires by itself");
        }
        if let (Some(token), Some(store)) = (lease, cache.store().redis())
            && let Err(err) = lease::release(store, key, token).await
        {
            log::debug!(key, error = %err, "redis-memo: lease not released; it expires by itself");
        }
        drop(flight); // ends the flight, after the write
    }

    /// Stores the body's encoded value over `seen`, what the key held when
    /// the call looked; whether it did. Counted and logged, never returned.
    async fn fill(&self, cache: &Cache, key: &str, seen: &[u8], bytes: &[u8]) -> bool {
        let stored = self.windows.stored(cache);
        let enveloped = stored.times.map(|times| codec::wrap(times, bytes));
        let write = Write::Fill {
            key,
            seen,
            bytes: enveloped.as_deref().unwrap_or(bytes),
            ttl: stored.key_ttl,
            local: self.local,
        };
        match cache.write(write, Some(&self.family())).await {
            Ok(Written::Refused) => {
                self.span.record("fill", "refused");
                let _span = self.span.enter();
                info_limited!(
                    cache.health().warnings(),
                    Warning::FillRefused,
                    key,
                    "redis-memo: a value was returned but not stored, because its key was \
                     invalidated or rewritten while the function ran (an invalidation wins over \
                     a body that began before it; stats().fills_refused counts these). Expected \
                     now and then; if it is frequent, the function's data changes faster than \
                     the function runs"
                );
                false
            }
            Ok(_) => {
                self.span.record("fill", "stored");
                true
            }
            Err(Error::ValueTooLarge { size, limit }) => {
                self.span.record("fill", "too_large");
                let _span = self.span.enter();
                warn_limited!(
                    cache.health().warnings(),
                    Warning::NotStored,
                    key,
                    size,
                    limit,
                    "redis-memo: value larger than max_value_bytes; returned but not cached"
                );
                false
            }
            Err(err) => {
                self.span.record("fill", "failed");
                self.failed(Warning::WriteFailed, &err);
                false
            }
        }
    }

    /// Counts the finished call and records its outcome in its span.
    fn finish(&self, outcome: Outcome) {
        if let Some(cache) = &self.cache {
            cache.health().observe(&self.family(), outcome, self.start);
        }
        if !self.span.is_disabled() {
            self.span.record("outcome", outcome.as_str());
            let _entered = self.span.enter();
            log::debug!(outcome = outcome.as_str(), "redis-memo: cached call done");
        }
    }

    /// Runs the body in the call's span. Boxed: the body's future is not part
    /// of the call's future, which a hit moves and polls.
    fn body<R, B, Fut>(&self, body: B) -> impl Future<Output = R> + use<R, B, Fut>
    where
        B: FnOnce() -> Fut,
        Fut: Future<Output = R>,
    {
        Box::pin(body()).instrument(self.span.clone())
    }
}

/// Renews the placeholder `key` holds every third of `placeholder_ttl`,
/// until dropped (when the body is done).
async fn renew_forever(cache: &Cache, key: &str, placeholder: &[u8]) -> Infallible {
    let ttl = cache.placeholder_ttl();
    let mut every = tokio::time::interval_at(tokio::time::Instant::now() + ttl / 3, ttl / 3);
    loop {
        every.tick().await;
        if let Err(err) = cache.store().renew(key, placeholder, ttl).await {
            log::debug!(key, error = %err, "redis-memo: placeholder not renewed");
        }
    }
}

/// Whether a command failed because its key is of another Redis type.
fn is_wrong_type(err: &Error) -> bool {
    err.redis_error()
        .is_some_and(|err| err.code() == Some("WRONGTYPE"))
}

/// How a call's return value `R` relates to the cached value `T`.
pub(crate) struct Shape<T, R> {
    /// The part of a returned value to cache, if any (`Ok`, `Some`, or the value).
    pub(crate) cacheable: fn(&R) -> Option<&T>,
    /// Whether a returned value is a failure (an `Err`): what `fail_safe`
    /// replaces with a kept value.
    pub(crate) fails: fn(&R) -> bool,
    /// The value to return for a cached one.
    pub(crate) from_cached: fn(T) -> R,
    /// How hits held in this process reuse decoded values (`Clone` types).
    pub(crate) reuse: Option<Reuse<T>>,
}

impl<T, R> Clone for Shape<T, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T, R> Copy for Shape<T, R> {}

impl<T> Shape<T, T> {
    /// Every value is cached as it is.
    pub(crate) fn plain(reuse: Option<Reuse<T>>) -> Self {
        Shape {
            cacheable: |v| Some(v),
            fails: |_| false,
            from_cached: std::convert::identity,
            reuse,
        }
    }
}

impl<T, E> Shape<T, Result<T, E>> {
    /// Only `Ok` is cached.
    pub(crate) fn result(reuse: Option<Reuse<T>>) -> Self {
        Shape {
            cacheable: |r| r.as_ref().ok(),
            fails: Result::is_err,
            from_cached: Ok,
            reuse,
        }
    }
}

impl<T> Shape<T, Option<T>> {
    /// Only `Some` is cached.
    pub(crate) fn option(reuse: Option<Reuse<T>>) -> Self {
        Shape {
            cacheable: Option::as_ref,
            fails: |_| false,
            from_cached: Some,
            reuse,
        }
    }
}

/// Runs a call: the cached value when there is one, else the body (creating
/// its future only then), caching what `shape` picks from its result.
pub(crate) fn run<T, R, B, Fut>(call: Call, body: B, shape: Shape<T, R>) -> impl Future<Output = R>
where
    T: Serialize + DeserializeOwned,
    B: FnOnce() -> Fut,
    Fut: Future<Output = R>,
{
    OutOfLine {
        inner: async move {
            let read = call.read().await;
            let (outcome, value) = resolve(&call, read, body, shape).await;
            call.finish(outcome);
            value
        },
    }
}

pin_project_lite::pin_project! {
    /// A future whose `poll` is never inlined into its caller's: the state
    /// machine of a cached call is compiled once per cached function, not once
    /// more in every future that awaits it.
    struct OutOfLine<F> {
        #[pin]
        inner: F,
    }
}

impl<F: Future> Future for OutOfLine<F> {
    type Output = F::Output;

    #[inline(never)]
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        self.project().inner.poll(cx)
    }
}

/// What a call does after its read.
async fn resolve<T, R, B, Fut>(call: &Call, read: Read, body: B, shape: Shape<T, R>) -> (Outcome, R)
where
    T: Serialize + DeserializeOwned,
    B: FnOnce() -> Fut,
    Fut: Future<Output = R>,
{
    let format = call.format;
    let (outcome, generation, seen, kept) = match read {
        Read::Held(held, generation, outcome) => {
            let age = call.age(held.bytes());
            match reuse::decode(format, &held, shape.reuse) {
                Ok(value) => match call.judged(age, outcome) {
                    Judged::Serve(outcome) => return (outcome, (shape.from_cached)(value)),
                    Judged::Run { kept } => {
                        let seen = Seen::Value(held.bytes().to_vec());
                        (Outcome::Miss, generation, Some(seen), kept.then_some(value))
                    }
                },
                Err(err) => {
                    call.corrupt(generation, &err);
                    let seen = Seen::Value(held.bytes().to_vec());
                    (Outcome::Corrupt, generation, Some(seen), None)
                }
            }
        }
        Read::Found(bytes, generation) => {
            let age = call.age(&bytes);
            match format.decode::<T>(&bytes) {
                Ok(value) => match call.judged(age, Outcome::Hit) {
                    Judged::Serve(outcome) => return (outcome, (shape.from_cached)(value)),
                    Judged::Run { kept } => (
                        Outcome::Miss,
                        generation,
                        Some(Seen::Value(bytes)),
                        kept.then_some(value),
                    ),
                },
                Err(err) => {
                    call.corrupt(generation, &err);
                    (Outcome::Corrupt, generation, Some(Seen::Value(bytes)), None)
                }
            }
        }
        Read::Run {
            outcome,
            generation,
            seen,
        } => (outcome, generation, seen, None),
        Read::Bypass(outcome) => return (outcome, call.body(body).await),
    };
    // The miss path in its own allocation: the future of a hit, moved and
    // polled on every call, stays small.
    Box::pin(miss(call, outcome, generation, seen, kept, body, shape)).await
}

/// After a read that gave no value to return: claim the key if it held
/// nothing, join the other callers of the key that saw it hold the same, run
/// the body if this caller leads, store its value over what the key held.
/// With a value `kept` past its TTL (`fail_safe`), a body that fails returns
/// it instead.
async fn miss<T, R, B, Fut>(
    call: &Call,
    outcome: Outcome,
    generation: u64,
    seen: Option<Seen>,
    kept: Option<T>,
    body: B,
    shape: Shape<T, R>,
) -> (Outcome, R)
where
    T: Serialize + DeserializeOwned,
    B: FnOnce() -> Fut,
    Fut: Future<Output = R>,
{
    let format = call.format;
    let Some((cache, target)) = call.parts() else {
        return (outcome, call.body(body).await);
    };
    let key = target.key(generation);
    // The invalidation Redis sends the local tier for the placeholder is this
    // process's own, not a change to keep the body's value out of the tier
    // for: expected until the value is stored.
    let _claim = match (&seen, call.local_tier(cache)) {
        (Some(Seen::Absent), Some(tier)) => Some(tier.begin_write(&key)),
        _ => None,
    };
    let (outcome, seen): (Outcome, Option<Arc<[u8]>>) = match seen {
        Some(Seen::Absent) => match call.claim(cache, &key).await {
            Claimed::Placeholder(placeholder) => (outcome, Some(placeholder)),
            // Stored between the read and the claim.
            Claimed::Value(bytes) => match format.decode::<T>(&bytes) {
                Ok(value) if !call.refresh => return (Outcome::Hit, (shape.from_cached)(value)),
                Ok(_) => (outcome, Some(bytes.into())),
                Err(err) => {
                    call.corrupt(generation, &err);
                    (Outcome::Corrupt, Some(bytes.into()))
                }
            },
            Claimed::Failed => (outcome, None),
        },
        Some(Seen::Placeholder(placeholder)) => (outcome, Some(placeholder)),
        Some(Seen::Value(bytes)) => (outcome, Some(bytes.into())),
        None => (outcome, None),
    };
    let lead = match call.join(cache, &key, seen).await {
        Join::Shared(bytes) => match format.decode::<T>(&bytes) {
            Ok(value) => return (Outcome::Shared, (shape.from_cached)(value)),
            // A type whose encoding does not round-trip (NaN floats, ...):
            // run the body, uncached.
            Err(err) => {
                call.corrupt(generation, &err);
                return (outcome, call.body(body).await);
            }
        },
        Join::Lead(lead) => lead,
    };
    let value = call.run_body(cache, &key, &lead, body).await;
    if kept.is_some() && (shape.fails)(&value) {
        let kept = call.fall_back(cache, &key, lead).await;
        return match kept.map(|bytes| format.decode::<T>(&bytes)) {
            Some(Ok(kept)) => (Outcome::FailSafe, (shape.from_cached)(kept)),
            _ => (outcome, value),
        };
    }
    let encoded = (shape.cacheable)(&value).map(|cached| format.encode_round_trip(cached));
    call.store(cache, &key, lead, encoded).await;
    (outcome, value)
}

/// What to do with a value read, by its age.
enum Judged {
    /// Return it, counted so.
    Serve(Outcome),
    /// Run the body; `kept`: return the value should the body fail.
    Run { kept: bool },
}
