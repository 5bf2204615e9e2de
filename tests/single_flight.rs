//! Single-flight: concurrent callers of one cold key share one run of the body,
//! on Redis and in memory.

use redis_memo_test_support as support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use redis_memo::{Cache, cached};
use support::Harness;
use tokio::sync::Semaphore;

/// Everything a test needs to steer the body: how often it ran, and a gate it
/// waits on before returning.
struct Probe {
    runs: AtomicUsize,
    gate: Semaphore,
}

impl Probe {
    fn new() -> Arc<Probe> {
        Arc::new(Probe {
            runs: AtomicUsize::new(0),
            gate: Semaphore::new(0),
        })
    }
}

#[cached(ttl = 60, key_prefix = "flight:", cache = cache, ignore(probe))]
async fn slow(cache: &Cache, probe: &Probe, id: u64) -> Result<String, String> {
    let run = probe.runs.fetch_add(1, SeqCst);
    // The first run waits for the test to open the gate; later runs do not.
    if run == 0 {
        let _permit = probe.gate.acquire().await.map_err(|e| e.to_string())?;
    }
    if id == 0 && run == 0 {
        return Err("the first run of id 0 fails".into());
    }
    Ok(format!("value {id}"))
}

/// Waits (bounded, so a bug fails instead of hanging) until `n` callers wait on `key`.
async fn until_waiters(cache: &Cache, key: &str, n: usize) {
    tokio::time::timeout(Duration::from_secs(60), async {
        while cache.in_flight_waiters(key) < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{n} callers never waited on {key}"));
}

async fn thousand_cold_callers_run_the_body_once(h: &Harness) {
    const N: usize = 1000;
    let probe = Probe::new();
    let mut tasks = Vec::with_capacity(N);
    for _ in 0..N {
        let (cache, probe) = (h.cache.clone(), probe.clone());
        tasks.push(tokio::spawn(async move { slow(&cache, &probe, 1).await }));
    }
    // Hold the leader's body until every other caller waits on it.
    until_waiters(&h.cache, &slow_key(&h.cache, 1).await.unwrap(), N - 1).await;
    probe.gate.add_permits(1);
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), "value 1");
    }
    assert_eq!(probe.runs.load(SeqCst), 1, "one run for {N} callers");
    assert_eq!(h.cache.in_flight(), 0, "no state is left behind");
    assert_eq!(slow(&h.cache, &probe, 1).await.unwrap(), "value 1");
    assert_eq!(probe.runs.load(SeqCst), 1, "and the value was stored");
}

async fn a_waiter_takes_over_when_the_leader_is_cancelled(h: &Harness) {
    let probe = Probe::new();
    let (cache, p) = (h.cache.clone(), probe.clone());
    let leader = tokio::spawn(async move { slow(&cache, &p, 2).await });
    tokio::time::timeout(Duration::from_secs(60), async {
        while h.cache.in_flight() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the leader started");
    let (cache, p) = (h.cache.clone(), probe.clone());
    let waiter = tokio::spawn(async move { slow(&cache, &p, 2).await });
    until_waiters(&h.cache, &slow_key(&h.cache, 2).await.unwrap(), 1).await;

    leader.abort(); // drops the leader's future mid-body
    assert!(leader.await.unwrap_err().is_cancelled());
    assert_eq!(waiter.await.unwrap().unwrap(), "value 2");
    assert_eq!(probe.runs.load(SeqCst), 2, "the waiter ran the body itself");
    assert_eq!(h.cache.in_flight(), 0);
}

async fn after_a_leader_error_waiters_take_over_and_share_the_next_value(h: &Harness) {
    const N: usize = 50;
    let probe = Probe::new();
    let mut tasks = Vec::new();
    for _ in 0..N {
        let (cache, probe) = (h.cache.clone(), probe.clone());
        tasks.push(tokio::spawn(async move { slow(&cache, &probe, 0).await }));
    }
    until_waiters(&h.cache, &slow_key(&h.cache, 0).await.unwrap(), N - 1).await;
    probe.gate.add_permits(1);
    let mut errors = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(value) => assert_eq!(value, "value 0"),
            Err(_) => errors += 1,
        }
    }
    assert_eq!(errors, 1, "only the leader sees its Err");
    assert_eq!(
        probe.runs.load(SeqCst),
        2,
        "one waiter took over; the rest shared its Ok"
    );
}

async fn distinct_keys_leave_no_state_behind(h: &Harness) {
    let probe = Probe::new();
    probe.gate.add_permits(1);
    let mut tasks = Vec::new();
    for chunk in 0..20u64 {
        let (cache, probe) = (h.cache.clone(), probe.clone());
        tasks.push(tokio::spawn(async move {
            for id in chunk * 500 + 10..chunk * 500 + 510 {
                slow(&cache, &probe, id).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(probe.runs.load(SeqCst), 10_000);
    assert_eq!(
        h.cache.in_flight(),
        0,
        "the single-flight map is empty again"
    );
}

support::on_both_backends! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    thousand_cold_callers_run_the_body_once,
    a_waiter_takes_over_when_the_leader_is_cancelled,
    after_a_leader_error_waiters_take_over_and_share_the_next_value,
    distinct_keys_leave_no_state_behind,
}
