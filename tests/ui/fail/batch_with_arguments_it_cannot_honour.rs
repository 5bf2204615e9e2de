use std::collections::HashMap;

use redis_memo::{Cache, cached};

#[cached(ttl = 60, stale = 30, batch = ids, cache = cache)]
async fn stale(cache: &Cache, ids: Vec<u64>) -> HashMap<u64, u64> {
    ids.into_iter().map(|id| (id, id)).collect()
}

#[cached(key_prefix = "g:", grouped, lease = 5, batch = ids, cache = cache)]
async fn grouped(cache: &Cache, ids: Vec<u64>) -> HashMap<u64, u64> {
    ids.into_iter().map(|id| (id, id)).collect()
}

#[cached(batch = ids, ignore(ids), key(ids.len()), cache = cache)]
async fn ignored(cache: &Cache, ids: Vec<u64>) -> HashMap<u64, u64> {
    ids.into_iter().map(|id| (id, id)).collect()
}

fn main() {}
