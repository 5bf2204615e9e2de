//! Memoize `async fn`s in Redis with one attribute.
//!
//! ```
//! use redis_memo::{Cache, cached};
//!
//! #[cached(ttl = 300, key_prefix = "users:", cache = cache)]
//! async fn user_name(cache: &Cache, user_id: u64) -> Result<String, std::io::Error> {
//!     Ok(format!("user #{user_id}")) // a database read, an HTTP call, ...
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cache = Cache::in_memory(); // or Cache::connect("redis://127.0.0.1/").await?
//! assert_eq!(user_name(&cache, 7).await?, "user #7"); // runs the body, stores the value
//! assert_eq!(user_name(&cache, 7).await?, "user #7"); // served from the cache
//! cache.invalidate_prefix("users:").await?;
//! # Ok(()) }
//! ```
//!
//! # `#[cached(...)]` arguments
//!
//! [`cached`] documents every argument: `ttl`, `key_prefix`, `skip_cache`,
//! `cache`, `ignore(..)`, `key(..)`, `name`, `version`, `grouped`, `codec`,
//! `lease`, `result`, `cache_none` and `helpers`. Without the attribute,
//! [`Cache::get_or_set`] gives a call the same guarantees.
//!
//! # Generated helpers
//!
//! Next to `fn f` (without `self`), the attribute generates `f_key(&cache,
//! args..)`, `f_invalidate(&cache, args..)`, `f_prime(&cache, args.., &value)`
//! and `f_invalidate_all(&cache)`, taking the arguments that are part of the
//! key. Methods get them with `#[cached(helpers)]` (a trait impl could not
//! hold them). [`refresh`] re-runs one call and overwrites its entry.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), redis_memo::Error> {
//! use redis_memo::{Cache, cached};
//!
//! #[cached(ttl = 60, key_prefix = "sq:", cache = cache)]
//! async fn square(cache: &Cache, x: u64) -> u64 {
//!     x * x
//! }
//!
//! let cache = Cache::in_memory();
//! square_prime(&cache, 3, &10).await?; // store a value for square(3)
//! assert_eq!(square(&cache, 3).await, 10);
//! assert!(square_invalidate(&cache, 3).await?);
//! assert_eq!(square(&cache, 3).await, 9);
//! assert!(square_key(&cache, 3).await?.starts_with("sq:"));
//! assert_eq!(square_invalidate_all(&cache).await?, 1);
//! # Ok(()) }
//! ```
//!
//! # Keys
//!
//! `{key_prefix}{qualified name}:{64 lowercase hex}`, for example
//! `users:my_app::db::user_name:3f1c...`. The qualified name is `module_path!()`
//! and the function name, with the `Self` type (without its module path, with
//! its generic arguments) for methods taking `self`, and a generic function's
//! type and const arguments after it (`my_app::find<my_app::User>`). The hex digits are the
//! SHA-256 of a canonical, type-tagged, length-prefixed encoding of the
//! non-ignored arguments, documented in [`key`]: equal arguments give equal keys
//! in every process, map order does not matter, and `("ab", "c")` differs from
//! `("a", "bc")`.
//!
//! Associated functions without a `self` receiver are named like free functions
//! (the attribute cannot see the `impl` block): give them `name = "..."` if two
//! types in one module have a cached associated function of the same name.
//!
//! # Values
//!
//! - Values are stored as JSON, readable with `redis-cli GET`.
//! - A function returning `Result<T, E>` or an alias of it (told by the type:
//!   `io::Result<T>`, `anyhow::Result<T>`, `type AppResult<T> = ...`) caches only
//!   `Ok`, stored as the JSON of `T`; an `Err` is returned and never cached.
//! - Any other return type is cached as it is, `Option<T>` included: `None` is
//!   cached too (as `null`), unless `cache_none = false`.
//! - The return type (the `T` of a `Result`) must be `Serialize + DeserializeOwned`,
//!   and every argument in the key must be `Serialize`.
//!
//! # An invalidation always wins
//!
//! A miss claims its key with a placeholder before the body runs, and the
//! body's value replaces the placeholder only if nothing deleted or rewrote
//! the key meanwhile. So once an invalidation (any of the helpers,
//! [`Cache::invalidate_prefix`], [`Cache::delete`], [`Cache::set`], ...) or
//! another client's `DEL` or `FLUSHDB` has happened, no body that began
//! before it stores its older value, and no call that begins after it in
//! this process receives that value; the caller whose body ran still gets
//! it, and [`Counts::fills_refused`] counts the refused store.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), redis_memo::Error> {
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use redis_memo::{Cache, cached};
//!
//! static VERSION: AtomicU64 = AtomicU64::new(1); // the database
//!
//! #[cached(ttl = 300, key_prefix = "doc:", cache = cache)]
//! async fn profile(cache: &Cache, id: u64) -> u64 {
//!     let version = VERSION.load(Ordering::SeqCst); // read the database
//!     // Meanwhile the database changes and the entry is invalidated:
//!     VERSION.store(2, Ordering::SeqCst);
//!     profile_invalidate(cache, id).await.unwrap();
//!     version
//! }
//!
//! let cache = Cache::in_memory();
//! assert_eq!(profile(&cache, 7).await, 1); // the caller gets what its body read...
//! assert_eq!(cache.stats().fills_refused, 1); // ...which is not stored
//! VERSION.store(3, Ordering::SeqCst);
//! assert_eq!(profile(&cache, 7).await, 3); // the next call runs the body again
//! # Ok(()) }
//! ```
//!
//! # Failures never reach the caller
//!
//! A stored value that does not decode (corrupt, truncated, written by an older
//! version of the type) is a miss: the body runs, the key is overwritten, and a
//! `tracing` warning names the key. When Redis is down, slow or refuses a
//! command, the body runs and its value is returned; every Redis command is
//! bounded by the response timeout ([`CacheBuilder::response_timeout`]).
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use redis_memo_macros::cached;
pub use redis_memo_runtime::DEFAULT_LOCAL_TTL;
pub use redis_memo_runtime::{
    BATCH_CHUNK, Cache, CacheBuilder, Codec, Counts, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_FAIL_SAFE_THROTTLE, DEFAULT_MAX_VALUE_BYTES, DEFAULT_MEMORY_CAPACITY,
    DEFAULT_PLACEHOLDER_TTL, DEFAULT_RESPONSE_TIMEOUT, DEFAULT_TTL, Error, FunctionStats, KeyTtl,
    Policy, Result, Stats, Ttl, clear_default_cache, default_cache, is_placeholder, key, refresh,
    set_default_cache,
};

#[doc(hidden)]
pub use redis_memo_runtime::private as __private;

/// The README's Rust examples, compiled (and run, where they use the
/// in-memory cache) as doctests, so the README cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
