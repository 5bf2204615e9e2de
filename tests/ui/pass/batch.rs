//! Batch functions of every shape, their helpers, and methods.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use redis_memo::{Cache, cached};

#[derive(Debug)]
struct DbError;

type AppResult<T> = Result<T, DbError>;

#[cached(ttl = 60, key_prefix = "u:", batch = ids, cache = cache)]
async fn by_slice(cache: &Cache, ids: &[u64]) -> HashMap<u64, String> {
    ids.iter().map(|id| (*id, id.to_string())).collect()
}

#[cached(batch = ids, cache = cache)]
async fn by_vec(cache: &Cache, mut ids: Vec<u64>) -> Result<BTreeMap<u64, u64>, DbError> {
    ids.sort();
    Ok(ids.into_iter().map(|id| (id, id)).collect())
}

#[cached(batch = ids, cache = cache)]
async fn by_vec_ref(cache: &Cache, region: &str, ids: &Vec<String>) -> AppResult<HashMap<String, usize>> {
    Ok(ids.iter().map(|id| (id.clone(), id.len() + region.len())).collect())
}

#[cached(batch = ids, cache = cache)]
async fn by_hash_set(cache: &Cache, ids: HashSet<u32>) -> HashMap<u32, Option<u32>> {
    ids.into_iter().map(|id| (id, (id > 3).then_some(id))).collect()
}

#[cached(batch = ids, cache = cache, ttl = Arc::new(5u64).as_ref() + 1)]
async fn by_btree_set(cache: &Cache, ids: BTreeSet<u32>) -> BTreeMap<u32, u32> {
    ids.into_iter().map(|id| (id, id)).collect()
}

#[cached(
    batch = ids,
    cache = cache,
    ttl = 30,
    version = 2,
    key(region.len()),
    ignore(region),
    local = false,
    codec = redis_memo::Codec::Json,
    ttl_jitter = 0.1,
    helpers(name = "every_arg", vis = pub)
)]
async fn with_every_argument(cache: &Cache, region: &str, ids: Vec<u8>) -> HashMap<u8, u8> {
    let _ = region;
    ids.into_iter().map(|id| (id, id)).collect()
}

struct Repo {
    cache: Cache,
}

impl Repo {
    #[cached(batch = ids, cache = self.cache, helpers)]
    async fn names(&self, ids: &[u64]) -> HashMap<u64, String> {
        ids.iter().map(|id| (*id, format!("n{id}"))).collect()
    }
}

fn assert_send<F: std::future::Future + Send>(f: F) -> F {
    f
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cache = Cache::in_memory();
    assert_eq!(assert_send(by_slice(&cache, &[1, 2])).await.len(), 2);
    assert_eq!(by_vec(&cache, vec![3, 1]).await.unwrap().len(), 2);
    assert_eq!(by_vec_ref(&cache, "eu", &vec!["a".to_string()]).await.unwrap()["a"], 3);
    assert_eq!(by_hash_set(&cache, HashSet::from([1, 5])).await[&1], None);
    assert_eq!(by_btree_set(&cache, BTreeSet::from([2])).await[&2], 2);
    let key: String = by_slice_key(&cache, &1).await.unwrap();
    assert!(key.starts_with("u:"));
    by_slice_prime(&cache, &9, &"nine".to_string()).await.unwrap();
    assert!(by_slice_invalidate(&cache, &9).await.unwrap());
    by_vec_ref_prime(&cache, "eu", &"b".to_string(), &1).await.unwrap();
    assert_eq!(by_slice_invalidate_all(&cache).await.unwrap(), 2);
    assert_eq!(with_every_argument(&cache, "eu", vec![1]).await[&1], 1);
    assert!(every_arg_key(&cache, "eu", &1).await.unwrap().contains(":v2:"));
    let repo = Repo { cache: cache.clone() };
    assert_eq!(repo.names(&[4]).await[&4], "n4");
    assert!(Repo::names_key(&cache, &4).await.unwrap().contains("Repo::names"));
}
