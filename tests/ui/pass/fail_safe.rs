//! Functions with `fail_safe`, `fail_safe_throttle` and `soft_timeout`.

use std::time::Duration;

use redis_memo::{Cache, cached};

#[cached(ttl = 60, fail_safe = 3600, cache = cache)]
async fn rate(cache: &Cache, currency: &str) -> Result<f64, String> {
    Ok(currency.len() as f64)
}

#[cached(
    ttl = Duration::from_secs(30),
    fail_safe = Duration::from_secs(600),
    fail_safe_throttle = 5,
    soft_timeout = Duration::from_millis(limit),
    cache = cache
)]
async fn report(cache: &Cache, limit: u64, name: String) -> String {
    format!("{name}: {limit}")
}

#[cached(ttl = 60, stale = 30, fail_safe = 3600, soft_timeout = Duration::from_millis(100), cache = cache)]
async fn both(cache: &Cache, id: String) -> Result<usize, std::io::Error> {
    Ok(id.len())
}

fn assert_send<F: std::future::Future + Send>(f: F) -> F {
    f
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cache = Cache::in_memory();
    assert_eq!(assert_send(rate(&cache, "eur")).await, Ok(3.0));
    assert_eq!(assert_send(report(&cache, 50, "a".into())).await, "a: 50");
    assert_eq!(assert_send(both(&cache, "xy".into())).await.unwrap(), 2);
    rate_prime(&cache, "usd", &1.0).await.unwrap();
    assert_eq!(rate(&cache, "usd").await, Ok(1.0));
}
