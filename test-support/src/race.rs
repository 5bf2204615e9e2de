//! The cache-aside race, made explicit: a cached function whose body reads a
//! version from a "database", then waits for the test to let it go, while
//! the test changes the database and invalidates (or writes) the entry in
//! one of the ways a user can. The body's older value must never be stored
//! over the invalidation, nor reach a call that began after it.
//!
//! ```text
//! call A ── body reads version 1 ── waits ─────────────── returns 1 (not stored)
//!                         test: version = 2, invalidate ┘ then lets A go
//! call B (begins after the invalidation) ─────────────── its own run: 2
//! ```

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::AsyncCommands;
use redis_memo::{Cache, cached};
use tokio::sync::oneshot;

use crate::until;

/// The "database" behind [`versioned`]: a version per test, the body runs,
/// and a gate the next body run waits at.
#[derive(Default)]
pub struct Db {
    version: AtomicU64,
    runs: AtomicUsize,
    gate: Mutex<Option<oneshot::Receiver<()>>>,
}

impl Db {
    /// A database at version 1.
    pub fn new() -> Db {
        let db = Db::default();
        db.version.store(1, SeqCst);
        db
    }

    /// How many times a body ran.
    pub fn runs(&self) -> usize {
        self.runs.load(SeqCst)
    }

    /// The version bodies read now.
    pub fn version(&self) -> u64 {
        self.version.load(SeqCst)
    }

    /// Moves the database to `version`.
    pub fn set_version(&self, version: u64) {
        self.version.store(version, SeqCst);
    }

    /// Makes the next body run wait, after reading its version, until the
    /// returned sender is used or dropped.
    pub fn hold_next(&self) -> oneshot::Sender<()> {
        let (tx, rx) = oneshot::channel();
        *self.gate.lock().unwrap() = Some(rx);
        tx
    }

    /// What a body does: reads the version, counts the run and, when
    /// [`hold_next`](Self::hold_next) asked for it, waits.
    pub async fn body(&self) -> u64 {
        let version = self.version.load(SeqCst);
        let gate = self.gate.lock().unwrap().take();
        self.runs.fetch_add(1, SeqCst);
        if let Some(gate) = gate {
            let _ = gate.await;
        }
        version
    }
}

/// A cached function over [`Db`]: its value is the version its body read.
#[cached(ttl = 300, key_prefix = "race:", cache = cache, ignore(db), helpers(vis = pub))]
pub async fn versioned(cache: &Cache, db: &Db, id: u64) -> u64 {
    db.body().await
}

/// [`versioned`] in a group (`invalidate_group("raceg:")`).
#[cached(ttl = 300, key_prefix = "raceg:", grouped, cache = cache, ignore(db), helpers(vis = pub))]
pub async fn versioned_grouped(cache: &Cache, db: &Db, id: u64) -> u64 {
    db.body().await
}

/// The ways an entry is invalidated or written while a body runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// `{fn}_invalidate`.
    Invalidate,
    /// `{fn}_invalidate_all`.
    InvalidateAll,
    /// `Cache::invalidate_prefix`.
    InvalidatePrefix,
    /// `Cache::invalidate_group` (of a `grouped` function).
    InvalidateGroup,
    /// `Cache::invalidate_all_keys`.
    InvalidateAllKeys,
    /// `Cache::delete`.
    Delete,
    /// `Cache::set` of the new value.
    Set,
    /// `{fn}_prime` with the new value.
    Prime,
    /// `Cache::set_raw` of the new value.
    SetRaw,
    /// Another client's `DEL`.
    Del,
    /// Another client's `UNLINK`.
    Unlink,
    /// Another client's `SET` of the new value.
    ForeignSet,
    /// Another client's `FLUSHDB` (on every primary of a cluster).
    FlushDb,
    /// Another client's `FLUSHALL` (on every primary of a cluster).
    FlushAll,
}

impl Path {
    /// The paths through the cache's API.
    pub const API: [Path; 9] = [
        Path::Invalidate,
        Path::InvalidateAll,
        Path::InvalidatePrefix,
        Path::InvalidateGroup,
        Path::InvalidateAllKeys,
        Path::Delete,
        Path::Set,
        Path::Prime,
        Path::SetRaw,
    ];

    /// The paths of other clients.
    pub const FOREIGN: [Path; 5] = [
        Path::Del,
        Path::Unlink,
        Path::ForeignSet,
        Path::FlushDb,
        Path::FlushAll,
    ];

    /// Whether the path writes the new value (rather than deleting).
    pub fn writes(self) -> bool {
        matches!(
            self,
            Path::Set | Path::Prime | Path::SetRaw | Path::ForeignSet
        )
    }

    fn grouped(self) -> bool {
        self == Path::InvalidateGroup
    }
}

/// Plain clients of the servers behind a cache, for other clients' changes.
pub enum Plain {
    /// A standalone server, or the primary behind Sentinel.
    Single(redis::aio::MultiplexedConnection),
    /// A cluster: a routing connection, and one to each primary (flushes).
    Cluster(
        redis::cluster_async::ClusterConnection,
        Vec<redis::aio::MultiplexedConnection>,
    ),
    /// The in-memory backend: no other clients.
    None,
}

impl Plain {
    async fn run(&mut self, cmd: &redis::Cmd) {
        match self {
            Plain::Single(conn) => cmd.query_async::<redis::Value>(conn).await,
            Plain::Cluster(conn, _) => cmd.query_async::<redis::Value>(conn).await,
            Plain::None => panic!("no other client of an in-memory cache"),
        }
        .unwrap_or_else(|err| panic!("{cmd:?}: {err}"));
    }

    async fn on_every_primary(&mut self, cmd: &redis::Cmd) {
        match self {
            Plain::Cluster(_, primaries) => {
                for conn in primaries {
                    cmd.query_async::<redis::Value>(conn)
                        .await
                        .unwrap_or_else(|err| panic!("{cmd:?}: {err}"));
                }
            }
            _ => self.run(cmd).await,
        }
    }

    /// The bytes stored under `key`, read with this plain client.
    pub async fn get(&mut self, key: &str) -> Option<Vec<u8>> {
        match self {
            Plain::Single(conn) => conn.get(key).await.unwrap(),
            Plain::Cluster(conn, _) => conn.get(key).await.unwrap(),
            Plain::None => None,
        }
    }
}

/// Who invalidates: the cache the call runs on, or another process's.
#[derive(Clone, Copy)]
pub enum Via<'a> {
    /// The cache the call runs on.
    This,
    /// Another `Cache` on the same servers (another process).
    Other(&'a Cache),
}

/// Races one call of [`versioned`] (or [`versioned_grouped`]) with `id`
/// on `cache` against `path`, taken by `via` (or a plain client): the call
/// returns the version it read, its value is not stored, and the next call,
/// and a call that begins before the first one ends (`late`), see the new
/// version. Checks the stored bytes with `plain` where there is one.
pub async fn race(cache: &Cache, via: Via<'_>, plain: &mut Plain, path: Path, id: u64) {
    let actor = match via {
        Via::This => cache,
        Via::Other(other) => other,
    };
    let mut race = Race::of(path, id, true);
    // Another process's local tier holds the group's generation until the
    // push of its change arrives: a call begun before then may still join
    // the older run (the bound the random history of `coherence.rs` checks).
    race.late = !(path.grouped() && matches!(via, Via::Other(_)));
    race.run(cache, plain, async |plain| {
        invalidate(actor, plain, path, id).await
    })
    .await;
}

/// [`race`] over every path, from `cache` itself (ids from `first_id`),
/// then every API path from `other` (another process).
pub async fn race_every_path(cache: &Cache, other: &Cache, plain: &mut Plain, first_id: u64) {
    let paths = Path::API.into_iter().chain(Path::FOREIGN);
    let mut id = first_id;
    for path in paths {
        race(cache, Via::This, plain, path, id).await;
        id += 1;
    }
    for path in Path::API {
        race(cache, Via::Other(other), plain, path, id).await;
        id += 1;
    }
}

/// [`race`] for a Redis user without `+@scripting`: a value that finds a
/// newer one in its key (here, the late call's) deletes the key after
/// replacing it, so the call after the race runs the body once more.
pub async fn race_without_scripts(cache: &Cache, plain: &mut Plain, path: Path, id: u64) {
    let race = Race::of(path, id, false);
    race.run(cache, plain, async |plain| {
        invalidate(cache, plain, path, id).await
    })
    .await;
}

/// [`race`] against a change of the test's own (`what`): it deletes the
/// key of [`versioned`] with `id`, or (`writes`) stores `2` there.
pub async fn race_against(
    cache: &Cache,
    plain: &mut Plain,
    id: u64,
    what: &str,
    writes: bool,
    change: impl AsyncFnOnce(&mut Plain),
) {
    let race = Race {
        what: format!("{what} of id {id}"),
        id,
        writes,
        grouped: false,
        scripts: true,
        late: true,
    };
    race.run(cache, plain, change).await;
}

/// One race: what it is, and what to expect of it.
struct Race {
    what: String,
    id: u64,
    writes: bool,
    grouped: bool,
    scripts: bool,
    /// Whether a call that begins right after the change is checked.
    late: bool,
}

impl Race {
    fn of(path: Path, id: u64, scripts: bool) -> Race {
        Race {
            what: format!("{path:?} of id {id}"),
            id,
            writes: path.writes(),
            grouped: path.grouped(),
            scripts,
            late: true,
        }
    }

    async fn run(self, cache: &Cache, plain: &mut Plain, change: impl AsyncFnOnce(&mut Plain)) {
        let Race {
            what,
            id,
            writes,
            grouped,
            scripts,
            late,
        } = self;
        let db = Arc::new(Db::new());
        let refused = cache.stats().fills_refused;
        let call = |cache: Cache, db: Arc<Db>| async move {
            if grouped {
                versioned_grouped(&cache, &db, id).await
            } else {
                versioned(&cache, &db, id).await
            }
        };
        let release = db.hold_next();
        let first = tokio::spawn(call(cache.clone(), db.clone()));
        until(&format!("the first body runs ({what})"), async || {
            db.runs() == 1
        })
        .await;

        db.set_version(2);
        change(plain).await;

        // A call that begins now must not get the first body's value.
        let runs_after_late = if late {
            let value =
                tokio::time::timeout(Duration::from_secs(20), call(cache.clone(), db.clone()))
                    .await
                    .unwrap_or_else(|_| panic!("the late call waited for the first body ({what})"));
            assert_eq!(
                value, 2,
                "a call after the invalidation got an older value ({what})"
            );
            let runs = db.runs();
            assert_eq!(
                runs,
                if writes { 1 } else { 2 },
                "the late call ran its own body, or hit the written value ({what})"
            );
            runs
        } else {
            db.runs()
        };

        release.send(()).ok();
        let first = first.await.expect("the first call");
        assert_eq!(
            first, 1,
            "the caller whose body ran gets its value ({what})"
        );

        if !late {
            until(
                &format!("the change reached this process ({what})"),
                async || call(cache.clone(), db.clone()).await == 2,
            )
            .await;
            return;
        }
        let after = call(cache.clone(), db.clone()).await;
        assert_eq!(after, 2, "after the race ({what})");
        let kept = if scripts || grouped {
            db.runs() == runs_after_late
        } else {
            db.runs() <= runs_after_late + 1
        };
        assert!(kept, "the value stayed cached ({what}): {} runs", db.runs());
        if !grouped {
            let key = versioned_key(cache, id).await.unwrap();
            if !matches!(plain, Plain::None) {
                assert_eq!(
                    plain.get(&key).await.as_deref(),
                    Some(&b"2"[..]),
                    "stored ({what})"
                );
            }
            assert_eq!(
                cache.get_raw(&key).await.unwrap().as_deref(),
                Some(&b"2"[..])
            );
            // The older value was refused, and counted.
            assert!(
                cache.stats().fills_refused > refused,
                "the refused store is counted ({what})"
            );
        }
    }
}

/// Changes the entry of `id` by `path`, as `cache` (or a plain client) does.
async fn invalidate(cache: &Cache, plain: &mut Plain, path: Path, id: u64) {
    let key = || async { versioned_key(cache, id).await.unwrap() };
    let two = 2u64;
    match path {
        Path::Invalidate => assert!(versioned_invalidate(cache, id).await.unwrap()),
        Path::InvalidateAll => assert!(versioned_invalidate_all(cache).await.unwrap() >= 1),
        Path::InvalidatePrefix => assert!(cache.invalidate_prefix("race:").await.unwrap() >= 1),
        Path::InvalidateGroup => {
            cache.invalidate_group("raceg:").await.unwrap();
        }
        Path::InvalidateAllKeys => assert!(cache.invalidate_all_keys().await.unwrap() >= 1),
        Path::Delete => assert_eq!(cache.delete(&[&key().await]).await.unwrap(), 1),
        Path::Set => cache.set(&key().await, &two, 300).await.unwrap(),
        Path::Prime => versioned_prime(cache, id, &two).await.unwrap(),
        Path::SetRaw => cache
            .set_raw(&key().await, b"2", Some(Duration::from_secs(300)))
            .await
            .unwrap(),
        Path::Del => plain.run(redis::cmd("DEL").arg(key().await)).await,
        Path::Unlink => plain.run(redis::cmd("UNLINK").arg(key().await)).await,
        Path::ForeignSet => {
            plain
                .run(
                    redis::cmd("SET")
                        .arg(key().await)
                        .arg("2")
                        .arg("EX")
                        .arg(300),
                )
                .await
        }
        Path::FlushDb => plain.on_every_primary(&redis::cmd("FLUSHDB")).await,
        Path::FlushAll => plain.on_every_primary(&redis::cmd("FLUSHALL")).await,
    }
}
