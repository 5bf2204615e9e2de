//! What a call is told: how long its value lives and how it is stored
//! ([`Ttl`], [`Policy`]), and, for `#[cached]` functions, how their keys are
//! made ([`Spec`]).

use std::time::Duration;

use crate::Cache;
use crate::codec::{Codec, Format};
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
    /// Whether the cache's local tier serves and keeps this call's value.
    local: bool,
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
    /// no caller waits for it. The key lives `ttl + stale` in the cache. A
    /// refresh that fails leaves the old value served until the window ends;
    /// after that, the next call runs the function itself.
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

    pub(crate) fn uses_local(&self) -> bool {
        self.local
    }

    pub(crate) fn ttl_duration(&self) -> Option<Duration> {
        self.ttl.duration()
    }

    /// How long a value is served stale after its TTL: `None` without
    /// `stale`, or without a TTL (a value that never expires is never stale).
    pub(crate) fn stale_window(&self) -> Option<Duration> {
        self.ttl.duration().and(self.stale)
    }

    /// The TTL to store a value with now, in `cache`: the TTL, jittered,
    /// plus the stale window.
    pub(crate) fn stored_ttl(&self, cache: &Cache) -> Option<Duration> {
        let jitter = self.jitter.unwrap_or(cache.ttl_jitter());
        let window = self.stale_window().unwrap_or_default();
        self.ttl
            .duration()
            .map(|ttl| jitter.apply(ttl).saturating_add(window))
    }

    pub(crate) fn jitter(&self) -> Option<Jitter> {
        self.jitter
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

    pub(crate) fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Where the call with these arguments keeps its value in `cache`.
    pub(crate) fn target(&self, cache: &Cache, args: &KeyBuilder) -> Result<Target, KeyError> {
        let version = self.version.or(cache.default_version());
        if !self.grouped {
            return Ok(Target::Key(args.finish_versioned(
                self.prefix,
                &self.name,
                version,
            )?));
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
    Key(String),
    /// `{head}{generation of gen_key}{tail}`, resolved with the read.
    Grouped {
        gen_key: String,
        head: String,
        tail: String,
    },
}

impl Target {
    /// The key under `generation` (ignored for a fixed key).
    pub(crate) fn key(&self, generation: u64) -> std::borrow::Cow<'_, str> {
        match self {
            Target::Key(key) => key.as_str().into(),
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
