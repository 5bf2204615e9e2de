//! The typed per-call helpers generated next to a `#[cached]` function:
//! `{fn}_key`, `{fn}_invalidate` and `{fn}_prime`.

use serde::Serialize;

use super::spec::{Spec, Target};
use crate::health::Family;
use crate::key::KeyBuilder;
use crate::store::Store;
use crate::{Cache, Error};

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
