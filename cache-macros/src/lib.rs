//! The `#[cached]` attribute of [redis-memo](https://docs.rs/redis-memo).
//!
//! Use it through the `redis-memo` crate (`redis_memo::cached`); the generated
//! code refers to the runtime through `::redis_memo::__private`, and the
//! `redis-memo` crate pins this crate and the runtime to one release.

mod attr;
mod batch;
mod expand;
mod function;
mod similar;
mod windows;

use proc_macro::TokenStream;

/// Memoizes an `async fn` in a [`Cache`](https://docs.rs/redis-memo/latest/redis_memo/struct.Cache.html):
/// the first call with some arguments runs the body and stores its value;
/// later calls with equal arguments return the stored value until its TTL
/// ends. A cache that fails (Redis down, a value that does not decode) never
/// makes the function fail: the body runs and its value is returned.
///
/// ```
/// use redis_memo::{Cache, cached};
///
/// #[cached(ttl = 300, key_prefix = "users:", cache = cache)]
/// async fn user_name(cache: &Cache, user_id: u64) -> Result<String, std::io::Error> {
///     Ok(format!("user #{user_id}")) // a database read, an HTTP call, ...
/// }
/// ```
///
/// # Arguments
///
/// All optional, in any order.
///
/// | argument | meaning | default |
/// |---|---|---|
/// | `ttl = 300` | how long values live: whole seconds (a literal or an expression of type `u64`, `u32`, `usize`) or a `Duration`; `0` means no expiry. The expression may use the parameters (ignored ones too) and `self`, and is evaluated once per call | `300` |
/// | `key_prefix = "users:"` | prepended to every key of the function: a string literal or a `&str` const; what `invalidate_prefix` matches | `""` |
/// | `skip_cache = fresh` | a `bool` expression over the parameters, evaluated per call; when `true` the call neither reads nor writes the cache. A parameter named alone here is left out of the key | never skip |
/// | `cache = CACHE` | the cache: any expression `EXPR` for which `&(EXPR)` derefs to `&Cache` (`Cache`, `&Cache`, `Arc<Cache>`, a `static LazyLock<Cache>`, `self.cache`, `state.cache`); the parameter it starts from is left out of the key | the process-wide default (`set_default_cache`); none installed: runs uncached, warns once |
/// | `ignore(db, log)` | parameters left out of the key (pools, clients, loggers) | none |
/// | `key(self.tenant_id)` | expressions added to the key after the parameters: fields of `self`, parts of ignored parameters. `self` is never in the key unless named here | none |
/// | `name = "users::get"` | replaces the qualified name in the key | module path + (`Self` type) + fn name |
/// | `version = 2` | a `u32` put in the key as `:v2:`; bumping it retires old entries at once | `Cache::with_default_version`, else none |
/// | `grouped` | the generation of `key_prefix` goes in the key; `Cache::invalidate_group` drops the whole prefix in O(1) | off |
/// | `codec = Codec::MessagePack` | how values are encoded | the cache's codec, JSON by default |
/// | `lease = 10` | cross-process stampede control: one process runs the body on a miss while others wait up to this many seconds for its value; may use the parameters, like `ttl` | off |
/// | `result` / `result = false` | cache only `Ok` / every value, when the return type cannot tell (a type parameter) | by the type: `Result` and its aliases cache only `Ok` |
/// | `ttl_jitter = 0.1` | spreads stored TTLs uniformly over `ttl·(1 ± 0.1)`, so entries written together do not expire together (a fraction in `0.0..=1.0`) | the cache's `CacheBuilder::ttl_jitter`, else 0 |
/// | `stale = 30` | stale-while-revalidate: after `ttl`, the old value is still returned for up to this long (seconds, or a `Duration`, like `ttl`; a constant) while one background run of the body replaces it (one per key in the process; one across processes with `lease`); keys live `ttl + stale`. A refresh that fails (an `Err` or a panic) is logged and not tried again for `fail_safe_throttle`; the old value is served until the window ends, then a call runs the body. Needs an explicit, non-zero `ttl`, and a body the refresh can own: parameters it uses are owned (`String`, `Arc<T>`), and a method takes `self: Arc<Self>`, not `&self` | off |
/// | `fail_safe = 3600` | fail-safe: values are kept this long past `ttl` (seconds, or a `Duration`, like `ttl`; a constant). After `ttl` the body runs as usual; when it returns `Err` and a value is kept, the call returns the kept value as `Ok` (counted in `stats().fail_safe`, logged with the key) and the body is not run again for the key for `fail_safe_throttle`, in any process. No kept value: the error. Keys live `ttl + max(stale, fail_safe)`. A function that returns no `Result` takes it only with `soft_timeout`. Needs an explicit, non-zero `ttl` | off |
/// | `fail_safe_throttle = 10` | after a failure answered from `fail_safe`, or a failed `stale` refresh, how long the kept value is returned without running the body (seconds or a `Duration`) | 30 s (`DEFAULT_FAIL_SAFE_THROTTLE`) |
/// | `soft_timeout = Duration::from_millis(200)` | a `Duration` expression: with a value kept by `fail_safe`, a call whose body has not finished in time returns the kept value at once; the body goes on in the background and stores its value. Without a kept value, the call waits for the body. The body must be one the background can own, as with `stale` | off |
/// | `local = false` | the cache's local tier (`CacheBuilder::local_cache`) neither serves nor keeps this function's values: every call reads Redis | `true`: the local tier, when the cache has one |
/// | `cache_none = false` | an `Option<T>` return leaves `None` uncached | `None` is cached |
/// | `batch = ids` | a loader of many ids: the parameter `ids` is `Vec<K>`, `&[K]`, `&Vec<K>`, `HashSet<K>` or `BTreeSet<K>`, the return type `HashMap<K, V>` or `BTreeMap<K, V>` (or a `Result` of one). Each element is cached under the key of a one-element call, the elements that miss are read with one `MGET`, and the body runs once with only the missing ids (in `ids`' own type); the helpers take one element (`{fn}_key(&cache, .., &id)`). Not with `stale`, `grouped`, `lease`, `result`, `cache_none` | off |
/// | `helpers`, `helpers = false`, `helpers(name = "user_cache", vis = pub)` | generate (or not) `{fn}_key`, `{fn}_invalidate`, `{fn}_prime` and `{fn}_invalidate_all` next to the function; `name` replaces `{fn}`, `vis` their visibility | on for functions without `self`, off for methods (a trait impl cannot take them); visibility of the fn, at most `pub(crate)` |
///
/// # Keys
///
/// `{key_prefix}{qualified name}[<generic arguments>][:v{version}]:{64 hex}`:
/// the hex digits are the SHA-256 of a canonical encoding of the parameters in
/// the key (all but ignored ones, the `cache` root and a bare `skip_cache`
/// parameter) and of the `key(...)` expressions. A generic function's type
/// arguments (`std::any::type_name`) and const arguments are part of the name,
/// so two instantiations never share a key.
///
/// # Where it goes
///
/// Free functions, methods of inherent and trait impls (`&self`, `&mut self`),
/// default methods of trait definitions, generic functions and impls. Not on
/// a function rewritten by `#[async_trait]`: use native `async fn` in traits.
#[proc_macro_attribute]
pub fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    let args = attr::Args::parse(args.into());
    match function::parse(item.clone().into()) {
        Ok(func) => expand::expand(args, func).into(),
        Err(err) => {
            // Not a function: keep the item so later errors still see it.
            let mut out: TokenStream = err.to_compile_error().into();
            out.extend(item);
            out
        }
    }
}
