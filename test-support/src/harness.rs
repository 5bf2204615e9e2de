//! The backend under test: the same behavioural checks run on Redis and in memory.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use redis_memo::{Cache, KeyTtl};

use crate::TestRedis;
use crate::reference::Encoded;

/// One backend under test, with a keyspace of its own.
///
/// On a Redis this test started, the keyspace is the whole server. On the
/// shared server `REDIS_URL` names, tests never clear or count each other's
/// keys: keys built at run time use [`prefix`](Self::prefix), unique to this
/// harness, and `#[cached]` functions (whose `key_prefix` is fixed at compile
/// time) get a cache whose default version is unique to this harness, so their
/// keys (`...:v{n}:...`) are this test's alone.
pub struct Harness {
    /// The cache under test.
    pub cache: Cache,
    /// The Redis behind it, `None` in memory.
    pub redis: Option<TestRedis>,
    id: String,
}

/// A number no other harness of this process uses.
fn next_id() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Harness {
    /// A Redis-backed cache: a private server, or `REDIS_URL`.
    pub async fn redis() -> Harness {
        let redis = TestRedis::start();
        let mut cache = redis.cache().await;
        let n = next_id();
        let id = if redis.is_shared() {
            // Unique across processes sharing the server too.
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let version = (std::process::id() ^ nanos)
                .wrapping_mul(31)
                .wrapping_add(n)
                | 1 << 31;
            cache = cache.with_default_version(version);
            format!("{}.{nanos:x}.{n}", std::process::id())
        } else {
            n.to_string()
        };
        Harness {
            cache,
            redis: Some(redis),
            id,
        }
    }

    /// A harness around a cache a test built itself (with options of its
    /// own), on `redis` (a server of the test's own), or in memory.
    pub fn new(cache: Cache, redis: Option<TestRedis>) -> Harness {
        Harness {
            cache,
            redis,
            id: next_id().to_string(),
        }
    }

    /// The in-memory backend.
    pub fn memory() -> Harness {
        Harness {
            cache: Cache::in_memory(),
            redis: None,
            id: next_id().to_string(),
        }
    }

    /// A key prefix for keys this test builds at run time, unique to this
    /// harness: `{label}:t{id}:` (its first segment, the family of its keys
    /// in `stats()`, is `{label}:`).
    pub fn prefix(&self, label: &str) -> String {
        format!("{label}:t{}:", self.id)
    }

    /// The key the documentation promises for a function whose qualified name
    /// is `name`, with `key_prefix = prefix` and these arguments, in this
    /// harness's cache (with its default version, if it has one).
    pub fn expected_key(&self, prefix: &str, name: &str, args: &Encoded) -> String {
        match self.cache.default_version() {
            Some(version) => args.key(prefix, &format!("{name}:v{version}")),
            None => args.key(prefix, name),
        }
    }

    /// The prefix of every key of the function `name` with `key_prefix =
    /// prefix` in this harness's cache: `{prefix}{name}:` (with `v{version}:`
    /// when the cache has a default version).
    pub fn fn_prefix(&self, prefix: &str, name: &str) -> String {
        match self.cache.default_version() {
            Some(version) => format!("{prefix}{name}:v{version}:"),
            None => format!("{prefix}{name}:"),
        }
    }

    /// The stored bytes of `key`; on Redis read with a plain client, not through the cache.
    pub async fn raw_get(&self, key: &str) -> Option<Vec<u8>> {
        match &self.redis {
            Some(redis) => redis::cmd("GET")
                .arg(key)
                .query_async(&mut redis.client().await)
                .await
                .expect("GET"),
            None => self.cache.get_raw(key).await.expect("get_raw"),
        }
    }

    /// Overwrites `key` behind the cache's back.
    pub async fn raw_set(&self, key: &str, value: &[u8]) {
        match &self.redis {
            Some(redis) => redis::cmd("SET")
                .arg(key)
                .arg(value)
                .query_async::<()>(&mut redis.client().await)
                .await
                .expect("SET"),
            None => self.cache.set_raw(key, value, None).await.expect("set_raw"),
        }
    }

    /// Overwrites `key` behind the cache's back, to live `ttl`.
    pub async fn raw_set_for(&self, key: &str, value: &[u8], ttl: std::time::Duration) {
        match &self.redis {
            Some(redis) => redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("PX")
                .arg(ttl.as_millis().max(1) as u64)
                .query_async::<()>(&mut redis.client().await)
                .await
                .expect("SET"),
            None => self
                .cache
                .set_raw(key, value, Some(ttl))
                .await
                .expect("set_raw"),
        }
    }

    /// The key's TTL in Redis's terms: seconds left, `-1` without expiry, `-2` missing.
    pub async fn ttl(&self, key: &str) -> i64 {
        match &self.redis {
            Some(redis) => redis::cmd("TTL")
                .arg(key)
                .query_async(&mut redis.client().await)
                .await
                .expect("TTL"),
            None => match self.cache.ttl(key).await.expect("ttl") {
                KeyTtl::Missing => -2,
                KeyTtl::Persistent => -1,
                KeyTtl::ExpiresIn(left) => left.as_secs_f64().round() as i64,
            },
        }
    }

    /// How many keys start with `prefix`; on Redis counted with SCAN by a plain client.
    pub async fn count_prefix(&self, prefix: &str) -> usize {
        let Some(redis) = &self.redis else {
            panic!("count_prefix needs Redis");
        };
        let mut conn = redis.client().await;
        let mut cursor = 0u64;
        let mut n = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .expect("SCAN");
            n += keys.iter().filter(|k| k.starts_with(prefix)).count();
            if next == 0 {
                return n;
            }
            cursor = next;
        }
    }
}
