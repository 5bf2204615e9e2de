//! `cargo run --example quickstart`
//!
//! Caches a slow lookup. Uses Redis when `REDIS_URL` is set
//! (`REDIS_URL=redis://127.0.0.1:6379 cargo run --example quickstart`), and the
//! in-memory cache otherwise, so it runs on a machine without Redis.

use std::time::{Duration, Instant};

use redis_memo::{Cache, cached};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Profile {
    id: u64,
    name: String,
}

/// A slow call: a database read, an HTTP request, a render...
#[cached(ttl = 60, key_prefix = "quickstart:")]
async fn user_profile(user_id: u64) -> Result<Profile, std::io::Error> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(Profile {
        id: user_id,
        name: format!("user {user_id}"),
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let cache = Cache::from_env().await?;
    println!("cache backend: {}", cache.backend_kind());
    redis_memo::set_default_cache(cache.clone());
    // Start from a clean slate, so the first call below is a miss.
    cache.invalidate_prefix("quickstart:").await?;

    for attempt in ["miss", "hit"] {
        let start = Instant::now();
        let profile = user_profile(42).await?;
        println!(
            "{attempt}: {profile:?} in {:.1} ms",
            start.elapsed().as_secs_f64() * 1000.0
        );
    }

    let deleted = cache.invalidate_prefix("quickstart:").await?;
    println!("invalidated {deleted} key(s) under \"quickstart:\"");
    let start = Instant::now();
    user_profile(42).await?;
    println!(
        "after invalidation: miss again in {:.1} ms",
        start.elapsed().as_secs_f64() * 1000.0
    );
    Ok(())
}
