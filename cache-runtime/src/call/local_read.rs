//! A call's reads through the cache's local tier: a hit with no I/O, or a
//! Redis read that fills the tier (see [`LocalTier`] for the ordering that
//! keeps a fill from inserting a value older than an invalidation).
//!
//! Before its first read, a key's prefix is registered with the tracking
//! connections (see [`prefixes`](crate::local::prefixes)): once per prefix.
//!
//! A grouped call keeps the group's generation counter in the tier too (its
//! key changes, and is invalidated, on `invalidate_group`), so that a hit
//! needs neither: the generation, then the value of that generation.

use std::sync::Arc;

use super::spec::Target;
use crate::cache::Cache;
use crate::error::Error;
use crate::local::LocalTier;
use crate::store::{Held, Store, is_placeholder};

/// The local copy of the call's value, and the generation it belongs to.
pub(crate) fn hit(local: &LocalTier, target: &Target) -> Option<(Arc<Held>, u64)> {
    match target {
        Target::Key(key) => local.get(key).map(|held| (held, 0)),
        Target::Grouped { gen_key, .. } => {
            let generation = generation(local, gen_key)?;
            let held = local.get(&target.key(generation))?;
            Some((held, generation))
        }
    }
}

/// Reads the call's value from Redis, filling the tier with what it read.
pub(crate) async fn read_through(
    cache: &Cache,
    local: &LocalTier,
    target: &Target,
) -> Result<(Option<Vec<u8>>, u64), Error> {
    let (key, generation) = match target {
        Target::Key(key) => ((**key).into(), 0),
        Target::Grouped {
            gen_key,
            head,
            tail,
        } => match generation(local, gen_key) {
            Some(generation) => (target.key(generation), generation),
            // Read both from Redis; keep the generation (the value is kept
            // by the next call, which reads its key directly).
            None => {
                local.track(gen_key).await;
                let fill = local.begin(gen_key);
                let read = Box::pin(cache.store().get_grouped(gen_key, head, tail)).await;
                if let Ok((generation, _)) = &read {
                    fill.finish(generation.to_string().as_bytes());
                }
                return read.map(|(generation, bytes)| (bytes, generation));
            }
        },
    };
    local.track(&key).await;
    let fill = local.begin(&key);
    let read = cache.store().get(&key).await;
    if let Ok(Some(bytes)) = &read
        && !is_placeholder(bytes)
    {
        fill.finish(bytes);
    }
    read.map(|bytes| (bytes, generation))
}

/// The generation counter `gen_key` as the tier holds it.
fn generation(local: &LocalTier, gen_key: &str) -> Option<u64> {
    std::str::from_utf8(local.get(gen_key)?.bytes())
        .ok()?
        .parse()
        .ok()
}
