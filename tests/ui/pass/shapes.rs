//! The shapes of real code: trait impls and trait definitions, helpers under
//! the user's control, per-call expressions, what goes in the key, `Result`
//! aliases, `Option` without `None`, inner attributes and `#[cfg]`.
#![deny(missing_docs, unused_variables)]

use std::time::Duration;

use redis_memo::{Cache, cached};

/// Not `Serialize`: only `Ok` is cached, even through an alias.
#[derive(Debug)]
pub struct AppError;

/// An alias of `Result`, recognised by its type, not its name.
pub type Fallible<T> = Result<T, AppError>;

const PREFIX: &str = "users:";

/// A repository trait, implemented below with cached methods.
trait UserStore {
    /// A user's name.
    fn name(&self, id: u64) -> impl std::future::Future<Output = Fallible<String>> + Send;

    /// A default method, cached in the trait itself.
    #[cached(cache = self.cache(), key(self.tenant()))]
    async fn greeting(&self, id: u64) -> String {
        format!("hello {id}")
    }

    /// The cache of the implementation.
    fn cache(&self) -> &Cache;

    /// The tenant the implementation serves.
    fn tenant(&self) -> u32;
}

/// One tenant's view of the users.
pub struct PgStore {
    cache: Cache,
    tenant: u32,
    ttl: Duration,
}

impl UserStore for PgStore {
    #[cached(cache = self.cache, key(self.tenant), ttl = self.ttl, key_prefix = PREFIX)]
    async fn name(&self, id: u64) -> Fallible<String> {
        if id == 0 {
            return Err(AppError);
        }
        Ok(format!("user {id}"))
    }

    fn cache(&self) -> &Cache {
        &self.cache
    }

    fn tenant(&self) -> u32 {
        self.tenant
    }
}

/// An item of the user's that a helper would have clashed with.
pub fn lookup_key() -> &'static str {
    "mine"
}

/// No helpers: `lookup_key` above stays the user's.
#[cached(cache = cache, helpers = false)]
pub async fn lookup(cache: &Cache, id: u64) -> u64 {
    id
}

/// Helpers under another name and visibility.
#[cached(cache = cache, helpers(name = "user_entry", vis = pub(crate)))]
pub async fn user(cache: &Cache, id: u64) -> u64 {
    id
}

/// A TTL and a lease per call from ignored parameters; `None` not cached.
#[cached(cache = cache, ttl = ttl_secs, lease = ttl_secs / 2, ignore(ttl_secs), cache_none = false)]
pub async fn maybe(cache: &Cache, id: u64, ttl_secs: u64) -> Option<u64> {
    #![allow(clippy::needless_return)]
    return (id > 0).then_some(id);
}

/// Const generics are part of the key.
#[cached(cache = cache)]
pub async fn scale<const N: u64>(cache: &Cache, x: u64) -> u64 {
    x * N
}

/// `#[cfg]` below the attribute applies to the helpers too.
#[cached(cache = cache)]
#[cfg(not(any()))]
pub async fn configured(cache: &Cache, id: u64) -> u64 {
    id
}

fn assert_send<T: Send>(t: T) -> T {
    t
}

#[tokio::main(flavor = "current_thread")]
pub(crate) async fn main() {
    let cache = Cache::in_memory();
    let store = PgStore {
        cache: cache.clone(),
        tenant: 1,
        ttl: Duration::from_secs(30),
    };
    assert_send(store.name(1)).await.unwrap();
    store.greeting(1).await;
    assert_eq!(lookup_key(), "mine");
    lookup(&cache, 1).await;
    user(&cache, 1).await;
    user_entry_key(&cache, 1).await.unwrap();
    user_entry_invalidate_all(&cache).await.unwrap();
    maybe(&cache, 1, 60).await;
    maybe_prime(&cache, 2, &2, 60u64).await.unwrap();
    scale::<2>(&cache, 1).await;
    configured(&cache, 1).await;
    configured_invalidate(&cache, 1).await.unwrap();
}
