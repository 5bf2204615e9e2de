//! Whatever is stored under a key, a call returns the body's value: a value
//! that does not decode is a miss, is overwritten, and is reported by exactly
//! one warning naming the key. Checked on Redis and in memory.

mod common;

use common::Captured;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use common::Harness;
use redis_memo::{Cache, cached};
use serde::{Deserialize, Serialize};

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

async fn every_corrupt_value_is_a_miss_overwritten_with_one_warning(h: &Harness) {
    let runs = AtomicUsize::new(0);
    let key = profile_key(&h.cache, 1).await.unwrap();
    let expected = profile(&h.cache, &runs, 1).await;
    let good = h.raw_get(&key).await.unwrap();

    for (i, (what, bytes)) in CORPUS.iter().enumerate() {
        h.raw_set(&key, bytes).await;
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .finish();
        let value = {
            let _guard = tracing::subscriber::set_default(subscriber);
            profile(&h.cache, &runs, 1).await
        };
        assert_eq!(value, expected, "{what}: the body's value is returned");
        assert_eq!(runs.load(SeqCst), i + 2, "{what}: a miss");
        assert_eq!(
            h.raw_get(&key).await.as_ref(),
            Some(&good),
            "{what}: overwritten"
        );
        let text = logs.text();
        let warnings: Vec<&str> = text.lines().filter(|l| l.contains("WARN")).collect();
        assert_eq!(warnings.len(), 1, "{what}: one warning, got {text}");
        assert!(
            warnings[0].contains(&key),
            "{what}: the warning names the key: {text}"
        );
    }
    assert_eq!(h.cache.stats().corrupt, CORPUS.len() as u64);
}

common::on_both_backends! {
    #[tokio::test]
    clear ["bad:"];every_corrupt_value_is_a_miss_overwritten_with_one_warning
}
