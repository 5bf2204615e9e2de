//! Signatures the attribute keeps working: visibility, docs, attributes,
//! generics, lifetimes, references, patterns, `impl Trait`, return shapes.
use std::collections::HashMap;

use redis_memo::{Cache, cached};
use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug)]
pub struct DbError;

/// Docs stay on the function.
#[cached(cache = cache)]
#[must_use]
pub async fn documented(cache: &Cache, id: u64) -> u64 {
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
async fn results(cache: &Cache, id: u64) -> Result<u64, DbError> {
    if id == 0 {
        return Err(DbError);
    }
    let parsed: u64 = "7".parse().map_err(|_| DbError)?;
    Ok(parsed + id)
}

#[cached(cache = cache)]
async fn io_result(cache: &Cache, path: &str) -> std::io::Result<String> {
    Ok(path.to_string())
}

#[cached(cache = cache)]
async fn option(cache: &Cache, id: u64) -> Option<u64> {
    (id > 0).then_some(id)
}

#[cached(cache = cache)]
async fn unit(cache: &Cache, id: u64) {
    let _ = id;
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cache = Cache::in_memory();
    let _ = documented(&cache, 1).await;
    references(&cache, "x", &[1, 2], &HashMap::new()).await;
    patterns(&cache, (1, 2), true, 3).await;
    impl_trait(&cache, "v").await;
    generic(&cache, 1u8, "str").await;
    let _ = results(&cache, 1).await;
    let _ = io_result(&cache, "p").await;
    option(&cache, 1).await;
    unit(&cache, 1).await;
    results_prime(&cache, 2, &9).await.unwrap();
    patterns_key(&cache, (1, 2), 3).await.unwrap();
}
