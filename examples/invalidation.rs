//! `cargo run --example invalidation`
//!
//! Every way to drop or replace cached data: by prefix, one call at a time
//! (`{fn}_key`, `{fn}_invalidate`, `{fn}_prime`, `redis_memo::refresh`), one
//! function (`{fn}_invalidate_all`), by version, and by group. Uses Redis when `REDIS_URL` is set, memory otherwise.

use std::sync::atomic::{AtomicU32, Ordering};

use redis_memo::{Cache, cached, refresh};

static LOADS: AtomicU32 = AtomicU32::new(0);

/// Pretends to load a price from a slow service; counts the loads.
fn load(item: &str) -> u64 {
    LOADS.fetch_add(1, Ordering::SeqCst);
    item.len() as u64 * 100 + u64::from(LOADS.load(Ordering::SeqCst))
}

#[cached(ttl = 600, key_prefix = "prices:", cache = cache)]
async fn price(cache: &Cache, item: &str) -> u64 {
    load(item)
}

#[cached(ttl = 600, key_prefix = "catalog:", grouped, cache = cache)]
async fn catalog_entry(cache: &Cache, item: &str) -> String {
    format!(
        "{item} ({} loads so far)",
        LOADS.fetch_add(1, Ordering::SeqCst) + 1
    )
}

#[cached(ttl = 600, key_prefix = "render:", version = 2, cache = cache)]
async fn render(cache: &Cache, item: &str) -> String {
    format!("<li>{item}</li>")
}

#[tokio::main]
async fn main() -> Result<(), redis_memo::Error> {
    let cache = Cache::from_env().await?;
    println!("backend: {}", cache.backend_kind());
    for prefix in ["prices:", "catalog:", "render:"] {
        cache.invalidate_prefix(prefix).await?;
    }

    // One call at a time.
    println!("price(pen) = {}", price(&cache, "pen").await);
    println!("price(pen) = {} (cached)", price(&cache, "pen").await);
    println!("its key: {}", price_key(&cache, "pen").await?);
    price_invalidate(&cache, "pen").await?;
    println!("after price_invalidate: {}", price(&cache, "pen").await);
    price_prime(&cache, "ink", &999).await?;
    println!(
        "after price_prime(ink, 999): {}",
        price(&cache, "ink").await
    );
    println!(
        "refresh(price(ink)) = {}",
        refresh(price(&cache, "ink")).await
    );

    // One function: every entry of `price`, nothing of another function.
    let dropped = price_invalidate_all(&cache).await?;
    println!("price_invalidate_all dropped {dropped} entries");

    // By prefix: SCAN + UNLINK of every key starting with the literal prefix.
    let deleted = cache.invalidate_prefix("prices:").await?;
    println!("invalidate_prefix(\"prices:\") deleted {deleted} keys");

    // By group: one INCR retires every entry of the group, whatever their number.
    for item in ["a", "b", "c"] {
        catalog_entry(&cache, item).await;
    }
    println!("catalog(a) = {}", catalog_entry(&cache, "a").await);
    let generation = cache.invalidate_group("catalog:").await?;
    println!("invalidate_group(\"catalog:\") -> generation {generation}");
    println!(
        "catalog(a) = {} (recomputed)",
        catalog_entry(&cache, "a").await
    );

    // By version: `version = 2` is in the key; bumping it retires version 1's
    // entries without touching them. A cache-wide default works the same way.
    println!("render key: {}", render_key(&cache, "pen").await?);
    let v7 = cache.with_default_version(7);
    println!(
        "price key under default version 7: {}",
        price_key(&v7, "pen").await?
    );
    Ok(())
}
