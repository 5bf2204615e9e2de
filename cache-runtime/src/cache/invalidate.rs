//! Dropping entries: by prefix, by group, every key, or named keys.

use super::{Cache, Write};
use crate::error::Error;
use crate::health::Family;
use crate::key::{generation_key, is_generation_key};
use crate::store::{KeyFilter, Store};

impl Cache {
    /// Deletes every key that starts with `prefix` and returns how many it deleted.
    ///
    /// The prefix is literal: glob characters in it (`* ? [ ] \`) are escaped.
    /// The generation counters of `grouped` functions (`{key_prefix}@generation`,
    /// see [`invalidate_group`](Self::invalidate_group)) are kept: a group never
    /// goes back to an older generation, whose entries a concurrent call may
    /// have stored again while this ran.
    /// On Redis it runs `SCAN` + `UNLINK` in batches, never `KEYS`, so Redis keeps
    /// serving other clients while it runs. An empty prefix is refused with
    /// [`Error::EmptyPrefix`]; [`invalidate_all_keys`](Self::invalidate_all_keys)
    /// is the explicit way to empty the database.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), redis_memo::Error> {
    /// let cache = redis_memo::Cache::in_memory();
    /// cache.set_raw("users:1", b"{}", None).await?;
    /// cache.set_raw("users:2", b"{}", None).await?;
    /// cache.set_raw("orders:1", b"{}", None).await?;
    /// assert_eq!(cache.invalidate_prefix("users:").await?, 2);
    /// # Ok(()) }
    /// ```
    pub async fn invalidate_prefix(&self, prefix: &str) -> Result<u64, Error> {
        if prefix.is_empty() {
            return Err(Error::EmptyPrefix);
        }
        let not_generation = |key: &str| !is_generation_key(key);
        self.delete_prefix_counted(prefix, &not_generation, &Family::of_key(prefix))
            .await
    }

    /// [`invalidate_prefix`](Self::invalidate_prefix), calling `each` with
    /// every key found to delete (as it is found, before its page is
    /// deleted; a key found again by a later pass over a cluster is given
    /// again, and so are the keys of this process's calls in flight under
    /// the prefix): for a progress bar, as the ops CLI shows.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), redis_memo::Error> {
    /// use std::sync::atomic::{AtomicU64, Ordering};
    ///
    /// let cache = redis_memo::Cache::in_memory();
    /// cache.set_raw("users:1", b"{}", None).await?;
    /// let found = AtomicU64::new(0);
    /// let deleted = cache
    ///     .invalidate_prefix_with("users:", &|_| {
    ///         found.fetch_add(1, Ordering::Relaxed);
    ///     })
    ///     .await?;
    /// assert_eq!((deleted, found.into_inner()), (1, 1));
    /// # Ok(()) }
    /// ```
    #[doc(hidden)]
    pub async fn invalidate_prefix_with(
        &self,
        prefix: &str,
        each: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<u64, Error> {
        if prefix.is_empty() {
            return Err(Error::EmptyPrefix);
        }
        let counted = |key: &str| {
            let entry = !is_generation_key(key);
            if entry {
                each(key);
            }
            entry
        };
        self.delete_prefix_counted(prefix, &counted, &Family::of_key(prefix))
            .await
    }

    /// Every key that starts with `prefix` (literally: glob characters are
    /// escaped, as for [`invalidate_prefix`](Self::invalidate_prefix)),
    /// sorted: cache entries, the placeholders of calls running their body
    /// ([`is_placeholder`](crate::is_placeholder) tells them by their value)
    /// and group generation counters, and any other key under it. On Redis it
    /// runs `SCAN ... MATCH ... COUNT 1000` (never `KEYS`), on a cluster on
    /// every primary of the current topology; it holds every key found in
    /// memory, so give it a prefix that names a bounded set. The empty prefix
    /// lists every key. Not counted in [`stats`](Self::stats).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), redis_memo::Error> {
    /// let cache = redis_memo::Cache::in_memory();
    /// cache.set_raw("users:2", b"{}", None).await?;
    /// cache.set_raw("users:1", b"{}", None).await?;
    /// cache.set_raw("orders:1", b"{}", None).await?;
    /// assert_eq!(cache.keys_with_prefix("users:").await?, ["users:1", "users:2"]);
    /// # Ok(()) }
    /// ```
    pub async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, Error> {
        self.store().keys_with_prefix(prefix).await
    }

    /// Deletes every key of the database, cache entries or not, and returns
    /// how many. The explicit opt-in for what
    /// [`invalidate_prefix("")`](Self::invalidate_prefix) refuses to do; still
    /// `SCAN` + `UNLINK` in batches, never `FLUSHDB`'s single long command.
    /// Group generation counters go too: every group starts again at
    /// generation 0, whose entries this deleted as well.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), redis_memo::Error> {
    /// let cache = redis_memo::Cache::in_memory();
    /// cache.set_raw("a", b"1", None).await?;
    /// cache.set_raw("b", b"2", None).await?;
    /// assert_eq!(cache.invalidate_all_keys().await?, 2);
    /// # Ok(()) }
    /// ```
    pub async fn invalidate_all_keys(&self) -> Result<u64, Error> {
        let written = self
            .write(Write::DeleteAll, Some(&Family::of_key("")))
            .await?;
        Ok(written.number())
    }

    /// Drops every entry of the functions declared with
    /// `#[cached(key_prefix = prefix, grouped)]`, in O(1) whatever their
    /// number: it increments the group's generation counter
    /// (`{prefix}@generation`, under the prefix so that a Redis user limited
    /// to `~{prefix}*` may bump it), which is part of their keys
    /// (`{prefix}@{generation}:{name}:{hex}`). The old entries are no longer
    /// read and expire with their TTL. Returns the new generation.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), redis_memo::Error> {
    /// let cache = redis_memo::Cache::in_memory();
    /// assert_eq!(cache.invalidate_group("users:").await?, 1);
    /// assert_eq!(cache.invalidate_group("users:").await?, 2);
    /// # Ok(()) }
    /// ```
    pub async fn invalidate_group(&self, prefix: &str) -> Result<u64, Error> {
        let gen_key = generation_key(prefix);
        let family = Family::of_key(prefix);
        let written = self.write(Write::BumpGeneration(&gen_key), Some(&family));
        Ok(written.await?.number())
    }

    /// Deletes the given keys and returns how many existed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), redis_memo::Error> {
    /// let cache = redis_memo::Cache::in_memory();
    /// cache.set_raw("k", b"1", None).await?;
    /// assert_eq!(cache.delete(&["k", "other"]).await?, 1);
    /// # Ok(()) }
    /// ```
    pub async fn delete(&self, keys: &[&str]) -> Result<u64, Error> {
        // Counted under the keys' family when they share one, else under "".
        let family = match keys.split_first() {
            Some((first, rest)) => {
                let family = Family::of_key(first);
                if rest.iter().all(|key| Family::of_key(key) == family) {
                    family
                } else {
                    Family::of_key("")
                }
            }
            None => Family::of_key(""),
        };
        self.delete_counted(keys, &family).await
    }

    /// Deletes the keys under `prefix` that `filter` accepts, counting them
    /// as invalidations of `family`.
    pub(crate) async fn delete_prefix_counted(
        &self,
        prefix: &str,
        filter: &KeyFilter<'_>,
        family: &Family<'_>,
    ) -> Result<u64, Error> {
        let write = Write::DeletePrefix { prefix, filter };
        Ok(self.write(write, Some(family)).await?.number())
    }

    /// Deletes `keys`, counting the deleted ones as invalidations of `family`.
    pub(crate) async fn delete_counted(
        &self,
        keys: &[&str],
        family: &Family<'_>,
    ) -> Result<u64, Error> {
        Ok(self
            .write(Write::Delete(keys), Some(family))
            .await?
            .number())
    }
}
