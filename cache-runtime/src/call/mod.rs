//! One call through the cache, whether a `#[cached]` function or
//! [`Cache::get_or_set`](crate::Cache::get_or_set): what it is told
//! ([`spec`]), its get-or-run path ([`run`]), the typed API on `Cache`
//! ([`api`]), the per-call helpers of generated code ([`helpers`]) and
//! [`refresh`](refresh::refresh).

mod api;
pub(crate) mod batch;
pub(crate) mod helpers;
mod local_read;
pub(crate) mod refresh;
pub(crate) mod reuse;
pub(crate) mod run;
pub(crate) mod spec;

pub use batch::BATCH_CHUNK;
pub use refresh::refresh;
pub use spec::{DEFAULT_FAIL_SAFE_THROTTLE, DEFAULT_TTL, Policy, Ttl};
