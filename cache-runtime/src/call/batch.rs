//! Batches: a loader of many ids, each element cached under its own key
//! (`#[cached(batch = ids)]`, [`Cache::get_or_set_many`]).
//!
//! ```text
//! ids ── deduplicated, first seen first; a key per element
//!    │ the local tier: elements held in this process ─────────────► values
//!    ▼
//! MGET of the rest, in chunks of BATCH_CHUNK keys (on a cluster redis-rs
//! sends one per slot, at once) ── values that decode ─────────────► values
//!    │ nothing: each key claimed with a placeholder (SET NX PX, at once)
//!    ▼
//! single-flight per element: an element another call is loading ─► its value
//!    │ the others: this call leads them
//!    ▼
//! the loader, called once, with the elements this call leads
//!    │ an element it returned: stored over what its key held (at once) ► value
//!    └ an element it did not return: not stored, not in the result
//! ```
//!
//! Each element follows the path of one call (`run`): what it claims, whom it
//! waits for, what its value may replace, what is counted. Only the loader,
//! decoding and encoding are typed; reads, claims and stores are the steps of
//! [`Elements`], compiled once.
//!
//! The loader is called once. So elements another call is loading are
//! waited for while the loader runs for the rest; should that other call
//! fail or be cancelled, those elements are missing from this result (the
//! next call loads them), with a warning. When this call leads no element,
//! it waits first, and then loads what the others did not.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;

use futures_util::future::join_all;
use serde::{Serialize, de::DeserializeOwned};
use tracing::{Instrument, Span};

use super::spec::{KeyText, Policy, Spec, Target, Windows};
use crate::cache::Cache;
use crate::codec::{self, Format};
use crate::error::Error;
use crate::flight::{Leader, Outcome as FlightOutcome, Role, Waiter};
use crate::health::{CallStart, Family, Outcome, Warning, info_limited, warn_limited};
use crate::key::{FnName, KeyBuilder};
use crate::local::Fill;
use crate::store::{Claim, FillOf, Held, Seen, Store, is_placeholder};

/// How many keys one `MGET` asks for, and how many claims or stores are
/// sent at once: a batch of any size holds at most this many in flight.
pub const BATCH_CHUNK: usize = 1_000;

/// One batch call: the distinct ids, their keys, and how they are cached.
/// Built by generated code (`batch = ids`) or [`Cache::get_or_set_many`].
pub struct Batch<K> {
    cache: Option<Cache>,
    ids: Vec<K>,
    /// Each id's key; `None` when its key could not be built.
    keys: Vec<Option<String>>,
    /// `Some`: a `#[cached]` function; `None`: keys used directly, each
    /// counted under its own first segment.
    function: Option<FnName<'static>>,
    bypass: Outcome,
    windows: Windows,
    local: bool,
    format: Format,
    span: Span,
    start: CallStart,
}

impl<K: std::fmt::Debug> std::fmt::Debug for Batch<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("ids", &self.ids.len())
            .finish_non_exhaustive()
    }
}

/// Ids are the program's own values, not adversarial input: a fast hash.
type FastHash = foldhash::fast::RandomState;

/// The distinct ids, first seen first.
fn distinct<K: Clone + Eq + Hash>(ids: impl IntoIterator<Item = K>) -> Vec<K> {
    let mut seen = HashSet::with_hasher(FastHash::default());
    ids.into_iter()
        .filter(|id| seen.insert(id.clone()))
        .collect()
}

impl<K: Clone + Eq + Hash> Batch<K> {
    /// A batch call of a `#[cached(batch = ...)]` function: `head` holds the
    /// key's arguments before the batch parameter, and `element` adds one
    /// element and the arguments after it.
    pub fn new(
        cache: Option<Cache>,
        spec: &Spec<'static>,
        ids: impl IntoIterator<Item = K>,
        head: &KeyBuilder,
        element: impl Fn(&mut KeyBuilder, &K),
    ) -> Batch<K> {
        let ids = distinct(ids);
        let mut batch = Batch::bare(cache, Some(spec.name()), spec.policy(), ids);
        if let Some(cache) = &batch.cache {
            // One builder for every element: the head's bytes stay.
            let mut args = head.clone();
            let head_len = head.encoded().len();
            batch.keys = batch
                .ids
                .iter()
                .map(|id| {
                    args.rewind(head_len);
                    element(&mut args, id);
                    match spec.target(cache, &args) {
                        Ok(Target::Key(KeyText::Built(key))) => Some(key),
                        // (`grouped` is refused with `batch`.)
                        _ => None,
                    }
                })
                .collect();
            if batch.keys.iter().any(Option::is_none) {
                warn_limited!(
                    cache.health().warnings(),
                    Warning::Key,
                    function = %spec.name(),
                    "redis-memo: cannot build the cache key of some elements (an argument's \
                     Serialize failed); they are loaded uncached"
                );
            }
        }
        batch.with_span()
    }

    /// A batch call whose `skip_cache` was true: the loader gets every id.
    pub fn skip(
        cache: Option<Cache>,
        spec: &Spec<'static>,
        ids: impl IntoIterator<Item = K>,
    ) -> Batch<K> {
        let mut batch = Batch::bare(cache, Some(spec.name()), spec.policy(), distinct(ids));
        batch.bypass = Outcome::Skipped;
        batch.with_span()
    }

    /// A batch of [`Cache::get_or_set_many`]: each id's key as `key` gives it.
    pub(crate) fn direct(
        cache: &Cache,
        ids: impl IntoIterator<Item = K>,
        key: impl Fn(&K) -> String,
        policy: &Policy,
    ) -> Batch<K> {
        let ids = distinct(ids);
        let mut batch = Batch::bare(Some(cache.clone()), None, policy, ids);
        batch.keys = batch.ids.iter().map(|id| Some(key(id))).collect();
        batch.with_span()
    }

    fn bare(
        cache: Option<Cache>,
        function: Option<FnName<'static>>,
        policy: &Policy,
        ids: Vec<K>,
    ) -> Batch<K> {
        let format = cache
            .as_ref()
            .map_or_else(Format::default, |cache| policy.format(cache));
        let keys = vec![None; ids.len()];
        Batch {
            bypass: if cache.is_some() {
                Outcome::Miss
            } else {
                Outcome::Uncached
            },
            cache,
            ids,
            keys,
            function,
            windows: policy.windows(),
            local: policy.uses_local(),
            format,
            span: Span::none(),
            start: CallStart::now(),
        }
    }

    fn with_span(mut self) -> Batch<K> {
        let family = match self.function {
            Some(name) => name.to_string(),
            None => "(keys)".to_owned(),
        };
        self.span = tracing::debug_span!(
            target: "redis_memo",
            "redis_memo::batch",
            function = %family,
            elements = self.ids.len(),
            hits = tracing::field::Empty,
            loaded = tracing::field::Empty,
            refused = tracing::field::Empty,
        );
        self
    }
}

/// How a batch's return value relates to the map of loaded values.
pub(crate) struct ManyShape<M, R> {
    /// The map, or the value to return as it is (an `Err`).
    pub(crate) map: fn(R) -> Result<M, R>,
    /// The value to return for a map.
    pub(crate) from_map: fn(M) -> R,
}

impl<M> ManyShape<M, M> {
    /// Every map is cached.
    pub(crate) fn plain() -> Self {
        ManyShape {
            map: Ok,
            from_map: std::convert::identity,
        }
    }
}

impl<M, E> ManyShape<M, Result<M, E>> {
    /// Only an `Ok` map is cached.
    pub(crate) fn result() -> Self {
        ManyShape {
            map: |r| r.map_err(Err),
            from_map: Ok,
        }
    }
}

/// What became of one element before the loader.
enum Found {
    /// Held in this process (the local tier, the in-memory store).
    Held(Arc<Held>),
    /// Read from Redis.
    Bytes(Vec<u8>),
    /// To load, replacing what its key held (`None`: store nothing).
    Load(Outcome, Option<Arc<[u8]>>),
    /// Not cached at all (no key, breaker open).
    Bypass(Outcome),
}

/// An element's value to store: its index, what its key held when the call
/// looked (the value replaces only that), and the encoded value.
struct ToStore {
    index: usize,
    seen: Arc<[u8]>,
    bytes: Arc<[u8]>,
}

/// The untyped steps of a batch, compiled once.
struct Elements<'a> {
    cache: &'a Cache,
    keys: &'a [Option<String>],
    function: Option<FnName<'static>>,
    local: bool,
}

impl Elements<'_> {
    fn family<'k>(&self, key: &'k str) -> Family<'k> {
        match self.function {
            Some(name) => Family::Function(name),
            None => Family::of_key(key),
        }
    }

    /// The local tier's elements, then one `MGET` per chunk of the rest.
    async fn read(&self) -> Vec<Found> {
        let cache = self.cache;
        let local = cache.local().filter(|_| self.local);
        let mut found: Vec<Option<Found>> = self
            .keys
            .iter()
            .map(|key| match key {
                None => Some(Found::Bypass(Outcome::Error)),
                Some(key) => local.and_then(|tier| tier.get(key)).map(Found::Held),
            })
            .collect();
        if let Some(memory) = cache.store().memory() {
            for (slot, key) in found.iter_mut().zip(self.keys) {
                if let (None, Some(key)) = (&slot, key) {
                    *slot = Some(match memory.held(key).await {
                        Some(held) => Found::Held(held),
                        None => Found::Load(Outcome::Miss, None),
                    });
                }
            }
        }
        let to_read: Vec<usize> = (0..found.len()).filter(|&i| found[i].is_none()).collect();
        for chunk in to_read.chunks(BATCH_CHUNK) {
            let keys: Vec<&str> = chunk
                .iter()
                .filter_map(|&i| self.keys[i].as_deref())
                .collect();
            if !cache.health().allow(keys[0]) {
                for &i in chunk {
                    found[i] = Some(Found::Bypass(Outcome::BreakerSkipped));
                }
                continue;
            }
            let mut fills: Vec<Fill<'_>> = Vec::new();
            if let Some(tier) = local {
                // Each key's prefix is tracked before its fill begins (once
                // per prefix; see `LocalTier::track`).
                for key in &keys {
                    tier.track(key).await;
                    fills.push(tier.begin(key));
                }
            }
            let mut fills = fills.into_iter();
            let read = cache.store().get_many(&keys).await;
            match cache.health().record(keys[0], read) {
                Ok(values) => {
                    for (&i, value) in chunk.iter().zip(values) {
                        let fill = fills.next();
                        found[i] = Some(match Seen::of(value) {
                            Seen::Value(bytes) => {
                                if let Some(fill) = fill {
                                    fill.finish(&bytes);
                                }
                                Found::Bytes(bytes)
                            }
                            Seen::Placeholder(placeholder) => {
                                Found::Load(Outcome::Miss, Some(placeholder))
                            }
                            Seen::Absent => Found::Load(Outcome::Miss, None),
                        });
                    }
                }
                Err(err) => {
                    warn_limited!(
                        cache.health().warnings(),
                        Warning::ReadFailed,
                        error = %err,
                        "redis-memo: cache read failed; loading the batch's elements uncached"
                    );
                    for &i in chunk {
                        found[i] = Some(Found::Bypass(Outcome::Error));
                    }
                }
            }
        }
        found
            .into_iter()
            .map(|f| f.unwrap_or(Found::Bypass(Outcome::Error)))
            .collect()
    }

    /// Claims the keys of the elements at `indices` that held nothing, one
    /// round trip per chunk; what each key holds afterwards (`None`: the
    /// claim failed), and the placeholder it was claimed with.
    async fn claim(&self, indices: &[usize]) -> Vec<(usize, Option<Claim>, Arc<[u8]>)> {
        let cache = self.cache;
        let mut claimed = Vec::with_capacity(indices.len());
        for chunk in indices.chunks(BATCH_CHUNK) {
            let keys: Vec<&str> = chunk
                .iter()
                .map(|&i| self.keys[i].as_deref().unwrap_or_default())
                .collect();
            let placeholders: Vec<Arc<[u8]>> =
                chunk.iter().map(|_| cache.placeholders().next()).collect();
            let claims = cache
                .store()
                .claim_many(&keys, &placeholders, cache.placeholder_ttl())
                .await;
            let claims = match cache.health().record(keys[0], claims) {
                Ok(claims) => claims,
                Err(err) => {
                    warn_limited!(
                        cache.health().warnings(),
                        Warning::WriteFailed,
                        error = %err,
                        "redis-memo: cannot claim the keys of a batch's elements; they are \
                         loaded and returned, not cached"
                    );
                    (0..chunk.len()).map(|_| None).collect()
                }
            };
            claimed.extend(
                chunk
                    .iter()
                    .zip(claims)
                    .zip(placeholders)
                    .map(|((&i, claim), placeholder)| (i, claim, placeholder)),
            );
        }
        claimed
    }

    /// Stores each value over what its key held, one round trip per chunk;
    /// how many were refused.
    async fn store(&self, values: Vec<ToStore>, windows: Windows) -> usize {
        let mut refused = 0;
        let family: &(dyn Fn(&str) -> Family<'_> + Sync) = &|key| self.family(key);
        for chunk in values.chunks(BATCH_CHUNK) {
            let stored: Vec<_> = chunk
                .iter()
                .map(|value| {
                    let stored = windows.stored(self.cache);
                    let bytes = stored.times.map(|times| codec::wrap(times, &value.bytes));
                    (stored.key_ttl, bytes)
                })
                .collect();
            let fills: Vec<FillOf<'_>> = chunk
                .iter()
                .zip(&stored)
                .map(|(value, (ttl, enveloped))| FillOf {
                    key: self.keys[value.index].as_deref().unwrap_or_default(),
                    seen: &value.seen,
                    value: enveloped.as_deref().unwrap_or(&value.bytes),
                    ttl: *ttl,
                })
                .collect();
            let stored = self.cache.write_fills(&fills, self.local, family).await;
            refused += stored.iter().filter(|s| **s == Some(false)).count();
            if stored.iter().any(Option::is_none) {
                warn_limited!(
                    self.cache.health().warnings(),
                    Warning::WriteFailed,
                    "redis-memo: cache write failed for some of a batch's elements; their values \
                     are returned but not cached"
                );
            }
        }
        refused
    }

    /// Takes back this cache's placeholders of the elements at `indices`
    /// (their loader returned nothing for them, or failed).
    async fn release(&self, placeholders: Vec<(usize, Arc<[u8]>)>) {
        for chunk in placeholders.chunks(BATCH_CHUNK) {
            join_all(chunk.iter().map(|(i, placeholder)| async move {
                let key = self.keys[*i].as_deref().unwrap_or_default();
                if self.cache.placeholders().is_own(placeholder) {
                    let _ = self.cache.store().delete_if(key, placeholder).await;
                }
            }))
            .await;
        }
    }
}

/// Runs a batch call: values held or stored for its elements, the loader
/// for the rest (called once, with only those), each loaded value stored
/// under its element's key.
pub(crate) async fn run_many<K, V, M, R, B, Fut>(
    batch: Batch<K>,
    body: B,
    shape: ManyShape<M, R>,
) -> R
where
    K: Clone + Eq + Hash,
    V: Serialize + DeserializeOwned,
    M: FromIterator<(K, V)> + IntoIterator<Item = (K, V)>,
    B: FnOnce(Vec<K>) -> Fut,
    Fut: Future<Output = R>,
{
    let span = batch.span.clone();
    Box::pin(drive(batch, body, shape)).instrument(span).await
}

async fn drive<K, V, M, R, B, Fut>(batch: Batch<K>, body: B, shape: ManyShape<M, R>) -> R
where
    K: Clone + Eq + Hash,
    V: Serialize + DeserializeOwned,
    M: FromIterator<(K, V)> + IntoIterator<Item = (K, V)>,
    B: FnOnce(Vec<K>) -> Fut,
    Fut: Future<Output = R>,
{
    let Batch {
        cache,
        ids,
        keys,
        function,
        bypass,
        windows,
        local,
        format,
        span,
        start,
    } = batch;
    let cache = match cache {
        Some(cache) if bypass == Outcome::Miss => cache,
        cache => {
            if let Some(cache) = &cache {
                for key in &keys {
                    let key = key.as_deref().unwrap_or_default();
                    let family = family_of(function, key);
                    cache.health().observe(&family, bypass, start);
                }
            }
            return body(ids).await;
        }
    };
    let elements = Elements {
        cache: &cache,
        keys: &keys,
        function,
        local,
    };
    let n = ids.len();
    let mut values: Vec<Option<V>> = (0..n).map(|_| None).collect();
    let mut outcomes = vec![Outcome::Miss; n];
    // What each element to load replaces: `None` stores nothing.
    let mut seen: Vec<Option<Arc<[u8]>>> = vec![None; n];
    let mut to_load = Vec::new();
    let mut to_claim = Vec::new();
    for (i, found) in elements.read().await.into_iter().enumerate() {
        let corrupt = |bytes: &[u8], err: &Error| {
            warn_limited!(
                cache.health().warnings(),
                Warning::Corrupt,
                key = keys[i].as_deref().unwrap_or_default(),
                error = %err,
                "redis-memo: cached value does not decode; treating it as a miss and overwriting it"
            );
            Some(Arc::<[u8]>::from(bytes))
        };
        match found {
            Found::Held(held) => match format.decode::<V>(held.bytes()) {
                Ok(value) => {
                    values[i] = Some(value);
                    let local_hit = cache.store().memory().is_none();
                    outcomes[i] = if local_hit {
                        Outcome::LocalHit
                    } else {
                        Outcome::Hit
                    };
                }
                Err(err) => {
                    seen[i] = corrupt(held.bytes(), &err);
                    outcomes[i] = Outcome::Corrupt;
                    to_load.push(i);
                }
            },
            Found::Bytes(bytes) => match format.decode::<V>(&bytes) {
                Ok(value) => {
                    values[i] = Some(value);
                    outcomes[i] = Outcome::Hit;
                }
                Err(err) => {
                    seen[i] = corrupt(&bytes, &err);
                    outcomes[i] = Outcome::Corrupt;
                    to_load.push(i);
                }
            },
            Found::Load(outcome, Some(placeholder)) => {
                outcomes[i] = outcome;
                seen[i] = Some(placeholder);
                to_load.push(i);
            }
            Found::Load(outcome, None) => {
                outcomes[i] = outcome;
                to_claim.push(i);
            }
            Found::Bypass(outcome) => {
                outcomes[i] = outcome;
                to_load.push(i);
            }
        }
    }
    // The local tier's pushes for the placeholders are this process's own.
    let _claims: Vec<Fill<'_>> = match cache.local().filter(|_| local) {
        Some(tier) => to_claim
            .iter()
            .filter_map(|&i| keys[i].as_deref().map(|key| tier.begin_write(key)))
            .collect(),
        None => Vec::new(),
    };
    for (i, claim, placeholder) in elements.claim(&to_claim).await {
        match claim {
            Some(Claim::Won) => {
                seen[i] = Some(placeholder);
                to_load.push(i);
            }
            Some(Claim::Lost(Seen::Placeholder(theirs))) => {
                seen[i] = Some(theirs);
                to_load.push(i);
            }
            Some(Claim::Lost(Seen::Value(bytes))) => match format.decode::<V>(&bytes) {
                Ok(value) => {
                    values[i] = Some(value);
                    outcomes[i] = Outcome::Hit;
                }
                Err(_) => {
                    seen[i] = Some(bytes.into());
                    outcomes[i] = Outcome::Corrupt;
                    to_load.push(i);
                }
            },
            // Gone again, or the claim failed: loaded, not stored.
            Some(Claim::Lost(Seen::Absent)) | None => to_load.push(i),
        }
    }
    to_load.sort_unstable();

    // Single-flight per element.
    let flights = cache.flights();
    let mut leaders: Vec<(usize, Leader<'_>)> = Vec::new();
    let mut waiters: Vec<(usize, Waiter<'_>)> = Vec::new();
    for &i in &to_load {
        let Some(key) = keys[i].as_deref() else {
            leaders.push((i, flights.detached_leader("")));
            continue;
        };
        match outcomes[i] {
            Outcome::BreakerSkipped | Outcome::Error if seen[i].is_none() => {
                leaders.push((i, flights.detached_leader(key)));
            }
            _ => match flights.join(key, seen[i].as_ref()) {
                Role::Leader(leader) => leaders.push((i, leader)),
                Role::Waiter(waiter) => waiters.push((i, waiter)),
            },
        }
    }
    let waited = join_all(
        waiters
            .into_iter()
            .map(|(i, waiter)| async move { (i, waiter.outcome().await) }),
    );
    let (loaded, waited) = if leaders.is_empty() {
        // Nothing of its own to load: wait first, then load what the
        // others could not.
        let waited = waited.await;
        let mut waited_values = Vec::new();
        for (i, outcome) in waited {
            match outcome {
                FlightOutcome::Lead(leader) => leaders.push((i, leader)),
                other => waited_values.push((i, other)),
            }
        }
        let loaded = if leaders.is_empty() {
            None
        } else {
            let ids_to_load = leaders.iter().map(|(i, _)| ids[*i].clone()).collect();
            Some(body(ids_to_load).await)
        };
        (loaded, waited_values)
    } else {
        let ids_to_load = leaders.iter().map(|(i, _)| ids[*i].clone()).collect();
        let (loaded, waited) = futures_util::future::join(body(ids_to_load), waited).await;
        (Some(loaded), waited)
    };

    // Values other calls loaded.
    let mut lost = 0usize;
    for (i, outcome) in waited {
        match outcome {
            FlightOutcome::Value(bytes) => match format.decode::<V>(&bytes) {
                Ok(value) => {
                    values[i] = Some(value);
                    outcomes[i] = Outcome::Shared;
                }
                Err(_) => lost += 1,
            },
            FlightOutcome::Absent => outcomes[i] = Outcome::Shared,
            // That call failed or was cancelled after this one's loader ran.
            FlightOutcome::Lead(_) => {
                lost += 1;
                outcomes[i] = Outcome::Error;
            }
        }
    }
    if lost > 0 {
        warn_limited!(
            cache.health().warnings(),
            Warning::Lease,
            lost,
            "redis-memo: another call loading some of this batch's elements failed or was \
             cancelled while this batch's loader ran; they are missing from its result (the \
             next call loads them)"
        );
    }

    // The loader's map: each led element's value is stored and handed to
    // the callers waiting for it.
    let mut result = Vec::with_capacity(n);
    let mut loaded_count = 0;
    let mut refused = 0;
    match loaded.map(shape.map) {
        Some(Err(returned)) => {
            let placeholders = leaders
                .iter()
                .filter(|(_, leader)| !leader.hands_over())
                .filter_map(|(i, _)| seen[*i].clone().map(|s| (*i, s)))
                .collect();
            drop(leaders); // the waiters of these elements take them over
            elements.release(placeholders).await;
            finish(&cache, function, &keys, &outcomes, start);
            return returned;
        }
        Some(Ok(map)) => {
            let mut map: HashMap<K, V, FastHash> = map.into_iter().collect();
            let mut to_store = Vec::new();
            let mut to_release = Vec::new();
            for (i, mut leader) in leaders {
                match map.remove(&ids[i]) {
                    Some(value) => {
                        loaded_count += 1;
                        if let Ok(bytes) = format.encode_round_trip(&value) {
                            let bytes: Arc<[u8]> = bytes.into();
                            leader.publish(bytes.clone());
                            if let Some(seen) = seen[i].clone() {
                                to_store.push(ToStore {
                                    index: i,
                                    seen,
                                    bytes,
                                });
                            }
                        }
                        result.push((ids[i].clone(), value));
                    }
                    None => {
                        leader.publish_absent();
                        if let Some(seen) = seen[i].clone().filter(|s| is_placeholder(s)) {
                            to_release.push((i, seen));
                        }
                    }
                }
                drop(leader);
            }
            refused = elements.store(to_store, windows).await;
            elements.release(to_release).await;
        }
        None => {}
    }
    if refused > 0 {
        info_limited!(
            cache.health().warnings(),
            Warning::FillRefused,
            refused,
            "redis-memo: values of a batch were returned but not stored, because their keys were \
             invalidated or rewritten while the loader ran (stats().fills_refused counts these)"
        );
    }
    for (i, value) in values.into_iter().enumerate() {
        if let Some(value) = value {
            result.push((ids[i].clone(), value));
        }
    }
    let hits = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Hit | Outcome::LocalHit))
        .count();
    span.record("hits", hits);
    span.record("loaded", loaded_count);
    span.record("refused", refused);
    finish(&cache, function, &keys, &outcomes, start);
    (shape.from_map)(result.into_iter().collect())
}

fn family_of<'k>(function: Option<FnName<'static>>, key: &'k str) -> Family<'k> {
    match function {
        Some(name) => Family::Function(name),
        None => Family::of_key(key),
    }
}

/// Counts each element as a call with its outcome: for a function, each
/// outcome once with its number of elements.
fn finish(
    cache: &Cache,
    function: Option<FnName<'static>>,
    keys: &[Option<String>],
    outcomes: &[Outcome],
    start: CallStart,
) {
    let health = cache.health();
    let Some(name) = function else {
        for (key, &outcome) in keys.iter().zip(outcomes) {
            let key = key.as_deref().unwrap_or_default();
            health.observe(&Family::of_key(key), outcome, start);
        }
        return;
    };
    let family = Family::Function(name);
    let mut counts: Vec<(Outcome, u64)> = Vec::new();
    for &outcome in outcomes {
        match counts.iter_mut().find(|(o, _)| *o == outcome) {
            Some((_, n)) => *n += 1,
            None => counts.push((outcome, 1)),
        }
    }
    for (outcome, n) in counts {
        health.observe_many(&family, outcome, n, start);
    }
}
