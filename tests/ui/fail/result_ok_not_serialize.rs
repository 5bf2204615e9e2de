use redis_memo::cached;

struct Profile {
    id: u64,
}

#[derive(Debug)]
struct DbError;

#[cached(ttl = 60)]
async fn f(id: u64) -> Result<Profile, DbError> {
    Ok(Profile { id })
}

fn main() {}
