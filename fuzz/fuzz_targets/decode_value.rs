//! Any bytes stored under a key: the cached call returns the body's value,
//! never panics, and overwrites the entry with the value's JSON.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use redis_memo::{Cache, cached};
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Profile {
    id: u64,
    name: String,
    tags: Vec<String>,
    score: Option<f64>,
    kind: Kind,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Kind {
    Admin,
    User { since: u32 },
}

fn expected() -> Profile {
    Profile {
        id: 1,
        name: "ann".into(),
        tags: vec!["a".into()],
        score: Some(0.5),
        kind: Kind::User { since: 2020 },
    }
}

#[cached(ttl = 0, cache = cache)]
async fn profile(cache: &Cache, id: u64) -> Profile {
    let _ = id;
    expected()
}

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
});

fuzz_target!(|data: &[u8]| {
    RUNTIME.block_on(async {
        let cache = Cache::in_memory();
        let key = profile_key(&cache, 1).await.expect("key");
        cache.set_raw(&key, data, None).await.expect("set");
        // A valid Profile planted by the fuzzer is served as is; anything else
        // is a miss: the body's value comes back and replaces the entry.
        let planted: Option<Profile> = serde_json::from_slice(data).ok();
        let got = profile(&cache, 1).await;
        let stored = cache.get_raw(&key).await.expect("get").expect("stored");
        match planted {
            Some(planted) => {
                assert_eq!(got, planted);
                assert_eq!(stored, data);
            }
            None => {
                assert_eq!(got, expected());
                assert_eq!(stored, serde_json::to_vec(&expected()).expect("json"));
            }
        }
    });
});
