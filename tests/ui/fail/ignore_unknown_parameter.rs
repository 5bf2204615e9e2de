use redis_memo::cached;

#[cached(ignore(db, pool))]
async fn f(db: &str, id: u64) -> u64 {
    let _ = db;
    id
}

fn main() {}
