//! What reaches a local tier, and what bound holds when it cannot: Redis
//! pushes the changes of the cache's own key prefixes only (other clients'
//! writes elsewhere in the database push nothing), and a tracking connection
//! that stops answering without closing is noticed and the tier cleared,
//! while the data connection keeps working.

use redis_memo_test_support as support;

use std::time::{Duration, Instant};

use redis_memo::{Cache, cached};
use support::tier::{hold_locally, read, stops_serving};
use support::{TcpRelay, TestRedis, until};

#[cached(ttl = 300, key_prefix = "mine:", cache = cache)]
async fn mine(cache: &Cache, id: u64) -> u64 {
    id
}

/// Writes `n` keys `{prefix}{i}` with a plain client, pipelined.
async fn write_keys(redis: &TestRedis, prefix: &str, n: usize) {
    let mut plain = redis.client().await;
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.cmd("SET")
                .arg(format!("{prefix}{i}"))
                .arg("x")
                .ignore();
        }
        let _: () = pipe.query_async(&mut plain).await.unwrap();
    }
}

/// `SET key value` with a plain client.
async fn plain_set(redis: &TestRedis, key: &str, value: &str) {
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async(&mut redis.client().await)
        .await
        .unwrap();
}

#[tokio::test]
async fn writes_outside_the_caches_prefixes_push_nothing() {
    let redis = TestRedis::spawn(&[]);
    let connect = || {
        Cache::builder()
            .url(redis.url())
            .local_cache(1 << 20)
            .local_ttl(Duration::from_secs(60))
            .build()
    };
    let (cache, idle) = (connect().await.unwrap(), connect().await.unwrap());
    assert!(idle.stats().local_tracking);
    // The cache's own keys: a function's and a get_or_set family.
    assert_eq!(mine(&cache, 1).await, 1);
    hold_locally(&cache, "own:1", 0).await;
    // A change of its key, seen: every push before it has arrived (the
    // server sends them in order), those of the cache's own writes too.
    plain_set(&redis, "own:1", "5").await;
    stops_serving(&cache, "own:1", 0, "the cache sees its own key change").await;
    hold_locally(&cache, "own:1", 5).await;
    let before = cache.stats().local_pushes;

    // Another application writes elsewhere in the database.
    let n = 10_000;
    write_keys(&redis, "other:", n).await;
    write_keys(&redis, "ownx", 100).await; // starts like "own:", without its ':'
    // Then one key of the cache, the marker: once its push arrived, any
    // push of the writes before it would have too.
    plain_set(&redis, "own:1", "6").await;
    stops_serving(&cache, "own:1", 5, "the cache sees the marker").await;
    let pushes = cache.stats().local_pushes - before;
    eprintln!(
        "local_pushes while another client wrote {} unrelated keys: {} (the marker: 1)",
        n + 100,
        pushes
    );
    assert_eq!(pushes, 1, "only the cache's own key was pushed");
    assert_eq!(
        idle.stats().local_pushes,
        0,
        "a process that cached nothing hears nothing"
    );

    // A key under a function's prefix is pushed too.
    let key = mine_key(&cache, 1).await.unwrap();
    let _: u64 = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut redis.client().await)
        .await
        .unwrap();
    until("the function's key is pushed", async || {
        cache.stats().local_pushes - before == 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_tracking_connection_clears_the_tier_while_the_data_connection_works() {
    let redis = TestRedis::spawn(&[]);
    let relay = TcpRelay::to(redis.port());
    let cache = Cache::builder()
        .url(redis.url())
        .local_cache(1 << 20)
        .local_ttl(Duration::from_secs(60))
        .tracking_redirect(format!("127.0.0.1:{}", redis.port()), relay.addr())
        .build()
        .await
        .unwrap();
    assert!(cache.stats().local_tracking, "tracking through the relay");
    assert_eq!(
        relay.connections(),
        1,
        "only the tracking connection goes through it"
    );
    let other = redis.cache().await;
    for i in 0..10u64 {
        other.set(&format!("frz:{i}"), &i, 300).await.unwrap();
        hold_locally(&cache, &format!("frz:{i}"), i).await;
    }

    // The link to the server dies without a word: nothing crosses it.
    let frozen_at = Instant::now();
    relay.freeze(0);
    until(
        "the frozen tracking connection is noticed, the tier cleared",
        async || {
            let stats = cache.stats();
            !stats.local_tracking && stats.local_entries == 0
        },
    )
    .await;
    let noticed = frozen_at.elapsed();
    eprintln!(
        "frozen tracking connection noticed and the tier cleared after {noticed:?} \
         (documented bound: PING every 1 s + the 500 ms response timeout)"
    );

    // The data connection, direct, kept working all along.
    cache.set("frz:0", &100u64, 300).await.unwrap();
    assert_eq!(read(&cache, "frz:0").await, 100);
    assert_eq!(other.get::<u64>("frz:0").await.unwrap(), Some(100));

    // Tracking resumes on a new connection, and is coherent again.
    until("tracking resumes", async || cache.stats().local_tracking).await;
    assert!(relay.connections() >= 2);
    hold_locally(&cache, "frz:1", 1).await;
    other.set("frz:1", &101u64, 300).await.unwrap();
    stops_serving(&cache, "frz:1", 1, "a change reaches the tier again").await;
}
