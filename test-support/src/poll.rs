//! Waiting for what happens eventually, and reading what the server did.

use std::collections::HashMap;
use std::time::Duration;

/// Polls `check` until it holds, panicking after a minute: for "eventually",
/// never a timing assertion.
pub async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(60), async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting until {what}");
}

/// The server's own count of each command (`INFO commandstats`, since the
/// last `CONFIG RESETSTAT`), leaving out the caller's own `INFO` and `CONFIG`.
pub async fn command_counts(conn: &mut redis::aio::MultiplexedConnection) -> HashMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .expect("INFO commandstats");
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats.strip_prefix("calls=")?.split(',').next()?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .filter(|(name, _)| name != "info" && !name.starts_with("config"))
        .collect()
}
