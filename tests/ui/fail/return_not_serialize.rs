use redis_memo::cached;

struct Profile {
    id: u64,
}

#[cached(ttl = 60)]
async fn f(id: u64) -> Profile {
    Profile { id }
}

fn main() {}
