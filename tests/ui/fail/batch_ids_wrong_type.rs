use std::collections::HashMap;

use redis_memo::cached;

#[cached(batch = ids)]
async fn by_array(ids: [u64; 4]) -> HashMap<u64, u64> {
    ids.into_iter().map(|id| (id, id)).collect()
}

#[cached(batch = id)]
async fn one(id: u64) -> HashMap<u64, u64> {
    HashMap::from([(id, id)])
}

#[cached(batch = idz)]
async fn typo(ids: Vec<u64>) -> HashMap<u64, u64> {
    ids.into_iter().map(|id| (id, id)).collect()
}

fn main() {}
