//! The runtime of [redis-memo](https://docs.rs/redis-memo): the [`Cache`] handle,
//! its Redis and in-memory stores, cache keys, value encoding and invalidation.
//!
//! Depend on the `redis-memo` crate, which re-exports everything here together
//! with the `#[cached]` attribute.
//!
//! The modules follow the data path of a call, each using only those before it:
//! `key` (arguments to a key) → `store` (Redis, in memory) → `flight`
//! (single-flight), `lease` (across processes), `health` (breaker, counters,
//! warnings) → `local` (the in-process tier and its tracking connections) →
//! `cache` (the handle, its builder, the default, and the one path every
//! write and invalidation takes) → `call` (one
//! call: spec, get-or-run, the typed API, helpers, refresh) → `private` (what
//! generated code calls). `error`, `codec` and `log` are leaves.
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod log;

mod codec;
mod error;

pub mod key;

mod store;

mod flight;
mod health;
mod lease;

mod local;

mod cache;

mod call;

#[doc(hidden)]
pub mod private;

pub use cache::{
    Cache, CacheBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_VALUE_BYTES, DEFAULT_MEMORY_CAPACITY,
    DEFAULT_PLACEHOLDER_TTL, DEFAULT_RESPONSE_TIMEOUT, clear_default_cache, default_cache,
    set_default_cache,
};
pub use call::{BATCH_CHUNK, DEFAULT_FAIL_SAFE_THROTTLE, DEFAULT_TTL, Policy, Ttl, refresh};
pub use codec::Codec;
pub use error::{Error, Result};
pub use health::{Counts, FunctionStats, Stats};
pub use local::DEFAULT_LOCAL_TTL;
pub use store::{KeyTtl, is_placeholder};
