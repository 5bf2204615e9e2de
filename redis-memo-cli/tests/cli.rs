//! The `redis-memo` binary against a redis-server the test starts.

use redis_memo_test_support as support;

use std::collections::HashMap;
use std::process::{Command, Output, Stdio};

use redis_memo::{Cache, cached};
use serde::{Deserialize, Serialize};
use support::TestRedis;
use support::tier::{hold_locally, stops_serving};

fn cli(url: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_redis-memo"));
    command
        .args(args)
        .env_remove("REDIS_URL")
        .stdin(Stdio::null());
    if let Some(url) = url {
        command.env("REDIS_URL", url);
    }
    command.output().expect("run redis-memo")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

async fn set(redis: &TestRedis, keys: &[&str]) {
    let mut conn = redis.client().await;
    for key in keys {
        redis::cmd("SET")
            .arg(key)
            .arg(r#"{"id":1}"#)
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
    }
}

async fn exists(redis: &TestRedis, key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query_async(&mut redis.client().await)
        .await
        .unwrap()
}

const TARGETS: [&str; 3] = ["t[1]*:a", "t[1]*:b", "t[1]*:"];
const DECOYS: [&str; 3] = ["t1x:a", "t[1]*a", "other"];

#[tokio::test]
async fn list_shows_exactly_the_literal_prefix_with_ttl_and_size() {
    let redis = TestRedis::spawn(&[]);
    set(&redis, &TARGETS).await;
    set(&redis, &DECOYS).await;
    let out = cli(Some(redis.url()), &["list", "t[1]*:"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let listed: Vec<&str> = text
        .lines()
        .filter(|l| l.contains('\t'))
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(listed, ["t[1]*:", "t[1]*:a", "t[1]*:b"]);
    assert!(text.contains("no expiry\t8B"), "{text}");
    assert!(text.contains("3 of 3 keys"), "{text}");
    let limited = stdout(&cli(Some(redis.url()), &["list", "t[1]*:", "--limit", "1"]));
    assert!(limited.contains("1 of 3 keys"), "{limited}");
}

#[tokio::test]
async fn show_pretty_prints_json_and_fails_on_a_missing_key() {
    let redis = TestRedis::spawn(&[]);
    set(&redis, &["k"]).await;
    let out = cli(Some(redis.url()), &["show", "k"]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("\"id\": 1"), "{}", stdout(&out));
    let missing = cli(Some(redis.url()), &["show", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("no such key"));
}

#[tokio::test]
async fn invalidate_deletes_exactly_the_prefix_and_only_with_consent() {
    let redis = TestRedis::spawn(&[]);
    set(&redis, &TARGETS).await;
    set(&redis, &DECOYS).await;

    let refused = cli(Some(redis.url()), &["invalidate", "t[1]*:"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("--yes"), "{}", stderr(&refused));
    assert!(
        exists(&redis, "t[1]*:a").await,
        "nothing deleted without consent"
    );

    let out = cli(Some(redis.url()), &["invalidate", "t[1]*:", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("deleted 3 keys"), "{}", stdout(&out));
    for key in TARGETS {
        assert!(!exists(&redis, key).await, "{key} deleted");
    }
    for key in DECOYS {
        assert!(exists(&redis, key).await, "{key} kept");
    }
    let empty = cli(Some(redis.url()), &["invalidate", "", "--yes"]);
    assert_eq!(empty.status.code(), Some(1));
}

#[test]
fn errors_are_messages_with_exit_codes_not_panics() {
    let none = cli(None, &["list", "x"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(stderr(&none).contains("REDIS_URL"), "{}", stderr(&none));
    let down = cli(Some("redis://127.0.0.1:1"), &["list", "x"]);
    assert_eq!(down.status.code(), Some(1));
    assert!(
        stderr(&down).contains("cannot connect"),
        "{}",
        stderr(&down)
    );
    assert_eq!(cli(None, &["frobnicate"]).status.code(), Some(2));
    let bad_json = cli(None, &["key", "f", "{not json"]);
    assert_eq!(bad_json.status.code(), Some(1));
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Filter {
    tenant: String,
    limit: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum State {
    Active,
}

#[cached(key_prefix = "cli:", name = "app::search", version = 3, cache = cache)]
async fn search(
    cache: &Cache,
    query: &str,
    page: u64,
    filter: Filter,
    tags: HashMap<String, i32>,
    after: Option<u64>,
    state: State,
) -> Vec<u64> {
    let _ = (query, page, filter, tags, after, state);
    vec![]
}

#[tokio::test]
async fn key_matches_the_key_of_a_real_cached_call() {
    let cache = Cache::in_memory();
    let filter = Filter {
        tenant: "acme".into(),
        limit: Some(10),
    };
    let tags = HashMap::from([("b".to_string(), 2), ("a".to_string(), -1)]);
    let expected = search_key(&cache, "rust", 2, filter, tags, Some(7), State::Active)
        .await
        .unwrap();
    let out = cli(
        None,
        &[
            "key",
            "app::search",
            r#""rust""#,
            "2",
            r#"{"$struct": [["tenant", "acme"], ["limit", {"$some": 10}]]}"#,
            r#"{"a": -1, "b": 2}"#,
            r#"{"$some": 7}"#,
            r#"{"$variant": "Active"}"#,
            "--prefix",
            "cli:",
            "--version",
            "3",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), expected);
}

/// Writes `n` keys `{prefix}{i}` through a cluster connection (each to the
/// primary owning it).
async fn set_on_cluster(cluster: &support::TestCluster, prefix: &str, n: usize) {
    let mut conn = cluster.client().await;
    for i in 0..n {
        redis::cmd("SET")
            .arg(format!("{prefix}{i}"))
            .arg(format!(r#"{{"id":{i}}}"#))
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_list_show_and_invalidate_see_every_primary() {
    let cluster = support::TestCluster::start();
    set_on_cluster(&cluster, "c[1]:", 60).await;
    set_on_cluster(&cluster, "c[1]x", 15).await;
    let by_primary = cluster.keys_by_primary("c\\[1\\]:*").await;
    assert_eq!(by_primary.len(), 3);
    assert!(
        by_primary.values().all(|keys| !keys.is_empty()),
        "the keys are spread over every primary: {by_primary:?}"
    );
    // One seed is enough; a node says it is a cluster node.
    let seed = cluster.seed_urls()[0].clone();

    for flags in [&[][..], &["--cluster"][..]] {
        let mut args = vec!["list", "c[1]:"];
        args.extend_from_slice(flags);
        let out = cli(Some(&seed), &args);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = stdout(&out);
        let listed = text.lines().filter(|l| l.contains('\t')).count();
        assert_eq!(listed, 60, "{text}");
        assert!(text.contains("60 of 60 keys"), "{text}");
    }

    for keys in by_primary.values() {
        let out = cli(Some(&seed), &["show", &keys[0]]);
        assert!(out.status.success(), "{}: {}", keys[0], stderr(&out));
        let id = keys[0].trim_start_matches("c[1]:");
        assert!(
            stdout(&out).contains(&format!("\"id\": {id}")),
            "{}",
            stdout(&out)
        );
    }

    let out = cli(Some(&seed), &["invalidate", "c[1]:", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("deleted 60 keys"), "{}", stdout(&out));
    assert!(cluster.keys_on_primaries("c\\[1\\]:*").await.is_empty());
    assert_eq!(
        cluster.keys_on_primaries("c\\[1\\]x*").await.len(),
        15,
        "the decoys are kept"
    );

    // An invalidation by the CLI while a cached call runs its body wins.
    let cache = Cache::connect_cluster(cluster.seed_urls()).await.unwrap();
    let mut primaries = Vec::new();
    for primary in cluster.primaries() {
        primaries.push(cluster.node_client(primary.port).await);
    }
    let mut plain = support::race::Plain::Cluster(cluster.client().await, primaries);
    for id in 0..3 {
        let seed = seed.clone();
        support::race::race_against(
            &cache,
            &mut plain,
            id,
            "the CLI's invalidate",
            false,
            async |_| {
                let out = tokio::task::spawn_blocking(move || {
                    cli(Some(&seed), &["invalidate", "race:", "--yes"])
                })
                .await
                .unwrap();
                assert!(out.status.success(), "{}", stderr(&out));
            },
        )
        .await;
    }
}

/// `invalidate` while a cached call runs its body: the body's older value is
/// not stored, and a call after the invalidation does not get it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_by_the_cli_wins_over_a_running_body() {
    use support::race::{Plain, race_against};
    let redis = TestRedis::spawn(&[]);
    let cache = redis.cache().await;
    let mut plain = Plain::Single(redis.client().await);
    let url = redis.url().to_owned();
    race_against(
        &cache,
        &mut plain,
        1,
        "the CLI's invalidate",
        false,
        async |_| {
            let url = url.clone();
            let out = tokio::task::spawn_blocking(move || {
                cli(Some(&url), &["invalidate", "race:", "--yes"])
            })
            .await
            .unwrap();
            assert!(out.status.success(), "{}", stderr(&out));
        },
    )
    .await;
}

/// A process with a local tier on the same Redis (a `Cache` with one,
/// holding `keys`), whose entries outlive the test unless dropped.
async fn holding(builder: redis_memo::CacheBuilder, keys: &[String]) -> Cache {
    let cache = builder
        .local_cache(1 << 20)
        .local_ttl(std::time::Duration::from_secs(3600))
        .build()
        .await
        .unwrap();
    for (i, key) in keys.iter().enumerate() {
        cache.set(key, &(i as u64 + 1), 300).await.unwrap();
        hold_locally(&cache, key, i as u64 + 1).await;
    }
    cache
}

/// Runs `redis-memo invalidate {prefix} --yes` against `url` and checks that
/// it deleted `n` keys and that `cache`'s tier stopped serving each of `keys`.
async fn invalidate_reaches(cache: &Cache, url: &str, prefix: &str, keys: &[String]) {
    let (url, args) = (url.to_owned(), ["invalidate", prefix, "--yes"]);
    let args = args.map(str::to_owned);
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(Some(&url), &args)
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("deleted {} keys", keys.len())),
        "{}",
        stdout(&out)
    );
    for (i, key) in keys.iter().enumerate() {
        stops_serving(cache, key, i as u64 + 1, &format!("the tier drops {key}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clis_invalidate_reaches_another_processs_local_tier() {
    let redis = TestRedis::spawn(&[]);
    let keys: Vec<String> = (0..5).map(|i| format!("tier:{i}")).collect();
    let cache = holding(Cache::builder().url(redis.url()), &keys).await;
    assert!(cache.stats().local_tracking);
    invalidate_reaches(&cache, redis.url(), "tier:", &keys).await;

    // A process whose user may not track hears the CLI's broadcast.
    redis
        .acl_setuser("notrack", &["on", ">pw", "~*", "&*", "+@all", "-client"])
        .await;
    let url = format!("redis://notrack:pw@127.0.0.1:{}", redis.port());
    let untracked = holding(Cache::builder().url(&url), &keys).await;
    assert!(!untracked.stats().local_tracking);
    invalidate_reaches(&untracked, redis.url(), "tier:", &keys).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_the_clis_invalidate_reaches_another_processs_local_tier() {
    let cluster = tokio::task::spawn_blocking(support::TestCluster::start)
        .await
        .unwrap();
    let keys: Vec<String> = (0..12).map(|i| format!("ctier:{i}")).collect();
    let builder = Cache::builder().cluster_nodes(cluster.seed_urls());
    let cache = holding(builder, &keys).await;
    assert!(cache.stats().local_tracking);
    let on: std::collections::BTreeSet<u16> = keys
        .iter()
        .map(|key| cluster.primary_for_key(key).port)
        .collect();
    assert_eq!(on.len(), 3, "the keys are on every primary");
    invalidate_reaches(&cache, &cluster.seed_urls()[0], "ctier:", &keys).await;
}
