//! `refresh(call)`: one call that skips the read, runs the body and
//! overwrites the entry.

use std::future::Future;

tokio::task_local! {
    static REFRESH: std::cell::Cell<bool>;
}

/// Runs one call of a `#[cached]` function so that it skips the read, runs the
/// body and overwrites the cached entry with the new result (an `Err` is
/// returned and leaves the old entry in place). Only that call is refreshed:
/// cached functions its body calls read the cache as usual.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use redis_memo::{Cache, cached, refresh};
///
/// #[cached(cache = cache)]
/// async fn now_ms(cache: &Cache) -> u128 {
///     std::time::SystemTime::UNIX_EPOCH.elapsed().unwrap().as_millis()
/// }
///
/// let cache = Cache::in_memory();
/// let first = now_ms(&cache).await;
/// tokio::time::sleep(std::time::Duration::from_millis(5)).await;
/// let fresh = refresh(now_ms(&cache)).await; // runs the body again
/// assert!(fresh > first);
/// assert_eq!(now_ms(&cache).await, fresh); // and stored its result
/// # }
/// ```
pub async fn refresh<F: Future>(call: F) -> F::Output {
    REFRESH.scope(std::cell::Cell::new(true), call).await
}

/// Whether the current call is a [`refresh`]; consumed by the first cached call.
pub(crate) fn take_refresh() -> bool {
    REFRESH
        .try_with(|flag| flag.replace(false))
        .unwrap_or(false)
}
