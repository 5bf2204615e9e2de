//! A `pub` `#[cached]` function in a crate of its own, for the compile-error
//! tests that use its helpers from another crate (they are `pub(crate)`).

use redis_memo::cached;

/// A public cached function whose helpers keep the default visibility.
#[cached(ttl = 60, key_prefix = "profiles:")]
pub async fn profile(user_id: u64) -> String {
    format!("user {user_id}")
}
