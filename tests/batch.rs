//! Batches: `#[cached(batch = ids)]` and `Cache::get_or_set_many`. Each
//! element is cached under the key of a one-element call; a call reads the
//! elements with one `MGET` and loads only the missing ones, once.

use redis_memo_test_support as support;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use redis_memo::{Cache, cached};
use support::{Harness, TestRedis, command_counts, until};
use tokio::sync::Semaphore;

/// The database behind the loaders: which ids each load asked for.
#[derive(Default)]
struct Db {
    loads: Mutex<Vec<Vec<u64>>>,
    /// Ids that do not exist.
    missing: Vec<u64>,
    /// Loads wait for a permit when set.
    gate: Option<Semaphore>,
    waiting: AtomicUsize,
}

impl Db {
    fn gated() -> Db {
        Db {
            gate: Some(Semaphore::new(0)),
            ..Db::default()
        }
    }

    async fn load(&self, ids: &[u64]) -> HashMap<u64, String> {
        self.loads.lock().unwrap().push(ids.to_vec());
        if let Some(gate) = &self.gate {
            self.waiting.fetch_add(1, SeqCst);
            gate.acquire().await.unwrap().forget();
        }
        ids.iter()
            .filter(|id| !self.missing.contains(id))
            .map(|&id| (id, format!("user {id}")))
            .collect()
    }

    fn loads(&self) -> Vec<Vec<u64>> {
        self.loads.lock().unwrap().clone()
    }
}

#[cached(ttl = 300, key_prefix = "b:", name = "users", batch = ids, cache = cache, ignore(db))]
async fn users(cache: &Cache, db: &Db, ids: &[u64]) -> HashMap<u64, String> {
    db.load(ids).await
}

/// The one-element function over the same entries.
#[cached(ttl = 300, key_prefix = "b:", name = "users", cache = cache, ignore(db))]
async fn user(cache: &Cache, db: &Db, id: u64) -> String {
    db.load(&[id]).await.remove(&id).unwrap_or_default()
}

fn names(ids: &[u64]) -> HashMap<u64, String> {
    ids.iter().map(|&id| (id, format!("user {id}"))).collect()
}

// --- on both backends ---------------------------------------------------------------------

async fn only_the_missing_ids_are_loaded_once_deduplicated_in_order(h: &Harness) {
    let db = Db::default();
    assert_eq!(users(&h.cache, &db, &[3, 1]).await, names(&[3, 1]));
    assert_eq!(
        users(&h.cache, &db, &[5, 1, 4, 5, 3, 2, 4]).await,
        names(&[1, 2, 3, 4, 5])
    );
    assert_eq!(db.loads(), vec![vec![3, 1], vec![5, 4, 2]]);
    assert_eq!(users(&h.cache, &db, &[2, 5]).await, names(&[2, 5]));
    assert_eq!(db.loads().len(), 2, "a warm batch loads nothing");
    let stats = h.cache.stats();
    // Each distinct element is one call: 5 misses, then 1 and 3, then 2 and 5.
    assert_eq!((stats.misses, stats.hits, stats.stores), (5, 2 + 2, 5));
}

async fn a_batch_and_a_one_element_function_share_entries(h: &Harness) {
    let db = Db::default();
    assert_eq!(
        users_key(&h.cache, &5).await.unwrap(),
        user_key(&h.cache, 5).await.unwrap()
    );
    user_prime(&h.cache, 7, &"primed".to_string())
        .await
        .unwrap();
    users(&h.cache, &db, &[6]).await;
    let got = users(&h.cache, &db, &[6, 7]).await;
    assert_eq!(got[&7], "primed");
    assert_eq!(user(&h.cache, &db, 6).await, "user 6");
    assert_eq!(db.loads(), vec![vec![6]]);
    // Element helpers.
    assert!(users_invalidate(&h.cache, &6).await.unwrap());
    users_prime(&h.cache, &8, &"eight".to_string())
        .await
        .unwrap();
    assert_eq!(users(&h.cache, &db, &[6, 7, 8]).await[&8], "eight");
    assert_eq!(db.loads(), vec![vec![6], vec![6]]);
    assert_eq!(users_invalidate_all(&h.cache).await.unwrap(), 3);
}

async fn absent_elements_are_neither_returned_nor_stored(h: &Harness) {
    let db = Db {
        missing: vec![2],
        ..Db::default()
    };
    assert_eq!(users(&h.cache, &db, &[1, 2, 3]).await, names(&[1, 3]));
    assert_eq!(
        h.cache
            .get_raw(&users_key(&h.cache, &2).await.unwrap())
            .await
            .unwrap(),
        None
    );
    assert_eq!(users(&h.cache, &db, &[1, 2, 3]).await, names(&[1, 3]));
    assert_eq!(
        db.loads(),
        vec![vec![1, 2, 3], vec![2]],
        "absence is not cached"
    );
}

#[derive(Debug, PartialEq)]
struct LoadError;

#[cached(ttl = 300, key_prefix = "bres:", batch = ids, cache = cache, ignore(fail, loads))]
async fn fallible(
    cache: &Cache,
    loads: &AtomicUsize,
    fail: bool,
    ids: Vec<u64>,
) -> Result<BTreeMap<u64, u64>, LoadError> {
    loads.fetch_add(1, SeqCst);
    if fail {
        return Err(LoadError);
    }
    Ok(ids.into_iter().map(|id| (id, id * 2)).collect())
}

async fn an_err_is_returned_and_nothing_is_stored(h: &Harness) {
    let loads = AtomicUsize::new(0);
    assert_eq!(
        fallible(&h.cache, &loads, true, vec![1, 2]).await,
        Err(LoadError)
    );
    assert_eq!(
        fallible(&h.cache, &loads, false, vec![2, 1]).await,
        Ok(BTreeMap::from([(1, 2), (2, 4)]))
    );
    assert_eq!(loads.load(SeqCst), 2, "the Err stored nothing");
    assert_eq!(
        fallible(&h.cache, &loads, true, vec![1, 2]).await,
        Ok(BTreeMap::from([(1, 2), (2, 4)])),
        "both are cached now: the loader does not run"
    );
    assert_eq!(loads.load(SeqCst), 2);
}

#[cached(ttl = 300, key_prefix = "bset:", batch = ids, cache = cache)]
async fn from_set(cache: &Cache, ids: HashSet<u32>) -> HashMap<u32, u32> {
    ids.into_iter().map(|id| (id, id + 1)).collect()
}

#[cached(ttl = 300, key_prefix = "bbset:", batch = ids, cache = cache, ignore(seen))]
async fn from_btree_set(
    cache: &Cache,
    seen: &Mutex<Vec<BTreeSet<u32>>>,
    ids: BTreeSet<u32>,
) -> BTreeMap<u32, u32> {
    seen.lock().unwrap().push(ids.clone());
    ids.into_iter().map(|id| (id, id + 1)).collect()
}

#[cached(ttl = 300, key_prefix = "bvec:", name = "scaled", batch = ids, cache = cache)]
async fn from_vec_ref(
    cache: &Cache,
    tenant: &str,
    ids: &Vec<u32>,
    scale: u32,
) -> HashMap<u32, String> {
    ids.iter()
        .map(|id| (*id, format!("{tenant}:{}", id * scale)))
        .collect()
}

#[cached(ttl = 300, key_prefix = "bvec:", name = "scaled", cache = cache)]
async fn one_of_vec_ref(cache: &Cache, tenant: &str, id: u32, scale: u32) -> String {
    format!("{tenant}:{}", id * scale)
}

async fn every_shape_of_ids_works(h: &Harness) {
    assert_eq!(
        from_set(&h.cache, HashSet::from([1, 2])).await,
        HashMap::from([(1, 2), (2, 3)])
    );
    let seen = Mutex::new(Vec::new());
    from_btree_set(&h.cache, &seen, BTreeSet::from([3, 1])).await;
    from_btree_set(&h.cache, &seen, BTreeSet::from([1, 2, 3])).await;
    assert_eq!(
        *seen.lock().unwrap(),
        vec![BTreeSet::from([1, 3]), BTreeSet::from([2])]
    );
    let got = from_vec_ref(&h.cache, "t", &vec![4, 5], 10).await;
    assert_eq!(got[&5], "t:50");
    // Arguments before and after the ids are in every element's key.
    assert_eq!(
        from_vec_ref_key(&h.cache, "t", 10, &5).await.unwrap(),
        one_of_vec_ref_key(&h.cache, "t", 5, 10).await.unwrap()
    );
    assert_ne!(
        from_vec_ref_key(&h.cache, "t", 10, &5).await.unwrap(),
        from_vec_ref_key(&h.cache, "u", 10, &5).await.unwrap()
    );
}

async fn a_corrupt_element_is_a_miss_and_is_overwritten(h: &Harness) {
    let db = Db::default();
    users(&h.cache, &db, &[1, 2]).await;
    let key = users_key(&h.cache, &2).await.unwrap();
    h.raw_set(&key, b"{not json").await;
    assert_eq!(users(&h.cache, &db, &[1, 2]).await, names(&[1, 2]));
    assert_eq!(db.loads(), vec![vec![1, 2], vec![2]]);
    assert_eq!(h.raw_get(&key).await.as_deref(), Some(&br#""user 2""#[..]));
    assert_eq!(h.cache.stats().corrupt, 1);
}

#[cached(ttl = 300, key_prefix = "bskip:", batch = ids, cache = cache, skip_cache = fresh, ignore(db))]
async fn skippable(cache: &Cache, db: &Db, ids: &[u64], fresh: bool) -> HashMap<u64, String> {
    db.load(ids).await
}

async fn skip_cache_loads_every_id(h: &Harness) {
    let db = Db::default();
    skippable(&h.cache, &db, &[1, 2], false).await;
    skippable(&h.cache, &db, &[2, 1, 2], true).await;
    skippable(&h.cache, &db, &[1, 2], false).await;
    assert_eq!(db.loads(), vec![vec![1, 2], vec![2, 1]]);
    assert_eq!(h.cache.stats().skipped, 2);
}

/// Two batches that overlap load each element once: the second waits for
/// the elements the first is loading and loads only the rest.
async fn overlapping_batches_load_each_element_once(h: &Harness) {
    let db = Db::gated();
    let (first, second) = tokio::join!(users(&h.cache, &db, &[1, 2, 3]), async {
        until("the first batch loads", async || {
            db.waiting.load(SeqCst) == 1
        })
        .await;
        let second = users(&h.cache, &db, &[2, 3, 4]);
        let release = async {
            until("the second batch loads its own", async || {
                db.waiting.load(SeqCst) == 2
            })
            .await;
            db.gate.as_ref().unwrap().add_permits(2);
        };
        tokio::join!(second, release).0
    });
    assert_eq!(first, names(&[1, 2, 3]));
    assert_eq!(second, names(&[2, 3, 4]));
    assert_eq!(db.loads(), vec![vec![1, 2, 3], vec![4]]);
    let stats = h.cache.stats();
    assert_eq!(stats.shared, 2, "{stats:?}");
}

/// An element invalidated while the loader runs: its older value is not
/// stored, the others are.
async fn an_invalidation_during_the_loader_wins_per_element(h: &Harness) {
    let db = Db::gated();
    let (loaded, ()) = tokio::join!(users(&h.cache, &db, &[1, 2, 3]), async {
        until("the batch loads", async || db.waiting.load(SeqCst) == 1).await;
        assert!(users_invalidate(&h.cache, &2).await.unwrap());
        db.gate.as_ref().unwrap().add_permits(1);
    });
    assert_eq!(loaded, names(&[1, 2, 3]));
    assert_eq!(h.cache.stats().fills_refused, 1);
    let ungated = Db::default();
    users(&h.cache, &ungated, &[1, 2, 3]).await;
    assert_eq!(ungated.loads(), vec![vec![2]]);
}

async fn get_or_set_many_batches_keys_given_at_run_time(h: &Harness) {
    let p = h.prefix("gm");
    let key = |id: &u64| format!("{p}{id}");
    let loads = Mutex::new(Vec::new());
    let load = |ids: Vec<u64>| {
        loads.lock().unwrap().push(ids.clone());
        async move {
            ids.into_iter()
                .map(|id| (id, id * 10))
                .collect::<HashMap<u64, u64>>()
        }
    };
    let first = h.cache.get_or_set_many([1, 2], key, 300, load).await;
    assert_eq!(first, HashMap::from([(1, 10), (2, 20)]));
    let second = h.cache.get_or_set_many([3, 2, 1], key, 300, load).await;
    assert_eq!(second.len(), 3);
    assert_eq!(*loads.lock().unwrap(), vec![vec![1, 2], vec![3]]);
    assert_eq!(h.cache.get::<u64>(&key(&3)).await.unwrap(), Some(30));
    let failed: Result<HashMap<u64, u64>, &str> = h
        .cache
        .try_get_or_set_many([4, 1], key, 300, |_| async { Err("down") })
        .await;
    assert_eq!(failed, Err("down"));
    assert_eq!(h.cache.get::<u64>(&key(&4)).await.unwrap(), None);
}

async fn a_batch_of_a_hundred_thousand_ids_works(h: &Harness) {
    let ids: Vec<u32> = (0..100_000).collect();
    let loads = AtomicUsize::new(0);
    let load = |ids: Vec<u32>| {
        loads.fetch_add(1, SeqCst);
        async move {
            ids.into_iter()
                .map(|id| (id, id))
                .collect::<HashMap<u32, u32>>()
        }
    };
    let p = h.prefix("big");
    let key = |id: &u32| format!("{p}{id}");
    let got = h.cache.get_or_set_many(ids.clone(), key, 300, load).await;
    assert_eq!(got.len(), 100_000);
    let again = h.cache.get_or_set_many(ids, key, 300, load).await;
    assert_eq!(again.len(), 100_000);
    assert_eq!(
        loads.load(SeqCst),
        1,
        "every element was stored, and read back"
    );
    assert_eq!(h.cache.stats().stores, 100_000);
}

support::on_both_backends! {
    #[tokio::test]
    only_the_missing_ids_are_loaded_once_deduplicated_in_order,
    a_batch_and_a_one_element_function_share_entries,
    absent_elements_are_neither_returned_nor_stored,
    an_err_is_returned_and_nothing_is_stored,
    every_shape_of_ids_works,
    a_corrupt_element_is_a_miss_and_is_overwritten,
    skip_cache_loads_every_id,
    overlapping_batches_load_each_element_once,
    an_invalidation_during_the_loader_wins_per_element,
    get_or_set_many_batches_keys_given_at_run_time,
    a_batch_of_a_hundred_thousand_ids_works,
}

// --- on Redis only --------------------------------------------------------------------------

/// A warm batch is one `MGET`, and no `GET`; a cold one claims and stores
/// each element (at once).
#[tokio::test]
async fn a_warm_batch_is_one_mget() {
    let redis = TestRedis::spawn(&[]);
    let cache = redis.cache().await;
    let mut conn = redis.client().await;
    let db = Db::default();
    let ids: Vec<u64> = (0..100).collect();
    users(&cache, &db, &ids).await;
    let _: () = ::redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(users(&cache, &db, &ids).await.len(), 100);
    let counts = command_counts(&mut conn).await;
    assert_eq!(
        counts,
        HashMap::from([("mget".to_owned(), 1)]),
        "{counts:?}"
    );
}

/// Redis down: every element is loaded and returned.
#[tokio::test]
async fn with_redis_down_every_element_is_loaded() {
    let mut redis = TestRedis::spawn(&[]);
    let cache = Cache::builder()
        .url(redis.url())
        .response_timeout(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    redis.kill();
    let db = Db::default();
    assert_eq!(users(&cache, &db, &[1, 2]).await, names(&[1, 2]));
    assert_eq!(db.loads(), vec![vec![1, 2]]);
    assert_eq!(cache.stats().errors, 2);
}

/// With a local tier, elements held in the process are not read again.
#[tokio::test]
async fn elements_held_in_the_local_tier_are_not_read_from_redis() {
    let redis = TestRedis::spawn(&[]);
    let cache = Cache::builder()
        .url(redis.url())
        .local_cache(1 << 20)
        .build()
        .await
        .unwrap();
    let mut conn = redis.client().await;
    let db = Db::default();
    users(&cache, &db, &[1, 2, 3]).await;
    until("the batch's elements are held locally", async || {
        users(&cache, &db, &[1, 2, 3]).await;
        cache.stats().local_hits >= 3
    })
    .await;
    let _: () = ::redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut conn)
        .await
        .unwrap();
    let before = cache.stats().local_hits;
    users(&cache, &db, &[1, 2, 3]).await;
    assert_eq!(cache.stats().local_hits, before + 3);
    assert_eq!(command_counts(&mut conn).await, HashMap::new());
    assert_eq!(db.loads().len(), 1);
}
