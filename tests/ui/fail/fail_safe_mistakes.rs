use redis_memo::cached;

#[cached(ttl = 60, fail_safe = 3600)]
async fn never_fails(id: u64) -> u64 {
    id
}

#[cached(fail_safe = 3600)]
async fn no_ttl(id: u64) -> Result<u64, String> {
    Ok(id)
}

#[cached(ttl = 60, fail_safe = 0)]
async fn keeps_nothing(id: u64) -> Result<u64, String> {
    Ok(id)
}

#[cached(ttl = 60, fail_safe = std::time::Duration::from_secs(id))]
async fn per_call(id: u64) -> Result<u64, String> {
    Ok(id)
}

fn main() {}
