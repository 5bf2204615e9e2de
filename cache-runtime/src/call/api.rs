//! The typed API on [`Cache`]: every guarantee of `#[cached]` for a key built
//! at run time, a closure, a trait object or a batch.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;

use serde::{Serialize, de::DeserializeOwned};

use super::batch::{Batch, ManyShape, run_many};
use super::run::{Call, Shape, fresh, run};
use super::spec::{KeyText, Policy, Target};
use crate::cache::Cache;
use crate::cache::Write;
use crate::codec;
use crate::error::Error;
use crate::health::{Counter, Family, Warning, warn_limited};
use crate::store::{Held, Seen, Store};

impl Cache {
    /// The value cached under `key`, or the value of `f()`, which is then
    /// stored for `policy` (a TTL in seconds or a `Duration`, `0` for no
    /// expiry, or a [`Policy`]). Every value is stored; see
    /// [`try_get_or_set`](Self::try_get_or_set) to keep errors out.
    ///
    /// The same path as a `#[cached]` call, with the key used as given (no
    /// hashing): concurrent callers of one key in this process share one run
    /// of `f` (single-flight); a value that does not decode is a miss and is
    /// overwritten; when Redis fails, `f` runs and its value is returned
    /// (never an error); values larger than
    /// [`max_value_bytes`](crate::CacheBuilder::max_value_bytes) are returned
    /// but not stored. The call is counted in [`stats`](Self::stats) under the
    /// key's first segment (`user:42` under `user:`) and runs in a
    /// `redis_memo::call` span. `f`'s future is created only when it runs.
    /// Under a [`Policy::stale`] a value past its TTL counts as expired here
    /// (`f` may borrow, so it cannot run in the background); see
    /// [`get_or_set_stale`](Self::get_or_set_stale).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use redis_memo::Cache;
    ///
    /// async fn load_user(id: u64) -> String {
    ///     format!("user #{id}") // a database read, an HTTP call, ...
    /// }
    ///
    /// let cache = Cache::in_memory();
    /// let id = 42;
    /// let key = format!("user:{id}");
    /// let name: String = cache.get_or_set(&key, 300, || load_user(id)).await; // runs load_user
    /// let again: String = cache.get_or_set(&key, 300, || load_user(id)).await; // read from the cache
    /// assert_eq!(name, again);
    /// assert_eq!(cache.stats().hits, 1);
    /// # }
    /// ```
    pub async fn get_or_set<T, F, Fut>(&self, key: &str, policy: impl Into<Policy>, f: F) -> T
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let call = Call::direct(self, key, &policy.into());
        run(call, f, Shape::plain(None)).await
    }

    /// Like [`get_or_set`](Self::get_or_set) for a function that can fail:
    /// only `Ok` values are stored (as the encoding of `T`); an `Err` is
    /// returned to this caller and the next call runs `f` again.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use redis_memo::Cache;
    ///
    /// async fn fetch(id: u64) -> Result<String, std::io::Error> {
    ///     if id == 0 {
    ///         return Err(std::io::Error::other("no such user"));
    ///     }
    ///     Ok(format!("user #{id}"))
    /// }
    ///
    /// let cache = Cache::in_memory();
    /// assert!(cache.try_get_or_set("user:0", 300, || fetch(0)).await.is_err()); // not stored
    /// let name = cache.try_get_or_set("user:1", 300, || fetch(1)).await.unwrap();
    /// assert_eq!(cache.get::<String>("user:1").await.unwrap(), Some(name));
    /// assert_eq!(cache.get::<String>("user:0").await.unwrap(), None);
    /// # }
    /// ```
    pub async fn try_get_or_set<T, E, F, Fut>(
        &self,
        key: &str,
        policy: impl Into<Policy>,
        f: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let call = Call::direct(self, key, &policy.into());
        run(call, f, Shape::result(None)).await
    }

    /// [`get_or_set`](Self::get_or_set) for a [`Policy`] with
    /// [`stale`](Policy::stale): once the TTL has passed, the old value is
    /// returned at once for up to the stale window while one background run of
    /// `f` (one per key in this process; one across processes with
    /// [`lease`](Policy::lease)) replaces it. So `f` must be owned by that
    /// run: `Send + 'static`, capturing owned values (`move`). A stale value
    /// is counted in [`Counts::stale`](crate::Counts::stale). Without `stale` in
    /// the policy it is `get_or_set`. Needs a tokio runtime to spawn on.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use redis_memo::{Cache, Policy};
    ///
    /// async fn load_price(id: u64) -> u64 {
    ///     id * 100 // a slow service
    /// }
    ///
    /// let cache = Cache::in_memory();
    /// let id = 3;
    /// let policy = Policy::ttl(60).stale(600); // fresh 60 s, then stale up to 10 min
    /// let price: u64 = cache
    ///     .get_or_set_stale(&format!("price:{id}"), policy, move || load_price(id))
    ///     .await;
    /// assert_eq!(price, 300);
    /// # }
    /// ```
    pub async fn get_or_set_stale<T, F, Fut>(&self, key: &str, policy: impl Into<Policy>, f: F) -> T
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        let call = Call::direct(self, key, &policy.into());
        fresh::run_soft(call, f, Shape::plain(None)).await
    }

    /// [`try_get_or_set`](Self::try_get_or_set) for a [`Policy`] with
    /// [`stale`](Policy::stale), like [`get_or_set_stale`](Self::get_or_set_stale):
    /// only `Ok` values are stored; a background refresh that returns `Err`
    /// leaves the stale value served until its window ends (the next stale
    /// read tries again), and then a call runs `f` itself.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use redis_memo::{Cache, Policy};
    ///
    /// let cache = Cache::in_memory();
    /// let rate = cache
    ///     .try_get_or_set_stale("rate:eur", Policy::ttl(30).stale(300), || async {
    ///         Ok::<f64, std::io::Error>(1.08)
    ///     })
    ///     .await
    ///     .unwrap();
    /// assert_eq!(rate, 1.08);
    /// # }
    /// ```
    pub async fn try_get_or_set_stale<T, E, F, Fut>(
        &self,
        key: &str,
        policy: impl Into<Policy>,
        f: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        E: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let call = Call::direct(self, key, &policy.into());
        fresh::run_soft(call, f, Shape::result(None)).await
    }

    /// The values of many ids, each cached under its own key: `key(&id)`,
    /// used as given. Ids held in the local tier are served from it, the rest
    /// are read with one `MGET` (per [`BATCH_CHUNK`](crate::BATCH_CHUNK)
    /// keys; on a cluster, one per slot, sent at once), and `load` is called
    /// once with only the ids that missed, deduplicated, first seen first.
    /// Each entry it returns is stored under its id's key (stores sent at
    /// once) for `policy` and is in the result; an id it does not return is
    /// neither stored nor in the result (return `Option` values to cache
    /// absence). Ids another call in this process is loading are waited
    /// for rather than loaded again. A corrupt value is a miss, and every
    /// guarantee of [`get_or_set`](Self::get_or_set) holds per id: an
    /// invalidation during `load` wins, Redis down loads every id and
    /// returns its value, counters count each id as a call.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::collections::HashMap;
    /// use redis_memo::Cache;
    ///
    /// async fn load_users(ids: Vec<u64>) -> HashMap<u64, String> {
    ///     // SELECT ... WHERE id = ANY($1): unknown ids are left out
    ///     ids.into_iter().filter(|id| *id < 100).map(|id| (id, format!("user {id}"))).collect()
    /// }
    ///
    /// let cache = Cache::in_memory();
    /// let key = |id: &u64| format!("user:{id}");
    /// let users = cache.get_or_set_many([1, 2, 500], key, 300, load_users).await;
    /// assert_eq!(users.len(), 2); // 500 does not exist
    /// // 1 and 2 are cached: only 3 is loaded now.
    /// let users = cache
    ///     .get_or_set_many([1, 2, 3], key, 300, |ids| async move {
    ///         assert_eq!(ids, [3]);
    ///         load_users(ids).await
    ///     })
    ///     .await;
    /// assert_eq!(users[&3], "user 3");
    /// # }
    /// ```
    pub async fn get_or_set_many<K, V, F, Fut>(
        &self,
        ids: impl IntoIterator<Item = K>,
        key: impl Fn(&K) -> String,
        policy: impl Into<Policy>,
        load: F,
    ) -> HashMap<K, V>
    where
        K: Clone + Eq + Hash,
        V: Serialize + DeserializeOwned,
        F: FnOnce(Vec<K>) -> Fut,
        Fut: Future<Output = HashMap<K, V>>,
    {
        let batch = Batch::direct(self, ids, key, &policy.into());
        run_many(batch, load, ManyShape::plain()).await
    }

    /// [`get_or_set_many`](Self::get_or_set_many) for a loader that can
    /// fail: an `Err` is returned, and nothing it loaded is stored.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::collections::HashMap;
    /// use redis_memo::Cache;
    ///
    /// let cache = Cache::in_memory();
    /// let prices: Result<HashMap<u32, u64>, std::io::Error> = cache
    ///     .try_get_or_set_many([1, 2], |id| format!("price:{id}"), 60, |ids| async move {
    ///         Ok(ids.into_iter().map(|id| (id, u64::from(id) * 100)).collect())
    ///     })
    ///     .await;
    /// assert_eq!(prices.unwrap()[&2], 200);
    /// # }
    /// ```
    pub async fn try_get_or_set_many<K, V, E, F, Fut>(
        &self,
        ids: impl IntoIterator<Item = K>,
        key: impl Fn(&K) -> String,
        policy: impl Into<Policy>,
        load: F,
    ) -> Result<HashMap<K, V>, E>
    where
        K: Clone + Eq + Hash,
        V: Serialize + DeserializeOwned,
        F: FnOnce(Vec<K>) -> Fut,
        Fut: Future<Output = Result<HashMap<K, V>, E>>,
    {
        let batch = Batch::direct(self, ids, key, &policy.into());
        run_many(batch, load, ManyShape::result()).await
    }

    /// The value stored under `key`, decoded with the cache's codec.
    /// `Ok(None)` when there is none (or the key holds the placeholder of a
    /// call running its body), and when what is stored does not decode
    /// into `T` (counted as corrupt, with a rate-limited warning naming the
    /// key); `Err` when the cache cannot be read.
    ///
    /// With a [local tier](crate::CacheBuilder::local_cache) it is read
    /// like [`get_or_set`](Self::get_or_set) reads: an entry held in this
    /// process is returned without a network call (counted in `hits` and
    /// `local_hits`), and a value read from Redis is kept there.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), redis_memo::Error> {
    /// let cache = redis_memo::Cache::in_memory();
    /// cache.set("config:limits", &[10u32, 20], 60).await?;
    /// assert_eq!(cache.get::<Vec<u32>>("config:limits").await?, Some(vec![10, 20]));
    /// assert_eq!(cache.get::<String>("config:limits").await?, None); // does not decode
    /// assert_eq!(cache.get::<u32>("config:other").await?, None);
    /// # Ok(()) }
    /// ```
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        let family = Family::of_key(key);
        let health = self.health();
        let (bytes, local) = match self.read_for_get(key).await {
            Ok((Some(bytes), local)) => (bytes, local),
            Ok((None, _)) => {
                health.count(&family, Counter::Misses, 1);
                return Ok(None);
            }
            Err(err) => {
                health.count(&family, Counter::Errors, 1);
                return Err(err);
            }
        };
        match self.format().decode(bytes.bytes()) {
            Ok(value) => {
                health.count(&family, Counter::Hits, 1);
                if local {
                    health.count(&family, Counter::LocalHits, 1);
                }
                Ok(Some(value))
            }
            Err(err) => {
                health.count(&family, Counter::Corrupt, 1);
                warn_limited!(
                    health.warnings(),
                    Warning::Corrupt,
                    key,
                    error = %err,
                    "redis-memo: cached value does not decode; returning None"
                );
                Ok(None)
            }
        }
    }

    /// What `get` reads: the local tier's entry (then `true`), or the value
    /// Redis holds (a placeholder is none), which fills the tier.
    async fn read_for_get(&self, key: &str) -> Result<(Option<Found>, bool), Error> {
        let target = Target::Key(KeyText::Built(key.to_owned()));
        let read = match self.local() {
            Some(local) => {
                if let Some((held, _)) = super::local_read::hit(local, &target) {
                    tokio::task::consume_budget().await;
                    return Ok((Some(Found::Local(held)), true));
                }
                super::local_read::read_through(self, local, &target)
                    .await?
                    .0
            }
            None => self.store().get(key).await?,
        };
        match Seen::of(read) {
            Seen::Value(bytes) => Ok((Some(Found::Read(bytes)), false)),
            Seen::Absent | Seen::Placeholder(_) => Ok((None, false)),
        }
    }

    /// Stores `value` under `key` for `policy` (a TTL in seconds or a
    /// `Duration`, `0` for no expiry, or a [`Policy`]), encoded as
    /// `get_or_set` would. It wins over a body running for the key (a miss
    /// of `get_or_set` or of a `#[cached]` function), whose value is then not
    /// stored. Fails with [`Error::ValueTooLarge`] above
    /// [`max_value_bytes`](crate::CacheBuilder::max_value_bytes), and when the
    /// cache cannot be written.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), redis_memo::Error> {
    /// let cache = redis_memo::Cache::in_memory();
    /// cache.set("user:7", "Ann", 300).await?;
    /// let name: String = cache.get_or_set("user:7", 300, || async { unreachable!() }).await;
    /// assert_eq!(name, "Ann");
    /// # Ok(()) }
    /// ```
    pub async fn set<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        policy: impl Into<Policy>,
    ) -> Result<(), Error> {
        let policy = policy.into();
        let bytes = policy.format(self).encode(value)?;
        self.store_counted(key, &bytes, &policy, &Family::of_key(key))
            .await
    }

    /// Writes encoded bytes for `policy`, within the size limit, counted under `family`.
    pub(crate) async fn store_counted(
        &self,
        key: &str,
        bytes: &[u8],
        policy: &Policy,
        family: &Family<'_>,
    ) -> Result<(), Error> {
        let stored = policy.windows().stored(self);
        let enveloped = stored.times.map(|times| codec::wrap(times, bytes));
        let write = Write::Put {
            key,
            bytes: enveloped.as_deref().unwrap_or(bytes),
            ttl: stored.key_ttl,
            local: policy.uses_local(),
        };
        self.write(write, Some(family)).await.map(drop)
    }
}

/// A value `get` found: held in the local tier, or read from the store.
enum Found {
    Local(Arc<Held>),
    Read(Vec<u8>),
}

impl Found {
    fn bytes(&self) -> &[u8] {
        match self {
            Found::Local(held) => held.bytes(),
            Found::Read(bytes) => bytes,
        }
    }
}
