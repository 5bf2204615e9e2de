use redis_memo::cached;

#[cached(batch = ids)]
async fn listed(ids: Vec<u64>) -> Vec<(u64, u64)> {
    ids.into_iter().map(|id| (id, id)).collect()
}

#[cached(batch = ids)]
async fn nothing(ids: Vec<u64>) {
    let _ = ids;
}

fn main() {}
