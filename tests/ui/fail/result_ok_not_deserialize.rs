use redis_memo::cached;

#[derive(serde::Serialize)]
struct Profile {
    id: u64,
}

#[cached(ttl = 60)]
async fn f(id: u64) -> Result<Profile, String> {
    Ok(Profile { id })
}

fn main() {}
