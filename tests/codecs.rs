//! Codecs and compression (features `msgpack`, `postcard`, `lz4`): values are
//! tagged, so a value written by one codec is never misread by another.
#![cfg(all(feature = "msgpack", feature = "postcard", feature = "lz4"))]

use redis_memo_test_support as support;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use redis_memo::{Cache, Codec, cached};
use serde::{Deserialize, Serialize};
use support::TestRedis;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Report {
    id: u64,
    lines: Vec<String>,
}

fn report(id: u64, lines: usize) -> Report {
    Report {
        id,
        lines: (0..lines)
            .map(|i| format!("line {i} of a long report"))
            .collect(),
    }
}

#[cached(ttl = 60, key_prefix = "codec:", cache = cache, codec = Codec::MessagePack, ignore(runs))]
async fn packed(cache: &Cache, runs: &AtomicUsize, id: u64) -> Report {
    runs.fetch_add(1, SeqCst);
    report(id, 3)
}

#[cached(ttl = 60, key_prefix = "codec:", cache = cache, ignore(runs))]
async fn default_codec(cache: &Cache, runs: &AtomicUsize, id: u64, lines: usize) -> Report {
    runs.fetch_add(1, SeqCst);
    report(id, lines)
}

async fn raw(redis: &TestRedis, key: &str) -> Vec<u8> {
    redis::cmd("GET")
        .arg(key)
        .query_async::<Option<Vec<u8>>>(&mut redis.client().await)
        .await
        .unwrap()
        .expect("stored")
}

#[tokio::test]
async fn a_function_codec_is_tagged_in_redis_and_read_back() {
    let redis = TestRedis::spawn(&[]);
    let cache = redis.cache().await;
    let runs = AtomicUsize::new(0);
    assert_eq!(packed(&cache, &runs, 1).await, report(1, 3));
    assert_eq!(packed(&cache, &runs, 1).await, report(1, 3));
    assert_eq!(runs.load(SeqCst), 1);
    let stored = raw(&redis, &packed_key(&cache, 1).await.unwrap()).await;
    assert_eq!(
        &stored[..3],
        b"\x00m-",
        "framed as MessagePack, uncompressed"
    );
    let decoded: Report = rmp_serde::from_slice(&stored[3..]).unwrap();
    assert_eq!(decoded, report(1, 3));
}

#[tokio::test]
async fn a_cache_codec_applies_to_functions_without_their_own() {
    let redis = TestRedis::spawn(&[]);
    let cache = Cache::builder()
        .url(redis.url())
        .codec(Codec::Postcard)
        .build()
        .await
        .unwrap();
    let runs = AtomicUsize::new(0);
    default_codec(&cache, &runs, 2, 2).await;
    default_codec(&cache, &runs, 2, 2).await;
    assert_eq!(runs.load(SeqCst), 1);
    let stored = raw(&redis, &default_codec_key(&cache, 2, 2).await.unwrap()).await;
    assert_eq!(&stored[..3], b"\x00p-");
    // The function's own codec wins over the cache's.
    packed(&cache, &runs, 3).await;
    let stored = raw(&redis, &packed_key(&cache, 3).await.unwrap()).await;
    assert_eq!(&stored[..3], b"\x00m-");
}

#[tokio::test]
async fn a_value_of_another_codec_is_a_miss_not_a_misread() {
    let redis = TestRedis::spawn(&[]);
    let json = redis.cache().await;
    let postcard = Cache::builder()
        .url(redis.url())
        .codec(Codec::Postcard)
        .build()
        .await
        .unwrap();
    let runs = AtomicUsize::new(0);
    default_codec(&json, &runs, 4, 1).await; // stored as JSON
    default_codec(&postcard, &runs, 4, 1).await; // postcard cannot read it: miss
    assert_eq!(runs.load(SeqCst), 2);
    let stored = raw(&redis, &default_codec_key(&json, 4, 1).await.unwrap()).await;
    assert_eq!(&stored[..3], b"\x00p-", "overwritten by the postcard value");
    default_codec(&json, &runs, 4, 1).await; // and JSON cannot read postcard
    assert_eq!(runs.load(SeqCst), 3);
    assert_eq!(json.stats().corrupt + postcard.stats().corrupt, 2);
}

#[tokio::test]
async fn values_above_the_threshold_are_compressed_and_read_by_any_cache() {
    let redis = TestRedis::spawn(&[]);
    let compressing = Cache::builder()
        .url(redis.url())
        .compress_above(256)
        .build()
        .await
        .unwrap();
    let plain = redis.cache().await;
    let runs = AtomicUsize::new(0);
    let big = default_codec(&compressing, &runs, 5, 200).await;
    let key = default_codec_key(&compressing, 5, 200).await.unwrap();
    let stored = raw(&redis, &key).await;
    let json_len = serde_json::to_vec(&big).unwrap().len();
    assert_eq!(&stored[..3], b"\x00jl", "JSON, LZ4-compressed");
    assert!(
        stored.len() < json_len / 3,
        "{} vs {json_len}",
        stored.len()
    );
    assert_eq!(default_codec(&plain, &runs, 5, 200).await, big);
    assert_eq!(
        runs.load(SeqCst),
        1,
        "a cache without the threshold reads it too"
    );

    default_codec(&compressing, &runs, 6, 1).await;
    let small = raw(
        &redis,
        &default_codec_key(&compressing, 6, 1).await.unwrap(),
    )
    .await;
    assert_eq!(small[0], b'{', "small values stay plain JSON");
}
