//! The runtime of [redis-memo](https://docs.rs/redis-memo): the [`Cache`] handle,
//! its Redis and in-memory backends, cache keys, value encoding and invalidation.
//!
//! Depend on the `redis-memo` crate, which re-exports everything here together
//! with the `#[cached]` attribute.
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backend;
mod cache;
mod call;
mod codec;
mod error;
mod flight;
mod health;
mod invalidate;
pub mod key;
mod lease;
#[doc(hidden)]
pub mod private;

pub use backend::KeyTtl;
pub use cache::{
    Cache, CacheBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_VALUE_BYTES, DEFAULT_MEMORY_CAPACITY,
    DEFAULT_RESPONSE_TIMEOUT, clear_default_cache, default_cache, set_default_cache,
};
pub use call::refresh;
pub use codec::Codec;
pub use error::{Error, Result};
pub use health::{FunctionStats, Stats};
