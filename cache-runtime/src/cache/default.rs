//! The process-wide default cache, used by `#[cached]` functions without
//! `cache = ...`.

use std::sync::RwLock;

use super::Cache;

static DEFAULT_CACHE: RwLock<Option<Cache>> = RwLock::new(None);

/// Installs `cache` as the process-wide default, used by every `#[cached]`
/// function that has no `cache = ...` argument. Returns the previous default.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use redis_memo::{Cache, cached, set_default_cache};
///
/// #[cached(ttl = 60)]
/// async fn answer() -> u32 { 42 }
///
/// set_default_cache(Cache::in_memory());
/// assert_eq!(answer().await, 42);
/// # }
/// ```
pub fn set_default_cache(cache: Cache) -> Option<Cache> {
    let mut slot = DEFAULT_CACHE
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    slot.replace(cache)
}

/// The process-wide default cache, if one is installed.
///
/// ```
/// let _maybe: Option<redis_memo::Cache> = redis_memo::default_cache();
/// ```
pub fn default_cache() -> Option<Cache> {
    DEFAULT_CACHE
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
}

/// Removes the process-wide default cache; `#[cached]` functions without
/// `cache = ...` then run uncached. Returns what was installed.
///
/// ```
/// let _previous = redis_memo::clear_default_cache();
/// assert!(redis_memo::default_cache().is_none());
/// ```
pub fn clear_default_cache() -> Option<Cache> {
    let mut slot = DEFAULT_CACHE
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    slot.take()
}
