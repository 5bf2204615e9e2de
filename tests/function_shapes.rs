//! `#[cached]` on the shapes real code has, with keys that never mix up two
//! calls: generic and const-generic instantiations, trait impls and trait
//! definitions, per-tenant keys, per-call TTLs, `Result` aliases, `Option`
//! without `None`, dropping one function's entries, values that cannot
//! round-trip. On Redis and in memory.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use redis_memo::{Cache, cached};
use redis_memo_test_support::reference::Encoded;
use redis_memo_test_support::{Harness, Logs};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Team {
    size: u32,
}

/// A row type a generic repository can load.
trait Row: Serialize + DeserializeOwned + Send + Sync {
    fn load(id: u64) -> Self;
}

impl Row for User {
    fn load(id: u64) -> Self {
        User {
            name: format!("user {id}"),
        }
    }
}

impl Row for Team {
    fn load(id: u64) -> Self {
        Team { size: id as u32 }
    }
}

#[cached(ttl = 60, key_prefix = "gen:", cache = cache, ignore(runs))]
async fn find<T: Row>(cache: &Cache, runs: &AtomicUsize, id: u64) -> T {
    runs.fetch_add(1, SeqCst);
    T::load(id)
}

#[cached(ttl = 60, key_prefix = "gen:", cache = cache)]
async fn scale<const N: u64>(cache: &Cache, x: u64) -> u64 {
    x * N
}

struct Repo<T> {
    cache: Cache,
    runs: AtomicUsize,
    _rows: PhantomData<T>,
}

impl<T: Row> Repo<T> {
    fn new(cache: &Cache) -> Self {
        Repo {
            cache: cache.clone(),
            runs: AtomicUsize::new(0),
            _rows: PhantomData,
        }
    }

    /// Impl-level generics: `Self` (`Repo<T>`) is in the name.
    #[cached(ttl = 60, key_prefix = "gen:", cache = self.cache)]
    async fn get(&self, id: u64) -> T {
        self.runs.fetch_add(1, SeqCst);
        T::load(id)
    }

    /// A method-level generic too.
    #[cached(ttl = 60, key_prefix = "gen:", cache = self.cache)]
    async fn convert<U: Row>(&self, id: u64) -> U {
        self.runs.fetch_add(1, SeqCst);
        U::load(id)
    }
}

async fn generic_instantiations_never_share_a_key(h: &Harness) {
    let runs = AtomicUsize::new(0);
    assert_eq!(find::<User>(&h.cache, &runs, 1).await, User::load(1));
    assert_eq!(find::<Team>(&h.cache, &runs, 1).await, Team::load(1));
    assert_eq!(find::<User>(&h.cache, &runs, 1).await, User::load(1));
    assert_eq!(runs.load(SeqCst), 2, "one run per instantiation, then hits");
    // The instantiation is in the name part, from `std::any::type_name`: a
    // change of its output would change keys, so it is pinned here.
    let key = find_key::<User>(&h.cache, 1).await.unwrap();
    assert_eq!(
        key,
        h.expected_key(
            "gen:",
            "function_shapes::find<function_shapes::User>",
            &Encoded::new().int(1)
        )
    );
    assert!(h.raw_get(&key).await.is_some());

    assert_eq!(scale::<2>(&h.cache, 5).await, 10);
    assert_eq!(scale::<3>(&h.cache, 5).await, 15);
    assert_eq!(
        scale_key::<3>(&h.cache, 5).await.unwrap(),
        h.expected_key("gen:", "function_shapes::scale<3>", &Encoded::new().int(5))
    );

    let users: Repo<User> = Repo::new(&h.cache);
    let teams: Repo<Team> = Repo::new(&h.cache);
    assert_eq!(users.get(7).await, User::load(7));
    assert_eq!(teams.get(7).await, Team::load(7));
    assert_eq!(users.convert::<Team>(8).await, Team::load(8));
    assert_eq!(users.convert::<User>(8).await, User::load(8));
    assert_eq!(users.get(7).await, User::load(7));
    assert_eq!(users.convert::<Team>(8).await, Team::load(8));
    assert_eq!(users.runs.load(SeqCst), 3);
    assert_eq!(teams.runs.load(SeqCst), 1);
}

/// A repository trait, as services write them.
trait UserStore {
    async fn user(&self, id: u64) -> Option<User>;

    fn cache(&self) -> &Cache;
    fn tenant(&self) -> u32;

    /// A default method, cached in the trait definition.
    #[cached(ttl = 60, key_prefix = "greet:", cache = self.cache(), key(self.tenant()))]
    async fn greeting(&self, id: u64) -> String {
        format!("hello {id} from tenant {}", self.tenant())
    }
}

struct TenantStore {
    cache: Cache,
    tenant: u32,
    ttl: Duration,
    runs: AtomicUsize,
}

impl UserStore for TenantStore {
    /// `self` is not in the key unless named: `key(self.tenant)`.
    #[cached(key_prefix = "tenant:", cache = self.cache, key(self.tenant), ttl = self.ttl)]
    async fn user(&self, id: u64) -> Option<User> {
        self.runs.fetch_add(1, SeqCst);
        Some(User {
            name: format!("user {id} of tenant {}", self.tenant),
        })
    }

    fn cache(&self) -> &Cache {
        &self.cache
    }

    fn tenant(&self) -> u32 {
        self.tenant
    }
}

async fn trait_methods_are_cached_and_tenants_keyed_apart(h: &Harness) {
    let store = |tenant, ttl| TenantStore {
        cache: h.cache.clone(),
        tenant,
        ttl: Duration::from_secs(ttl),
        runs: AtomicUsize::new(0),
    };
    let (one, two) = (store(1, 100), store(2, 200));
    let a = one.user(5).await.unwrap();
    let b = two.user(5).await.unwrap();
    assert_ne!(a, b, "one tenant never gets another's entry");
    assert_eq!(one.user(5).await.unwrap(), a);
    assert_eq!(two.user(5).await.unwrap(), b);
    assert_eq!(
        (one.runs.load(SeqCst), two.runs.load(SeqCst)),
        (1, 1),
        "then both hit"
    );
    // `ttl = self.ttl`, evaluated per call.
    let key = h.expected_key(
        "tenant:",
        "function_shapes::TenantStore::user",
        &Encoded::new().int(5).int(2),
    );
    let ttl = h.ttl(&key).await;
    assert!((198..=200).contains(&ttl), "tenant 2's TTL: {ttl}");
    // The trait's default method.
    assert_eq!(one.greeting(3).await, "hello 3 from tenant 1");
    assert_eq!(two.greeting(3).await, "hello 3 from tenant 2");
    assert_eq!(one.greeting(3).await, "hello 3 from tenant 1");
}

#[derive(Debug, PartialEq)]
struct AppError;

type AppResult<T> = Result<T, AppError>;

#[cached(ttl = 60, key_prefix = "alias:", cache = cache, ignore(runs))]
async fn fallible(cache: &Cache, runs: &AtomicUsize, id: u64) -> AppResult<u64> {
    if runs.fetch_add(1, SeqCst) == 0 {
        return Err(AppError);
    }
    Ok(id)
}

#[cached(ttl = 60, key_prefix = "opt:", cache = cache, ignore(runs), cache_none = false)]
async fn lookup(cache: &Cache, runs: &AtomicUsize, id: u64) -> Option<u64> {
    runs.fetch_add(1, SeqCst);
    (id > 0).then_some(id * 10)
}

#[cached(key_prefix = "ttl:", cache = cache, ttl = ttl_secs, ignore(ttl_secs))]
async fn with_ttl(cache: &Cache, id: u64, ttl_secs: u64) -> u64 {
    id
}

async fn return_types_and_per_call_ttls(h: &Harness) {
    let runs = AtomicUsize::new(0);
    assert_eq!(fallible(&h.cache, &runs, 4).await, Err(AppError));
    assert_eq!(fallible(&h.cache, &runs, 4).await, Ok(4));
    assert_eq!(fallible(&h.cache, &runs, 4).await, Ok(4));
    assert_eq!(
        runs.load(SeqCst),
        2,
        "an alias of Result caches only Ok (the Err ran again)"
    );
    let key = fallible_key(&h.cache, 4).await.unwrap();
    assert_eq!(
        h.raw_get(&key).await.as_deref(),
        Some(&b"4"[..]),
        "stored as T"
    );

    let runs = AtomicUsize::new(0);
    assert_eq!(lookup(&h.cache, &runs, 0).await, None);
    assert_eq!(lookup(&h.cache, &runs, 0).await, None);
    assert_eq!(runs.load(SeqCst), 2, "None is not cached");
    assert_eq!(lookup(&h.cache, &runs, 2).await, Some(20));
    assert_eq!(lookup(&h.cache, &runs, 2).await, Some(20));
    assert_eq!(runs.load(SeqCst), 3, "Some is");
    let key = lookup_key(&h.cache, 2).await.unwrap();
    assert_eq!(h.raw_get(&key).await.as_deref(), Some(&b"20"[..]));

    with_ttl(&h.cache, 1, 40).await;
    with_ttl(&h.cache, 2, 80).await;
    let ttl = h.ttl(&with_ttl_key(&h.cache, 2).await.unwrap()).await;
    assert!((78..=80).contains(&ttl), "the call's own TTL: {ttl}");
    // The ignored parameter is not in the key: `_prime` takes the TTL instead.
    with_ttl_prime(&h.cache, 3, &33, 50u64).await.unwrap();
    assert_eq!(with_ttl(&h.cache, 3, 1).await, 33);
    let ttl = h.ttl(&with_ttl_key(&h.cache, 3).await.unwrap()).await;
    assert!((48..=50).contains(&ttl), "primed with its TTL: {ttl}");
}

#[cached(ttl = 60, key_prefix = "drop:", cache = cache)]
async fn item(cache: &Cache, id: u64) -> u64 {
    id
}

#[cached(ttl = 60, key_prefix = "drop:", cache = cache)]
async fn item_count(cache: &Cache, id: u64) -> u64 {
    id + 1
}

#[cached(ttl = 60, key_prefix = "drop:", cache = cache, version = 2)]
async fn item_v(cache: &Cache, id: u64) -> u64 {
    id
}

#[cached(ttl = 60, key_prefix = "drop_g:", cache = cache, grouped)]
async fn grouped_item(cache: &Cache, id: u64) -> u64 {
    id
}

#[cached(ttl = 60, key_prefix = "drop_g:", cache = cache, grouped)]
async fn grouped_item_count(cache: &Cache, id: u64) -> u64 {
    id
}

async fn invalidate_all_drops_exactly_one_functions_entries(h: &Harness) {
    for id in 0..5 {
        item(&h.cache, id).await;
        item_count(&h.cache, id).await;
        item_v(&h.cache, id).await;
        scale::<4>(&h.cache, id).await;
        grouped_item(&h.cache, id).await;
        grouped_item_count(&h.cache, id).await;
    }
    // Another version of `item`'s keys: dropped too.
    let other_version = h.cache.with_default_version(7);
    item(&other_version, 1).await;

    assert_eq!(item_invalidate_all(&h.cache).await.unwrap(), 6);
    for id in 0..5 {
        assert_eq!(
            h.raw_get(&item_key(&h.cache, id).await.unwrap()).await,
            None
        );
        assert!(
            h.raw_get(&item_count_key(&h.cache, id).await.unwrap())
                .await
                .is_some(),
            "item_count's entries stay"
        );
    }
    assert_eq!(item_v_invalidate_all(&h.cache).await.unwrap(), 5);
    assert_eq!(
        scale_invalidate_all(&h.cache).await.unwrap(),
        5,
        "every instantiation"
    );
    assert_eq!(grouped_item_invalidate_all(&h.cache).await.unwrap(), 5);
    assert_eq!(
        grouped_item_count_invalidate_all(&h.cache).await.unwrap(),
        5
    );
    assert_eq!(item_count_invalidate_all(&h.cache).await.unwrap(), 5);
    assert_eq!(item_invalidate_all(&h.cache).await.unwrap(), 0);
}

#[cached(ttl = 60, key_prefix = "nan:", cache = cache, ignore(runs))]
async fn ratio(cache: &Cache, runs: &AtomicUsize, id: u64) -> f64 {
    runs.fetch_add(1, SeqCst);
    if id == 0 { f64::NAN } else { id as f64 / 2.0 }
}

async fn a_value_that_cannot_round_trip_is_returned_not_stored_and_reported_once(h: &Harness) {
    let runs = AtomicUsize::new(0);
    let (logs, dispatch) = Logs::capture(tracing::Level::WARN);
    {
        let _guard = tracing::dispatcher::set_default(&dispatch);
        for _ in 0..3 {
            assert!(ratio(&h.cache, &runs, 0).await.is_nan());
        }
    }
    assert_eq!(runs.load(SeqCst), 3, "never served from the cache");
    let key = ratio_key(&h.cache, 0).await.unwrap();
    assert_eq!(h.raw_get(&key).await, None, "never stored");
    assert_eq!(logs.warnings().len(), 1, "one warning: {}", logs.text());
    assert_eq!(h.cache.stats().corrupt, 0);
    assert_eq!(ratio(&h.cache, &runs, 3).await, 1.5);
    assert_eq!(ratio(&h.cache, &runs, 3).await, 1.5);
    assert_eq!(runs.load(SeqCst), 4, "finite values are cached");
}

redis_memo_test_support::on_both_backends! {
    #[tokio::test]
    generic_instantiations_never_share_a_key,
    trait_methods_are_cached_and_tenants_keyed_apart,
    return_types_and_per_call_ttls,
    invalidate_all_drops_exactly_one_functions_entries,
    a_value_that_cannot_round_trip_is_returned_not_stored_and_reported_once,
}
