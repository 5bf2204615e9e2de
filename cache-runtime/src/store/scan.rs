//! Prefix invalidation on Redis: every key that literally starts with a prefix.
//!
//! It is `SCAN cursor MATCH <escaped prefix>* COUNT 1000`, with each
//! batch's `UNLINK` pipelined together with the next `SCAN`: one round trip per
//! batch, never `KEYS`, and no command that holds Redis for long. `UNLINK`
//! frees memory in the background and returns how many keys it removed, so the
//! returned count is exact even when `SCAN` reports a key twice.

use super::{KeyFilter, RedisStore};
use crate::Error;

/// How many keys one `SCAN` step asks for.
const SCAN_COUNT: usize = 1000;

/// Escapes the glob characters of a Redis `MATCH` pattern (`* ? [ ] \`), so that
/// the pattern `escape_glob(prefix) + "*"` matches exactly the keys that start
/// with `prefix`.
pub(crate) fn escape_glob(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 8);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Deletes the keys that start with `prefix` and that `filter` accepts.
pub(crate) async fn redis_delete_prefix(
    store: &RedisStore,
    prefix: &str,
    filter: &KeyFilter<'_>,
) -> Result<u64, Error> {
    let pattern = format!("{}*", escape_glob(prefix));
    let scan = |cursor: u64| {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT);
        cmd
    };
    let mut deleted = 0u64;
    let (mut cursor, mut keys): (u64, Vec<String>) = store.query(&scan(0)).await?;
    loop {
        keys.retain(|key| filter(key));
        if keys.is_empty() {
            if cursor == 0 {
                return Ok(deleted);
            }
            (cursor, keys) = store.query(&scan(cursor)).await?;
            continue;
        }
        let mut unlink = redis::cmd("UNLINK");
        unlink.arg(&keys);
        if cursor == 0 {
            let n: u64 = store.query(&unlink).await?;
            return Ok(deleted + n);
        }
        let mut pipe = redis::pipe();
        pipe.add_command(unlink).add_command(scan(cursor));
        let (n, (next, next_keys)): (u64, (u64, Vec<String>)) = store.query_pipe(&pipe).await?;
        deleted += n;
        (cursor, keys) = (next, next_keys);
    }
}

#[cfg(test)]
mod tests {
    use super::escape_glob;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(escape_glob("users:"), "users:");
        assert_eq!(escape_glob("a*b?c[d]e\\f"), "a\\*b\\?c\\[d\\]e\\\\f");
    }
}
