use redis_memo::{Cache, cached};

struct Db;

impl Db {
    async fn price(&self, id: u64) -> u64 {
        id
    }
}

// `cache` is only used to find the cache, not by the body: it may borrow.
#[cached(ttl = 60, stale = 30, cache = cache, ignore(db))]
async fn price(cache: &Cache, db: &Db, id: u64) -> u64 {
    db.price(id).await
}

#[cached(ttl = 60, stale = 30)]
async fn greeting(name: &str) -> String {
    format!("hello {name}")
}

fn main() {}
