//! What the benchmarks share: the workload's value and the interleaved
//! measurement loops. Each bench uses part of it.
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The cached value: about 90 bytes of JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub id: u64,
    pub name: String,
    pub email: String,
    pub active: bool,
    pub score: f64,
}

pub fn make_user(id: u64) -> User {
    User {
        id,
        name: format!("User number {id}"),
        email: format!("user{id}@example.com"),
        active: !id.is_multiple_of(3),
        score: id as f64 * 1.5,
    }
}

/// Stores `user` as JSON under `key` for an hour, as a hand-written cache
/// would.
pub async fn store_user(conn: &redis::aio::MultiplexedConnection, key: &str, user: &User) {
    let json = serde_json::to_vec(user).expect("JSON");
    redis::cmd("SET")
        .arg(key)
        .arg(json)
        .arg("EX")
        .arg(3600)
        .query_async::<()>(&mut conn.clone())
        .await
        .expect("SET");
}

/// Warm ids of the hit phases.
pub const IDS: u64 = 1000;

/// One call's future, boxed so that every variant pays the same for it.
pub type Call = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One way of making a call.
pub type Variant = Arc<dyn Fn(u64) -> Call + Send + Sync>;

pub fn variant<F, Fut>(f: F) -> Variant
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Arc::new(move |id| Box::pin(f(id)))
}

/// The order of the variants in one round: rotated and reversed from round to
/// round, so that no variant always runs first or right after the same one.
pub fn round_order(n: usize, round: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.rotate_left(round as usize % n);
    if round % 2 == 1 {
        order.reverse();
    }
    order
}

/// Hand-written hits on `conn` (a `MultiplexedConnection`, a
/// `ClusterConnection`): a GET + serde_json of `key(id)` for the warm ids,
/// each call building its key as hand-written code does.
pub fn raw_get_variant<C, K>(conn: &C, key: K) -> Variant
where
    C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
    K: Fn(u64) -> String + Send + Sync + 'static,
{
    let conn = conn.clone();
    variant(move |id| {
        let (mut conn, key) = (conn.clone(), key(id % IDS));
        async move {
            let bytes: Option<Vec<u8>> = redis::cmd("GET")
                .arg(key)
                .query_async(&mut conn)
                .await
                .expect("GET");
            let user: User = serde_json::from_slice(&bytes.expect("warm key")).expect("JSON");
            std::hint::black_box(user);
        }
    })
}

/// Calls per second of each variant at `tasks` concurrent tasks (ids taken
/// modulo [`IDS`]), in alternating quarter-second rounds adding up to
/// `seconds` per variant. Each task counts its own calls, so the loop adds no
/// shared write per call.
pub async fn throughputs(variants: &[(&str, Variant)], tasks: usize, seconds: u64) -> Vec<f64> {
    let mut calls = vec![0u64; variants.len()];
    let mut elapsed = vec![0f64; variants.len()];
    for round in 0..seconds * 4 {
        for v in round_order(variants.len(), round) {
            let call = &variants[v].1;
            let done = Arc::new(AtomicU64::new(0));
            let deadline = Instant::now() + Duration::from_millis(250);
            let start = Instant::now();
            let handles: Vec<_> = (0..tasks)
                .map(|t| {
                    let (call, done) = (call.clone(), done.clone());
                    tokio::spawn(async move {
                        let mut i = t as u64 * 7919;
                        let mut n = 0;
                        while Instant::now() < deadline {
                            call(i % IDS).await;
                            i += 1;
                            n += 1;
                        }
                        done.fetch_add(n, Ordering::Relaxed);
                    })
                })
                .collect();
            for handle in handles {
                handle.await.expect("task");
            }
            elapsed[v] += start.elapsed().as_secs_f64();
            calls[v] += done.load(Ordering::Relaxed);
        }
    }
    calls
        .iter()
        .zip(&elapsed)
        .map(|(c, e)| *c as f64 / e)
        .collect()
}

pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * q) as usize]
}

pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

pub fn env_or(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
