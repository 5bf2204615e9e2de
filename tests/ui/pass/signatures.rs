//! Signatures the attribute keeps working: visibility, docs, attributes,
//! generics, lifetimes, references, patterns, `impl Trait`, return shapes.
//!
//! `missing_docs` and `unused_variables` are denied: the doc comments and the
//! `#[allow]` below only satisfy them if the attribute keeps them.
#![deny(missing_docs, unused_variables)]

use std::collections::HashMap;
use std::hash::Hash;

use redis_memo::{Cache, cached};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// An error that is not cached (and need not be `Serialize`).
#[derive(Debug)]
pub struct DbError;

/// Docs stay on the function.
#[cached(cache = cache)]
#[must_use]
pub async fn documented(cache: &Cache, id: u64) -> u64 {
    id
}

#[cached(cache = cache)]
#[allow(unused_variables)]
pub(crate) async fn allowed(cache: &Cache, id: u64) -> u64 {
    let unused = 1;
    id
}

#[cached(cache = cache)]
pub(crate) async fn references<'a>(
    cache: &Cache,
    name: &'a str,
    items: &[u32],
    map: &HashMap<String, Vec<u8>>,
) -> usize {
    name.len() + items.len() + map.len()
}

#[cached(cache = cache)]
async fn owned(cache: &Cache, name: String, items: Vec<u32>, pair: (u8, char)) -> String {
    format!("{name}{items:?}{pair:?}")
}

#[cached(cache = cache)]
async fn patterns(cache: &Cache, (a, b): (u32, u32), _: bool, mut n: u8) -> u32 {
    n += 1;
    a + b + u32::from(n)
}

#[cached(cache = cache)]
async fn impl_trait(cache: &Cache, value: impl Serialize + Send) -> bool {
    serde_json::to_string(&value).is_ok()
}

#[cached(cache = cache)]
async fn generic<T, U>(cache: &Cache, value: T, other: &U) -> Vec<T>
where
    T: Serialize + DeserializeOwned + Clone,
    U: Serialize + ?Sized,
{
    let _ = serde_json::to_string(other);
    vec![value.clone(), value]
}

#[cached(cache = cache)]
async fn generic_slice<T: Serialize + DeserializeOwned + Clone>(
    cache: &Cache,
    items: &[T],
) -> Vec<T> {
    items.to_vec()
}

#[cached(cache = cache)]
async fn generic_map<K, V>(cache: &Cache, map: &HashMap<K, V>) -> usize
where
    K: Serialize + Eq + Hash,
    V: Serialize,
{
    map.len()
}

#[cached(cache = cache)]
async fn results(cache: &Cache, id: u64) -> Result<u64, DbError> {
    if id == 0 {
        return Err(DbError);
    }
    let parsed: u64 = "7".parse().map_err(|_| DbError)?;
    Ok(parsed + id)
}

#[cached(cache = cache)]
async fn io_result(cache: &Cache, path: &str) -> std::io::Result<String> {
    if path.is_empty() {
        return Err(std::io::Error::other("empty path"));
    }
    let n: u32 = "1".parse().map_err(std::io::Error::other)?;
    Ok(format!("{path}{n}"))
}

#[cached(cache = cache)]
async fn option(cache: &Cache, id: u64) -> Option<u64> {
    let half = id.checked_div(2)?;
    if half == 0 {
        return None;
    }
    Some(half)
}

#[cached(cache = cache)]
async fn early_return(cache: &Cache, id: u64) -> String {
    if id == 0 {
        return String::from("zero");
    }
    id.to_string()
}

#[cached(cache = cache)]
async fn unit(cache: &Cache, id: u64) {
    let _ = id;
}

#[cached(cache = cache)]
async fn explicit_unit(cache: &Cache, id: u64) -> () {
    if id == 0 {
        return;
    }
}

#[tokio::main(flavor = "current_thread")]
pub(crate) async fn main() {
    let cache = Cache::in_memory();
    let _ = documented(&cache, 1).await;
    allowed(&cache, 1).await;
    references(&cache, "x", &[1, 2], &HashMap::new()).await;
    owned(&cache, "n".into(), vec![1], (2, 'c')).await;
    patterns(&cache, (1, 2), true, 3).await;
    impl_trait(&cache, "v").await;
    generic(&cache, 1u8, "str").await;
    let _: Vec<String> = generic_slice(&cache, &["a".to_string()]).await;
    generic_map(&cache, &HashMap::from([("k", 1u8)])).await;
    let _ = results(&cache, 1).await;
    let _ = io_result(&cache, "p").await;
    option(&cache, 1).await;
    early_return(&cache, 0).await;
    unit(&cache, 1).await;
    explicit_unit(&cache, 1).await;
    results_prime(&cache, 2, &9).await.unwrap();
    io_result_prime(&cache, "q", &"v".to_string())
        .await
        .unwrap();
    patterns_key(&cache, (1, 2), 3).await.unwrap();
}
