//! What a call is told: how long its value lives and how it is stored
//! ([`Ttl`], [`Policy`]), and, for `#[cached]` functions, how their keys are
//! made ([`Spec`]).

use std::sync::Arc;
use std::time::Duration;

use crate::cache::Cache;
use crate::codec::{Codec, Format, Times, now_ms};
use crate::key::{FnName, KeyBuilder, KeyError, generation_key};
pub(crate) use crate::store::Jitter;

/// The default `ttl` of `#[cached]` functions and of [`Policy::default`]: 300 seconds.
///
/// ```
/// assert_eq!(redis_memo::DEFAULT_TTL.as_secs(), 300);
/// ```
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// How long a stored value lives: whole seconds or a [`Duration`]; zero means
/// no expiry. What the attribute's `ttl` and the `ttl` of
/// [`Cache::get_or_set`] take.
///
/// ```
/// use std::time::Duration;
/// use redis_memo::Ttl;
///
/// assert_eq!(Ttl::from(60), Ttl::secs(60));
/// assert_eq!(Ttl::from(Duration::from_millis(1500)).duration(), Some(Duration::from_millis(1500)));
/// assert_eq!(Ttl::secs(0), Ttl::NEVER);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ttl(Option<Duration>);

impl Ttl {
    /// No expiry.
    pub const NEVER: Ttl = Ttl(None);

    /// `secs` seconds; `0` means no expiry.
    pub const fn secs(secs: u64) -> Ttl {
        Ttl::from_duration(Duration::from_secs(secs))
    }

    /// `duration`; zero means no expiry.
    pub const fn from_duration(duration: Duration) -> Ttl {
        if duration.is_zero() {
            Ttl(None)
        } else {
            Ttl(Some(duration))
        }
    }

    /// How long, or `None` for no expiry.
    pub const fn duration(self) -> Option<Duration> {
        self.0
    }
}

impl From<u64> for Ttl {
    fn from(secs: u64) -> Ttl {
        Ttl::secs(secs)
    }
}

impl From<Duration> for Ttl {
    fn from(duration: Duration) -> Ttl {
        Ttl::from_duration(duration)
    }
}

/// How one call or one key is cached, for [`Cache::get_or_set`],
/// [`Cache::try_get_or_set`] and [`Cache::set`]: the TTL and the options the
/// attribute also has (`lease`, `codec`). A TTL alone converts into a policy,
/// so `300` or `Duration::from_secs(300)` can be passed where a `Policy` is
/// expected.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// use redis_memo::{Cache, Policy};
///
/// let cache = Cache::in_memory();
/// let a: u64 = cache.get_or_set("answer:a", 60, || async { 42 }).await;
/// let policy = Policy::ttl(Duration::from_secs(60)).lease(Duration::from_secs(5));
/// let b: u64 = cache.get_or_set("answer:b", policy, || async { 43 }).await;
/// assert_eq!((a, b), (42, 43));
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    ttl: Ttl,
    lease: Option<Duration>,
    codec: Option<Codec>,
    /// `None`: the cache's `ttl_jitter`.
    jitter: Option<Jitter>,
    /// How long a value is served stale after its TTL, while it is refreshed.
    stale: Option<Duration>,
    /// How long a value is kept after its TTL, to return when the body fails.
    fail_safe: Option<Duration>,
    /// How long, after a failure, the body is not run again for the key.
    fail_safe_throttle: Option<Duration>,
    /// How long a call waits for the body before it returns a kept value.
    soft_timeout: Option<Duration>,
    /// Whether the cache's local tier serves and keeps this call's value.
    local: bool,
}

/// The default [`Policy::fail_safe_throttle`] (and `#[cached(fail_safe_throttle
/// = ...)]`): 30 seconds. Also how long a stale value's background refresh
/// that failed waits before the next try.
///
/// ```
/// assert_eq!(redis_memo::DEFAULT_FAIL_SAFE_THROTTLE.as_secs(), 30);
/// ```
pub const DEFAULT_FAIL_SAFE_THROTTLE: Duration = Duration::from_secs(30);

/// What a policy says about a value's life, in one place: its `ttl`, and the
/// windows after it (`stale`, `fail_safe`), the wait after a failure and the
/// soft timeout. Every TTL a value is stored with comes from [`stored`](Self::stored).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Windows {
    pub(crate) ttl: Option<Duration>,
    /// `None`: the cache's `ttl_jitter`.
    pub(crate) jitter: Option<Jitter>,
    pub(crate) stale: Option<Duration>,
    pub(crate) fail_safe: Option<Duration>,
    pub(crate) throttle: Duration,
    pub(crate) soft_timeout: Option<Duration>,
}

/// How a value stored now is stored.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stored {
    /// The key's TTL: the jittered `ttl` plus the longest window after it.
    pub(crate) key_ttl: Option<Duration>,
    /// The value's times, when its values are enveloped.
    pub(crate) times: Option<Times>,
}

/// Where a stored value is in its life, judged by its times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Age {
    /// Within its `ttl`.
    Fresh,
    /// Past it, and the body is not to run again yet (it failed lately):
    /// served as it is, stale (within the `stale` window) or kept.
    Throttled { stale: bool },
    /// Past it, within the `stale` window: served while refreshed.
    Stale { kept: bool },
    /// Past it: the body runs. `kept`: within `fail_safe`, the value is
    /// returned should the body fail.
    Expired { kept: bool },
}

impl Windows {
    /// Whether values carry their times (an envelope, see `codec`): with a
    /// window after the `ttl` (`stale`, `fail_safe`).
    pub(crate) fn enveloped(&self) -> bool {
        self.ttl.is_some() && (self.stale.is_some() || self.fail_safe.is_some())
    }

    /// The one TTL rule: what a value stored now in `cache` lives, and the
    /// times it carries.
    pub(crate) fn stored(&self, cache: &Cache) -> Stored {
        let Some(ttl) = self.ttl else {
            return Stored {
                key_ttl: None,
                times: None,
            };
        };
        let ttl = self.jitter.unwrap_or(cache.ttl_jitter()).apply(ttl);
        let after = self
            .stale
            .unwrap_or_default()
            .max(self.fail_safe.unwrap_or_default());
        let times = self.enveloped().then(|| Times {
            fresh_until: now_ms().saturating_add(millis(ttl)),
            retry_after: 0,
        });
        Stored {
            key_ttl: Some(ttl.saturating_add(after)),
            times,
        }
    }

    /// Where a value with `times` is at `now` (ms since the Unix epoch).
    pub(crate) fn age(&self, times: Times, now: u64) -> Age {
        if now < times.fresh_until {
            return Age::Fresh;
        }
        let within = |window: Option<Duration>| {
            window.is_some_and(|w| now < times.fresh_until.saturating_add(millis(w)))
        };
        let (stale, kept) = (within(self.stale), within(self.fail_safe));
        if now < times.retry_after && (stale || kept) {
            return Age::Throttled { stale };
        }
        if stale {
            return Age::Stale { kept };
        }
        Age::Expired { kept }
    }

    /// `times`, with the body not to run again for the key for the
    /// throttle from `now`.
    pub(crate) fn throttled(&self, times: Times, now: u64) -> Times {
        Times {
            retry_after: now.saturating_add(millis(self.throttle)),
            ..times
        }
    }

    /// What a key whose value has `times` has left to live at `now`.
    pub(crate) fn left(&self, times: Times, now: u64) -> Option<Duration> {
        let after = self
            .stale
            .unwrap_or_default()
            .max(self.fail_safe.unwrap_or_default());
        let end = times.fresh_until.saturating_add(millis(after));
        (end > now).then(|| Duration::from_millis(end - now))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Default for Policy {
    /// [`DEFAULT_TTL`], no lease, the cache's codec.
    fn default() -> Self {
        Policy::ttl(DEFAULT_TTL)
    }
}

impl Policy {
    /// Values live `ttl` (seconds or a `Duration`; zero: no expiry).
    ///
    /// ```
    /// let policy = redis_memo::Policy::ttl(300);
    /// # let _ = policy;
    /// ```
    pub fn ttl(ttl: impl Into<Ttl>) -> Policy {
        Policy {
            ttl: ttl.into(),
            lease: None,
            codec: None,
            jitter: None,
            stale: None,
            fail_safe: None,
            fail_safe_throttle: None,
            soft_timeout: None,
            local: true,
        }
    }

    /// Cross-process stampede control, like the attribute's `lease`: on a
    /// miss, one process takes a lease for up to `lease` and runs the
    /// function while the others wait for its value. Zero turns it off. Only
    /// on Redis (the in-memory cache has one process).
    ///
    /// ```
    /// let policy = redis_memo::Policy::ttl(300).lease(std::time::Duration::from_secs(10));
    /// # let _ = policy;
    /// ```
    pub fn lease(mut self, lease: impl Into<Ttl>) -> Policy {
        self.lease = lease.into().duration();
        self
    }

    /// How values are encoded, instead of the cache's codec.
    ///
    /// ```
    /// let policy = redis_memo::Policy::ttl(300).codec(redis_memo::Codec::Json);
    /// # let _ = policy;
    /// ```
    pub fn codec(mut self, codec: Codec) -> Policy {
        self.codec = Some(codec);
        self
    }

    /// Spreads the stored TTLs uniformly over `[ttl·(1−fraction),
    /// ttl·(1+fraction)]`, so that entries written together do not expire
    /// together; instead of the cache's
    /// [`ttl_jitter`](crate::CacheBuilder::ttl_jitter). `fraction` is clamped
    /// to `0.0..=1.0` (a NaN is `0.0`).
    ///
    /// ```
    /// let policy = redis_memo::Policy::ttl(300).ttl_jitter(0.1); // 270 s to 330 s
    /// # let _ = policy;
    /// ```
    pub fn ttl_jitter(mut self, fraction: f64) -> Policy {
        self.jitter = Some(Jitter::new(fraction));
        self
    }

    /// Stale-while-revalidate, like the attribute's `stale`: once `ttl` has
    /// passed, the value is still served for up to `stale` (seconds or a
    /// `Duration`) while one background run of the function replaces it, so
    /// no caller waits for it. The key lives `ttl + max(stale, fail_safe)` in
    /// the cache. A refresh that fails (an `Err`, or a panic) is logged with
    /// its key and not tried again for
    /// [`fail_safe_throttle`](Self::fail_safe_throttle); the old value is
    /// served until the window ends, and after that the next call runs the
    /// function itself.
    ///
    /// The background run needs a function it can own:
    /// [`get_or_set_stale`](crate::Cache::get_or_set_stale) and
    /// [`try_get_or_set_stale`](crate::Cache::try_get_or_set_stale) take
    /// one (`Send + 'static`) and serve stale values. Under this policy
    /// [`get_or_set`](crate::Cache::get_or_set) and
    /// [`set`](crate::Cache::set) store for `ttl + stale` too, so the two
    /// kinds of callers share entries, but `get_or_set` treats a stale value as
    /// expired and runs its function inline. Zero, or a TTL of zero (no
    /// expiry: nothing is ever stale), turns it off. With
    /// [`lease`](Self::lease), one process refreshes a key at a time.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use redis_memo::{Cache, Policy};
    ///
    /// let cache = Cache::in_memory();
    /// // Fresh for 60 s, then served for up to 30 s more while it is refreshed.
    /// let policy = Policy::ttl(60).stale(30);
    /// let id = 7;
    /// let name: String = cache
    ///     .get_or_set_stale("user:7", policy, move || async move { format!("user #{id}") })
    ///     .await;
    /// assert_eq!(name, "user #7");
    /// # }
    /// ```
    pub fn stale(mut self, stale: impl Into<Ttl>) -> Policy {
        self.stale = stale.into().duration();
        self
    }

    /// Whether the cache's [local tier](crate::CacheBuilder::local_cache)
    /// serves and keeps this value (default `true`); `false` reads Redis on
    /// every call, like `#[cached(local = false)]`. Writes and invalidations
    /// still drop any local entry of the key.
    ///
    /// ```
    /// let policy = redis_memo::Policy::ttl(300).local(false);
    /// # let _ = policy;
    /// ```
    pub fn local(mut self, local: bool) -> Policy {
        self.local = local;
        self
    }

    /// Fail-safe, like the attribute's `fail_safe`: values are kept `keep`
    /// (seconds or a `Duration`) past their TTL. When the TTL has passed,
    /// the function runs as usual, and should it return `Err` (with
    /// [`try_get_or_set`](crate::Cache::try_get_or_set)), the kept value is
    /// returned as `Ok` instead, counted in
    /// [`Counts::fail_safe`](crate::Counts::fail_safe), and the function is not
    /// run again for the key for [`fail_safe_throttle`](Self::fail_safe_throttle)
    /// (the kept value is returned meanwhile, by every process). No kept
    /// value (never stored, invalidated, or past `ttl + keep`): the error is
    /// returned. The key lives `ttl + max(stale, fail_safe)`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use redis_memo::{Cache, Policy};
    ///
    /// let cache = Cache::in_memory();
    /// let policy = Policy::ttl(60).fail_safe(3600); // fresh 1 min, kept 1 h more
    /// let rate: Result<f64, String> = cache
    ///     .try_get_or_set("rate:eur", policy, || async { Ok(1.08) })
    ///     .await;
    /// assert_eq!(rate, Ok(1.08));
    /// # }
    /// ```
    pub fn fail_safe(mut self, keep: impl Into<Ttl>) -> Policy {
        self.fail_safe = keep.into().duration();
        self
    }

    /// How long, after the function failed and a kept value was returned
    /// instead ([`fail_safe`](Self::fail_safe)), or after a stale value's
    /// background refresh failed ([`stale`](Self::stale)), the function is not
    /// run again for the key: the kept (or stale) value is returned
    /// meanwhile, by every process (the wait is stored with the value).
    /// Default [`DEFAULT_FAIL_SAFE_THROTTLE`].
    ///
    /// ```
    /// let policy = redis_memo::Policy::ttl(60).fail_safe(3600).fail_safe_throttle(10);
    /// # let _ = policy;
    /// ```
    pub fn fail_safe_throttle(mut self, wait: impl Into<Ttl>) -> Policy {
        self.fail_safe_throttle = Some(wait.into().duration().unwrap_or_default());
        self
    }

    /// With a kept value ([`fail_safe`](Self::fail_safe)), how long a call
    /// waits for the function before it returns the kept value; the function
    /// goes on in the background and its value is stored when it is done.
    /// Needs a function it can own, like [`stale`](Self::stale):
    /// [`get_or_set_stale`](crate::Cache::get_or_set_stale) and
    /// [`try_get_or_set_stale`](crate::Cache::try_get_or_set_stale) honour it.
    ///
    /// ```
    /// use std::time::Duration;
    /// let policy = redis_memo::Policy::ttl(60)
    ///     .fail_safe(3600)
    ///     .soft_timeout(Duration::from_millis(200));
    /// # let _ = policy;
    /// ```
    pub fn soft_timeout(mut self, wait: Duration) -> Policy {
        self.soft_timeout = Some(wait);
        self
    }

    pub(crate) fn uses_local(&self) -> bool {
        self.local
    }

    /// The value's life under this policy.
    pub(crate) fn windows(&self) -> Windows {
        Windows {
            ttl: self.ttl.duration(),
            jitter: self.jitter,
            stale: self.stale_window(),
            fail_safe: self.ttl.duration().and(self.fail_safe),
            throttle: self
                .fail_safe_throttle
                .unwrap_or(DEFAULT_FAIL_SAFE_THROTTLE),
            soft_timeout: self.ttl.duration().and(self.soft_timeout),
        }
    }

    /// How long a value is served stale after its TTL: `None` without
    /// `stale`, or without a TTL (a value that never expires is never stale).
    pub(crate) fn stale_window(&self) -> Option<Duration> {
        self.ttl.duration().and(self.stale)
    }

    pub(crate) fn lease_duration(&self) -> Option<Duration> {
        self.lease
    }

    /// The format of values under this policy in `cache`.
    pub(crate) fn format(&self, cache: &Cache) -> Format {
        let mut format = cache.format();
        if let Some(codec) = self.codec {
            format.codec = codec;
        }
        format
    }
}

impl From<Ttl> for Policy {
    fn from(ttl: Ttl) -> Policy {
        Policy::ttl(ttl)
    }
}

impl From<u64> for Policy {
    fn from(secs: u64) -> Policy {
        Policy::ttl(secs)
    }
}

impl From<Duration> for Policy {
    fn from(duration: Duration) -> Policy {
        Policy::ttl(duration)
    }
}

/// What the attribute fixes about a function: its name, how its keys are
/// made, and its [`Policy`]. Built by generated code.
#[derive(Debug, Clone, Copy)]
pub struct Spec<'a> {
    prefix: &'a str,
    name: FnName<'a>,
    version: Option<u32>,
    grouped: bool,
    policy: Policy,
}

impl<'a> Spec<'a> {
    /// A function named `name` whose keys start with `prefix`, with the
    /// defaults of every other argument.
    pub const fn new(prefix: &'a str, name: FnName<'a>) -> Spec<'a> {
        Spec {
            prefix,
            name,
            version: None,
            grouped: false,
            policy: Policy {
                ttl: Ttl::from_duration(DEFAULT_TTL),
                lease: None,
                codec: None,
                jitter: None,
                stale: None,
                fail_safe: None,
                fail_safe_throttle: None,
                soft_timeout: None,
                local: true,
            },
        }
    }

    /// `local = false`.
    pub const fn local(mut self, local: bool) -> Self {
        self.policy.local = local;
        self
    }

    /// `ttl = ...`.
    pub const fn ttl(mut self, ttl: Ttl) -> Self {
        self.policy.ttl = ttl;
        self
    }

    /// `lease = ...`.
    pub const fn lease(mut self, lease: Ttl) -> Self {
        self.policy.lease = lease.duration();
        self
    }

    /// `ttl_jitter = ...`.
    pub fn ttl_jitter(mut self, fraction: f64) -> Self {
        self.policy.jitter = Some(Jitter::new(fraction));
        self
    }

    /// `stale = ...`.
    pub const fn stale(mut self, stale: Ttl) -> Self {
        self.policy.stale = stale.duration();
        self
    }

    /// `fail_safe = ...`.
    pub const fn fail_safe(mut self, keep: Ttl) -> Self {
        self.policy.fail_safe = keep.duration();
        self
    }

    /// `fail_safe_throttle = ...`.
    pub const fn fail_safe_throttle(mut self, wait: Ttl) -> Self {
        self.policy.fail_safe_throttle = match wait.duration() {
            Some(wait) => Some(wait),
            None => Some(Duration::ZERO),
        };
        self
    }

    /// `soft_timeout = ...`.
    pub const fn soft_timeout(mut self, wait: Duration) -> Self {
        self.policy.soft_timeout = Some(wait);
        self
    }

    /// `version = ...`.
    pub const fn version(mut self, version: u32) -> Self {
        self.version = Some(version);
        self
    }

    /// `grouped`.
    pub const fn grouped(mut self) -> Self {
        self.grouped = true;
        self
    }

    /// `codec = ...`.
    pub const fn codec(mut self, codec: Codec) -> Self {
        self.policy.codec = Some(codec);
        self
    }

    pub(crate) fn name(&self) -> FnName<'a> {
        self.name
    }

    pub(crate) fn prefix(&self) -> &'a str {
        self.prefix
    }

    pub(crate) fn is_grouped(&self) -> bool {
        self.grouped
    }

    /// The version in the function's keys in `cache`.
    pub(crate) fn version_in(&self, cache: &Cache) -> Option<u32> {
        self.version.or(cache.default_version())
    }

    pub(crate) fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Where the call with these arguments keeps its value in `cache`.
    pub(crate) fn target(&self, cache: &Cache, args: &KeyBuilder) -> Result<Target, KeyError> {
        let version = self.version_in(cache);
        if !self.grouped {
            let key = args.finish_versioned(self.prefix, &self.name, version)?;
            return Ok(Target::Key(KeyText::Built(key)));
        }
        let mut tail = String::from(":");
        args.push_tail(&mut tail, &self.name, version)?;
        Ok(Target::Grouped {
            gen_key: generation_key(self.prefix),
            head: format!("{}@", self.prefix),
            tail,
        })
    }
}

/// Where one call's value lives.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// A fixed key.
    Key(KeyText),
    /// `{head}{generation of gen_key}{tail}`, resolved with the read.
    Grouped {
        gen_key: String,
        head: String,
        tail: String,
    },
}

/// A fixed key's text: built for the call, or the one a shortcut to the
/// call's held value keeps (no key to build, nothing to allocate). A key
/// built for a call that reads Redis stays the `String` it was built as.
#[derive(Debug, Clone)]
pub(crate) enum KeyText {
    Built(String),
    Shared(Arc<str>),
}

impl std::ops::Deref for KeyText {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            KeyText::Built(key) => key,
            KeyText::Shared(key) => key,
        }
    }
}

impl Target {
    /// The key under `generation` (ignored for a fixed key).
    pub(crate) fn key(&self, generation: u64) -> std::borrow::Cow<'_, str> {
        match self {
            Target::Key(key) => (**key).into(),
            Target::Grouped { head, tail, .. } => format!("{head}{generation}{tail}").into(),
        }
    }

    /// The key whose shard a read depends on first (a grouped key: its
    /// generation counter), for the circuit breaker.
    pub(crate) fn shard_key(&self) -> &str {
        match self {
            Target::Key(key) => key,
            Target::Grouped { gen_key, .. } => gen_key,
        }
    }
}

/// What `ttl = <expr>`, `lease = <expr>` and `stale = <expr>` accept: whole seconds as an
/// unsigned integer, a `Duration` or a [`Ttl`].
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`ttl` and `lease` take u64, u32 or usize seconds, or a std::time::Duration, not `{Self}`",
    label = "not a number of seconds or a Duration"
)]
pub trait IntoTtl {
    /// Converts to a [`Ttl`]; zero means no expiry.
    fn into_ttl(self) -> Ttl;
}

impl IntoTtl for u64 {
    fn into_ttl(self) -> Ttl {
        Ttl::secs(self)
    }
}

impl IntoTtl for u32 {
    fn into_ttl(self) -> Ttl {
        Ttl::secs(self.into())
    }
}

impl IntoTtl for usize {
    fn into_ttl(self) -> Ttl {
        Ttl::secs(self as u64)
    }
}

impl IntoTtl for Duration {
    fn into_ttl(self) -> Ttl {
        Ttl::from_duration(self)
    }
}

impl IntoTtl for Ttl {
    fn into_ttl(self) -> Ttl {
        self
    }
}
