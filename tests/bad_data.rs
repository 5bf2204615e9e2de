//! Whatever is stored under a key, a call returns the body's value: a value
//! that does not decode is a miss, is overwritten, is counted as corrupt and
//! is reported by a warning naming the key (at most one a second: later ones
//! are counted in the next warning's `suppressed`). Checked on Redis and in
//! memory.

use redis_memo_test_support as support;

use support::Logs;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use redis_memo::{Cache, cached};
use serde::{Deserialize, Serialize};
use support::Harness;

/// Version 2 of a type: `email` was added since version 1 was cached.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Profile {
    id: u64,
    name: String,
    email: String,
}

#[cached(ttl = 60, key_prefix = "bad:", cache = cache, ignore(runs))]
async fn profile(cache: &Cache, runs: &AtomicUsize, id: u64) -> Profile {
    runs.fetch_add(1, SeqCst);
    Profile {
        id,
        name: "ann".into(),
        email: "ann@example.com".into(),
    }
}

const CORPUS: &[(&str, &[u8])] = &[
    ("truncated JSON", br#"{"id":1,"name":"an"#),
    ("a JSON array", b"[1,2,3]"),
    ("a JSON string", br#""profile""#),
    ("a JSON number", b"42"),
    ("JSON null", b"null"),
    ("binary garbage", b"\x00\xff\xfe\x80garbage\x01"),
    ("an empty string", b""),
    (
        "invalid UTF-8 in a string",
        b"{\"id\":1,\"name\":\"\xc3\x28\",\"email\":\"e\"}",
    ),
    ("version 1 of the type", br#"{"id":1,"name":"ann"}"#),
    ("trailing bytes", br#"{"id":1,"name":"ann","email":"e"} x"#),
];

async fn every_corrupt_value_is_a_miss_overwritten_and_reported(h: &Harness) {
    let runs = AtomicUsize::new(0);
    let key = profile_key(&h.cache, 1).await.unwrap();
    let expected = profile(&h.cache, &runs, 1).await;
    let good = h.raw_get(&key).await.unwrap();

    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let dispatch = tracing::Dispatch::new(subscriber);
    for (i, (what, bytes)) in CORPUS.iter().enumerate() {
        h.raw_set(&key, bytes).await;
        let value = {
            let _guard = tracing::dispatcher::set_default(&dispatch);
            profile(&h.cache, &runs, 1).await
        };
        assert_eq!(value, expected, "{what}: the body's value is returned");
        assert_eq!(runs.load(SeqCst), i + 2, "{what}: a miss");
        assert_eq!(
            h.raw_get(&key).await.as_ref(),
            Some(&good),
            "{what}: overwritten"
        );
        assert_eq!(h.cache.stats().corrupt, i as u64 + 1, "{what}: counted");
    }
    let text = logs.text();
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains("WARN")).collect();
    assert!(
        !warnings.is_empty() && warnings.len() <= CORPUS.len(),
        "one warning per corrupt value at most, and at least one: {text}"
    );
    for warning in &warnings {
        assert!(warning.contains(&key), "the warning names the key: {text}");
        assert!(warning.contains("does not decode"), "{text}");
    }
}

support::on_both_backends! {
    #[tokio::test]
    every_corrupt_value_is_a_miss_overwritten_and_reported
}
