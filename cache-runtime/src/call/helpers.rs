//! The helpers generated next to a `#[cached]` function: `{fn}_key`,
//! `{fn}_invalidate`, `{fn}_prime` and `{fn}_invalidate_all`.

use serde::Serialize;

use super::spec::{Spec, Target};
use crate::cache::Cache;
use crate::error::Error;
use crate::health::Family;
use crate::key::KeyBuilder;
use crate::store::Store;

/// `{fn}_key`: the key one call reads and writes.
pub async fn key_of(cache: &Cache, args: &KeyBuilder, spec: &Spec<'_>) -> Result<String, Error> {
    let target = spec
        .target(cache, args)
        .map_err(|e| Error::Key(e.to_string()))?;
    let generation = match &target {
        Target::Key(_) => 0,
        Target::Grouped { gen_key, .. } => cache.store().generation(gen_key).await?,
    };
    Ok(target.key(generation).into_owned())
}

/// `{fn}_invalidate`: drops one call's entry; `true` when there was one.
pub async fn invalidate_call(
    cache: &Cache,
    args: &KeyBuilder,
    spec: &Spec<'static>,
) -> Result<bool, Error> {
    let key = key_of(cache, args, spec).await?;
    let family = Family::Function(spec.name());
    Ok(cache.delete_counted(&[&key], &family).await? > 0)
}

/// `{fn}_prime`: stores `value` as the result of one call.
pub async fn prime_call<T: Serialize + ?Sized>(
    cache: &Cache,
    args: &KeyBuilder,
    spec: &Spec<'static>,
    value: &T,
) -> Result<(), Error> {
    let key = key_of(cache, args, spec).await?;
    let policy = spec.policy();
    let bytes = policy.format(cache).encode(value)?;
    let family = Family::Function(spec.name());
    cache.store_counted(&key, &bytes, policy, &family).await
}

/// `{fn}_invalidate_all`: deletes every entry of one function, whatever its
/// version and generic instantiation, and nothing of a function whose name
/// merely starts with this one's (`item` and `item_count`).
pub async fn invalidate_function(cache: &Cache, spec: &Spec<'static>) -> Result<u64, Error> {
    let name = spec.name().to_string();
    let family = Family::Function(spec.name());
    // After the name comes `:` (version, digest) or `<` (generic arguments).
    let ends_name = |rest: &str| rest.starts_with(':') || rest.starts_with('<');
    if spec.is_grouped() {
        // `{prefix}@{generation}:{name}...`
        let head = format!("{}@", spec.prefix());
        let filter = |key: &str| {
            let Some(rest) = key.strip_prefix(head.as_str()) else {
                return false;
            };
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            digits > 0
                && rest[digits..]
                    .strip_prefix(':')
                    .and_then(|rest| rest.strip_prefix(name.as_str()))
                    .is_some_and(ends_name)
        };
        cache.delete_prefix_counted(&head, &filter, &family).await
    } else {
        let head = format!("{}{name}", spec.prefix());
        let filter = |key: &str| key.strip_prefix(head.as_str()).is_some_and(ends_name);
        cache.delete_prefix_counted(&head, &filter, &family).await
    }
}
