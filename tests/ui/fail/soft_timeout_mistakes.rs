use redis_memo::cached;

#[cached(ttl = 60, soft_timeout = std::time::Duration::from_millis(200))]
async fn nothing_kept(id: u64) -> u64 {
    id
}

#[cached(ttl = 60, fail_safe = 3600, soft_timeout = 200)]
async fn not_a_duration(id: u64) -> u64 {
    id
}

#[cached(ttl = 60, fail_safe = 3600, soft_timeout = std::time::Duration::from_millis(200))]
async fn borrows(name: &str) -> u64 {
    name.len() as u64
}

fn main() {}
