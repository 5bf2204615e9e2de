// A `pub` function's helpers are `pub(crate)` unless `helpers(vis = pub)`:
// the error's note says so.
use redis_memo::Cache;

async fn key(cache: &Cache) -> String {
    redis_memo_test_support::other_crate::profile_key(cache, 7)
        .await
        .unwrap()
}

fn main() {
    let _ = key;
}
