//! What users rely on, checked on a real Redis (read back with a plain client)
//! and on the in-memory backend: every test runs on both.

use redis_memo_test_support as support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use redis_memo::{Cache, cached};
use serde::{Deserialize, Serialize};
use support::Harness;
use support::reference::Encoded;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    id: u64,
    name: String,
}

fn runs(counter: &AtomicUsize) -> usize {
    counter.load(SeqCst)
}

// --- the functions under test ------------------------------------------------------

#[cached(ttl = 120, key_prefix = "hit:", cache = cache, ignore(runs))]
async fn profile(cache: &Cache, runs: &AtomicUsize, id: u64) -> Profile {
    runs.fetch_add(1, SeqCst);
    Profile {
        id,
        name: format!("user {id}"),
    }
}

#[cached(ttl = 0, key_prefix = "forever:", cache = cache, ignore(runs))]
async fn forever(cache: &Cache, runs: &AtomicUsize, id: u64) -> u64 {
    runs.fetch_add(1, SeqCst);
    id * 10
}

#[cached(key_prefix = "default_ttl:", cache = cache)]
async fn default_ttl(cache: &Cache, id: u64) -> u64 {
    id
}

#[cached(ttl = 60, key_prefix = "skip:", cache = cache, skip_cache = fresh, ignore(runs))]
async fn maybe_fresh(cache: &Cache, runs: &AtomicUsize, id: u64, fresh: bool) -> u64 {
    runs.fetch_add(1, SeqCst);
    id + runs.load(SeqCst) as u64 * 1000
}

#[cached(ttl = 60, key_prefix = "err:", cache = cache, ignore(runs))]
async fn flaky(cache: &Cache, runs: &AtomicUsize, id: u64) -> Result<u64, String> {
    let n = runs.fetch_add(1, SeqCst);
    if n == 0 {
        Err(format!("first call of {id} fails"))
    } else {
        Ok(id)
    }
}

#[cached(ttl = 60, key_prefix = "opt:", cache = cache, ignore(runs))]
async fn find(cache: &Cache, runs: &AtomicUsize, id: u64) -> Option<u64> {
    runs.fetch_add(1, SeqCst);
    id.is_multiple_of(2).then_some(id)
}

#[cached(ttl = 60, key_prefix = "layout:", cache = cache, ignore(runs))]
async fn layout(cache: &Cache, runs: &AtomicUsize, user: &str, n: u32) -> String {
    runs.fetch_add(1, SeqCst);
    format!("{user}{n}")
}

#[cached(ttl = 60, key_prefix = "concat:", cache = cache, ignore(runs))]
async fn concat(cache: &Cache, runs: &AtomicUsize, a: &str, b: &str) -> String {
    runs.fetch_add(1, SeqCst);
    format!("{a}{b}")
}

#[cached(ttl = 60, key_prefix = "maps:", cache = cache, ignore(runs))]
async fn total(
    cache: &Cache,
    runs: &AtomicUsize,
    weights: &HashMap<String, u64>,
    tags: HashSet<String>,
) -> u64 {
    runs.fetch_add(1, SeqCst);
    weights.values().sum::<u64>() + tags.len() as u64
}

#[cached(ttl = 60, key_prefix = "named:", cache = cache, name = "stable_name")]
async fn renamed(cache: &Cache, id: u64) -> u64 {
    id
}

struct Users {
    cache: Cache,
    runs: AtomicUsize,
}

struct Orders {
    cache: Cache,
    runs: AtomicUsize,
}

impl Users {
    #[cached(ttl = 60, key_prefix = "methods:", cache = self.cache)]
    async fn get(&self, id: u64) -> String {
        self.runs.fetch_add(1, SeqCst);
        format!("user {id}")
    }
}

impl Orders {
    #[cached(ttl = 60, key_prefix = "methods:", cache = self.cache)]
    async fn get(&self, id: u64) -> String {
        self.runs.fetch_add(1, SeqCst);
        format!("order {id}")
    }
}

// --- the behaviours, each run on both backends ----------------------------------------

async fn hit_vs_miss_by_body_run_counter(h: &Harness) {
    let n = AtomicUsize::new(0);
    let first = profile(&h.cache, &n, 7).await;
    assert_eq!((runs(&n), first.id), (1, 7), "first call is a miss");
    let second = profile(&h.cache, &n, 7).await;
    assert_eq!(runs(&n), 1, "second call is a hit: the body did not run");
    assert_eq!(second, first);
    profile(&h.cache, &n, 8).await;
    assert_eq!(runs(&n), 2, "other arguments are another key");
}

async fn values_are_readable_json(h: &Harness) {
    let n = AtomicUsize::new(0);
    profile(&h.cache, &n, 3).await;
    let key = h.expected_key("hit:", "behaviour::profile", &Encoded::new().int(3));
    let raw = h
        .raw_get(&key)
        .await
        .expect("the value is stored under the documented key");
    assert_eq!(
        String::from_utf8(raw).unwrap(),
        r#"{"id":3,"name":"user 3"}"#
    );
}

async fn ttl_of_stored_key_matches_ttl(h: &Harness) {
    let n = AtomicUsize::new(0);
    profile(&h.cache, &n, 11).await;
    let ttl = h
        .ttl(&h.expected_key("hit:", "behaviour::profile", &Encoded::new().int(11)))
        .await;
    assert!(
        (118..=120).contains(&ttl),
        "TTL is the attribute's 120 s, got {ttl}"
    );

    default_ttl(&h.cache, 1).await;
    let ttl = h
        .ttl(&h.expected_key(
            "default_ttl:",
            "behaviour::default_ttl",
            &Encoded::new().int(1),
        ))
        .await;
    assert!(
        (298..=300).contains(&ttl),
        "the default TTL is 300 s, got {ttl}"
    );
}

async fn ttl_zero_stores_without_expiry(h: &Harness) {
    let n = AtomicUsize::new(0);
    assert_eq!(forever(&h.cache, &n, 4).await, 40);
    let key = h.expected_key("forever:", "behaviour::forever", &Encoded::new().int(4));
    assert_eq!(h.ttl(&key).await, -1, "ttl = 0 means no expiry");
    assert_eq!(forever(&h.cache, &n, 4).await, 40);
    assert_eq!(runs(&n), 1);
}

async fn skip_cache_neither_reads_nor_writes(h: &Harness) {
    let n = AtomicUsize::new(0);
    // The parameter `skip_cache` names is not part of the key: one key.
    let key = h.expected_key("skip:", "behaviour::maybe_fresh", &Encoded::new().int(5));
    assert_eq!(maybe_fresh_key(&h.cache, 5).await.unwrap(), key);

    let skipped = maybe_fresh(&h.cache, &n, 5, true).await;
    assert_eq!(skipped, 1005);
    assert_eq!(h.raw_get(&key).await, None, "a skipped call writes nothing");

    let stored = maybe_fresh(&h.cache, &n, 5, false).await;
    assert_eq!(stored, 2005);
    assert_eq!(h.raw_get(&key).await.as_deref(), Some(&b"2005"[..]));
    assert_eq!(
        maybe_fresh(&h.cache, &n, 5, true).await,
        3005,
        "a skipped call does not read the stored value"
    );
    assert_eq!(
        h.raw_get(&key).await.as_deref(),
        Some(&b"2005"[..]),
        "nor overwrite it"
    );
    assert_eq!(
        maybe_fresh(&h.cache, &n, 5, false).await,
        2005,
        "the non-skipped call hits"
    );
    assert_eq!(runs(&n), 3);
}

async fn ignored_params_do_not_change_the_key(h: &Harness) {
    let a = AtomicUsize::new(0);
    let b = AtomicUsize::new(0);
    profile(&h.cache, &a, 21).await;
    profile(&h.cache, &b, 21).await;
    assert_eq!(
        (runs(&a), runs(&b)),
        (1, 0),
        "another `runs` argument hits the same key"
    );
}

async fn err_is_not_cached(h: &Harness) {
    let n = AtomicUsize::new(0);
    let key = h.expected_key("err:", "behaviour::flaky", &Encoded::new().int(9));
    assert_eq!(
        flaky(&h.cache, &n, 9).await,
        Err("first call of 9 fails".into())
    );
    assert_eq!(h.raw_get(&key).await, None, "Err is not stored");
    assert_eq!(flaky(&h.cache, &n, 9).await, Ok(9));
    assert_eq!(
        h.raw_get(&key).await.as_deref(),
        Some(&b"9"[..]),
        "Ok stores the inner value"
    );
    assert_eq!(flaky(&h.cache, &n, 9).await, Ok(9));
    assert_eq!(runs(&n), 2);
}

async fn option_caches_some_and_none(h: &Harness) {
    let n = AtomicUsize::new(0);
    assert_eq!(find(&h.cache, &n, 2).await, Some(2));
    assert_eq!(find(&h.cache, &n, 3).await, None);
    assert_eq!(find(&h.cache, &n, 2).await, Some(2));
    assert_eq!(find(&h.cache, &n, 3).await, None);
    assert_eq!(runs(&n), 2);
    let none_key = h.expected_key("opt:", "behaviour::find", &Encoded::new().int(3));
    assert_eq!(h.raw_get(&none_key).await.as_deref(), Some(&b"null"[..]));
}

async fn corrupt_value_is_a_miss_and_is_overwritten(h: &Harness) {
    let n = AtomicUsize::new(0);
    let key = h.expected_key("hit:", "behaviour::profile", &Encoded::new().int(77));
    let corpus: [&[u8]; 5] = [
        b"{\"id\":77,\"na",
        b"\xff\x00garbage",
        b"",
        b"[1,2]",
        b"{\"id\":\"x\"}",
    ];
    for (i, bad) in corpus.into_iter().enumerate() {
        h.raw_set(&key, bad).await;
        let value = profile(&h.cache, &n, 77).await;
        assert_eq!(
            value,
            Profile {
                id: 77,
                name: "user 77".into()
            }
        );
        assert_eq!(runs(&n), i + 1, "a corrupt value {bad:?} is a miss");
        let raw = h.raw_get(&key).await.unwrap();
        assert_eq!(
            raw, br#"{"id":77,"name":"user 77"}"#,
            "and it is overwritten"
        );
    }
    profile(&h.cache, &n, 77).await;
    assert_eq!(runs(&n), corpus.len(), "the overwritten value is a hit");
}

async fn key_is_exactly_the_documented_layout(h: &Harness) {
    let n = AtomicUsize::new(0);
    layout(&h.cache, &n, "ann", 2).await;
    // version 1, then "ann" as s + u64 length + bytes, then 2 as a 16-byte integer.
    let mut encoded = vec![1u8, b's', 0, 0, 0, 0, 0, 0, 0, 3, b'a', b'n', b'n', b'i'];
    encoded.extend_from_slice(&2i128.to_be_bytes());
    assert_eq!(Encoded::new().str("ann").int(2).into_bytes(), encoded);
    let key = h.expected_key(
        "layout:",
        "behaviour::layout",
        &Encoded::from_bytes(encoded),
    );
    assert_eq!(
        key,
        h.fn_prefix("layout:", "behaviour::layout") + &key[key.len() - 64..],
        "{{prefix}}{{module path}}::{{fn}}:{{64 hex}}"
    );
    assert!(
        key[key.len() - 64..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert_eq!(h.raw_get(&key).await.as_deref(), Some(&br#""ann2""#[..]));

    renamed(&h.cache, 1).await;
    let key = h.expected_key("named:", "stable_name", &Encoded::new().int(1));
    assert!(
        h.raw_get(&key).await.is_some(),
        "name = \"...\" replaces the qualified name"
    );
}

async fn adjacent_strings_do_not_collide(h: &Harness) {
    let n = AtomicUsize::new(0);
    assert_eq!(concat(&h.cache, &n, "ab", "c").await, "abc");
    assert_eq!(concat(&h.cache, &n, "a", "bc").await, "abc");
    assert_eq!(
        runs(&n),
        2,
        "(\"ab\",\"c\") and (\"a\",\"bc\") are two keys"
    );
}

async fn map_and_set_order_does_not_change_the_key(h: &Harness) {
    let n = AtomicUsize::new(0);
    let forward: HashMap<String, u64> = (0..100).map(|i| (format!("w{i}"), i)).collect();
    let backward: HashMap<String, u64> = (0..100).rev().map(|i| (format!("w{i}"), i)).collect();
    let tags_a: HashSet<String> = (0..50).map(|i| format!("t{i}")).collect();
    let tags_b: HashSet<String> = (0..50).rev().map(|i| format!("t{i}")).collect();
    let first = total(&h.cache, &n, &forward, tags_a).await;
    let second = total(&h.cache, &n, &backward, tags_b).await;
    assert_eq!(first, second);
    assert_eq!(
        runs(&n),
        1,
        "equal maps and sets built in another order hit the same key"
    );
}

async fn methods_named_get_on_two_types_do_not_collide(h: &Harness) {
    let users = Users {
        cache: h.cache.clone(),
        runs: AtomicUsize::new(0),
    };
    let orders = Orders {
        cache: h.cache.clone(),
        runs: AtomicUsize::new(0),
    };
    assert_eq!(users.get(1).await, "user 1");
    assert_eq!(orders.get(1).await, "order 1");
    assert_eq!(users.get(1).await, "user 1");
    assert_eq!(orders.get(1).await, "order 1");
    assert_eq!((runs(&users.runs), runs(&orders.runs)), (1, 1));
    let key = h.expected_key("methods:", "behaviour::Users::get", &Encoded::new().int(1));
    assert_eq!(h.raw_get(&key).await.as_deref(), Some(&br#""user 1""#[..]));
}

async fn invalidate_prefix_deletes_exactly_the_literal_prefix(h: &Harness) {
    let p = h.prefix("inv");
    let keep = [
        format!("{p}other:1"),    // a neighbouring prefix
        format!("{p}a*c:1"),      // a key a naive glob `a*` would match
        format!("{p}abc"),        // matches `a?c` as a glob, not literally
        format!("{p}a?c"),        // shorter than the prefix
        format!("other:{p}a?c:"), // contains the prefix, does not start with it
    ];
    let delete = [
        format!("{p}a?c:1"),
        format!("{p}a?c:2"),
        format!("{p}a?c:"),
        format!("{p}a?c:[x]"),
    ];
    for key in keep.iter().chain(&delete) {
        h.raw_set(key, b"1").await;
    }
    let prefix = format!("{p}a?c:");
    assert_eq!(
        h.cache.invalidate_prefix(&prefix).await.unwrap(),
        delete.len() as u64
    );
    for key in &delete {
        assert_eq!(h.raw_get(key).await, None, "{key} is deleted");
    }
    for key in &keep {
        assert!(h.raw_get(key).await.is_some(), "{key} is kept");
    }
    assert_eq!(h.cache.invalidate_prefix(&prefix).await.unwrap(), 0);
    assert!(matches!(
        h.cache.invalidate_prefix("").await,
        Err(redis_memo::Error::EmptyPrefix)
    ));
    h.cache.delete(&[&keep[4]]).await.unwrap();
    h.cache.invalidate_prefix(&p).await.unwrap();
}

async fn invalidated_calls_run_again(h: &Harness) {
    let n = AtomicUsize::new(0);
    profile(&h.cache, &n, 1).await;
    profile(&h.cache, &n, 2).await;
    let prefix = h.fn_prefix("hit:", "behaviour::profile");
    assert_eq!(h.cache.invalidate_prefix(&prefix).await.unwrap(), 2);
    profile(&h.cache, &n, 1).await;
    assert_eq!(runs(&n), 3);
}

// --- encoding helpers: the documented encoding, written out by hand ------------------

/// A hit is one `GET` and nothing else (no EXISTS, TTL or script); a miss is
/// one `GET`, one `SET` (its placeholder, `NX`) and one `EVALSHA` (the
/// compare-and-set of its value, whose own `GET` and `SET` the server counts
/// too). Counted by the server itself.
#[tokio::test]
async fn a_hit_is_one_get_and_a_miss_one_get_one_set_and_one_evalsha() {
    let redis = support::TestRedis::spawn(&[]);
    let cache = redis.cache().await;
    let mut conn = redis.client().await;
    let reset = || ::redis::cmd("CONFIG").arg("RESETSTAT").clone();
    let counter = AtomicUsize::new(0);
    // The first compare-and-set loads its script.
    profile(&cache, &counter, 100).await;

    reset().query_async::<()>(&mut conn).await.unwrap();
    for id in 0..10 {
        profile(&cache, &counter, id).await;
    }
    let misses = support::command_counts(&mut conn).await;
    assert_eq!(runs(&counter), 11);
    assert_eq!(
        misses,
        HashMap::from([
            ("get".to_owned(), 10 + 10),
            ("set".to_owned(), 10 + 10),
            ("evalsha".to_owned(), 10)
        ])
    );

    reset().query_async::<()>(&mut conn).await.unwrap();
    for _ in 0..3 {
        for id in 0..10 {
            profile(&cache, &counter, id).await;
        }
    }
    let hits = support::command_counts(&mut conn).await;
    assert_eq!(runs(&counter), 11, "every later call was a hit");
    assert_eq!(hits, HashMap::from([("get".to_owned(), 30)]));
}

support::on_both_backends! {
    #[tokio::test]
    hit_vs_miss_by_body_run_counter,
    values_are_readable_json,
    ttl_of_stored_key_matches_ttl,
    ttl_zero_stores_without_expiry,
    skip_cache_neither_reads_nor_writes,
    ignored_params_do_not_change_the_key,
    err_is_not_cached,
    option_caches_some_and_none,
    corrupt_value_is_a_miss_and_is_overwritten,
    key_is_exactly_the_documented_layout,
    adjacent_strings_do_not_collide,
    map_and_set_order_does_not_change_the_key,
    methods_named_get_on_two_types_do_not_collide,
    invalidate_prefix_deletes_exactly_the_literal_prefix,
    invalidated_calls_run_again,
}
