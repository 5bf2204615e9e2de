//! Prefix invalidation on a Redis Cluster while a slot moves from one primary
//! to another (`CLUSTER SETSLOT IMPORTING/MIGRATING`, `MIGRATE`, `SETSLOT
//! NODE`): the count is exact and no key under the prefix is left, wherever
//! the keys were when the scan passed.

use redis_memo_test_support as support;

use std::time::Duration;

use redis_memo::Cache;
use support::TestCluster;

/// Keys in the slot that moves (one hash tag), and keys spread over every slot.
const HOT: usize = 6_000;
const SPREAD: usize = 30_000;
const DECOYS: usize = 2_000;

async fn fill(cluster: &TestCluster) {
    let conn = cluster.client().await;
    // The hot keys share a slot: MSET in batches.
    for batch in (0..HOT).collect::<Vec<_>>().chunks(1000) {
        let mut mset = redis::cmd("MSET");
        for i in batch {
            mset.arg(format!("mig:{{hot}}:{i}")).arg("1");
        }
        mset.query_async::<()>(&mut conn.clone()).await.unwrap();
    }
    // The others: one SET each, routed to its slot's primary, 16 at a time.
    let keys: Vec<String> = (0..SPREAD)
        .map(|i| format!("mig:{i}"))
        .chain((0..DECOYS).map(|i| format!("migx{i}")))
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for part in keys.chunks(keys.len().div_ceil(16)) {
        let (part, mut conn) = (part.to_vec(), conn.clone());
        tasks.spawn(async move {
            for key in part {
                redis::cmd("SET")
                    .arg(key)
                    .arg("1")
                    .query_async::<()>(&mut conn)
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

/// Sends one command to the node on `port`; panics on an error reply.
async fn on(cluster: &TestCluster, port: u16, cmd: &redis::Cmd) -> redis::Value {
    cmd.query_async(&mut cluster.node_client(port).await)
        .await
        .unwrap_or_else(|err| panic!("command on node {port}: {err}"))
}

async fn node_id(cluster: &TestCluster, port: u16) -> String {
    let id = on(cluster, port, redis::cmd("CLUSTER").arg("MYID")).await;
    redis::from_redis_value(id).unwrap()
}

/// Moves up to `batches` batches of 100 keys of `slot` from `from` to `to`;
/// returns whether the slot is empty on `from`.
async fn migrate_keys(
    cluster: &TestCluster,
    slot: u16,
    from: u16,
    to: u16,
    batches: usize,
) -> bool {
    for _ in 0..batches {
        let keys: Vec<String> = redis::from_redis_value(
            on(
                cluster,
                from,
                redis::cmd("CLUSTER")
                    .arg("GETKEYSINSLOT")
                    .arg(slot)
                    .arg(100),
            )
            .await,
        )
        .unwrap();
        if keys.is_empty() {
            return true;
        }
        let mut migrate = redis::cmd("MIGRATE");
        migrate
            .arg("127.0.0.1")
            .arg(to)
            .arg("")
            .arg(0)
            .arg(5000)
            .arg("KEYS")
            .arg(&keys);
        on(cluster, from, &migrate).await;
        tokio::task::yield_now().await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_moving_during_prefix_invalidation_loses_no_key() {
    let cluster = TestCluster::start();
    fill(&cluster).await;
    assert_eq!(cluster.keys_on_primaries("mig:*").await.len(), HOT + SPREAD);
    let from = cluster.primary_for_key("mig:{hot}:0").port;
    let to = cluster
        .primaries()
        .into_iter()
        .map(|p| p.port)
        .find(|&port| port != from)
        .unwrap();
    let slot: u16 = redis::from_redis_value(
        on(
            &cluster,
            from,
            redis::cmd("CLUSTER").arg("KEYSLOT").arg("mig:{hot}:0"),
        )
        .await,
    )
    .unwrap();
    let (from_id, to_id) = (node_id(&cluster, from).await, node_id(&cluster, to).await);
    let cache = Cache::builder()
        .cluster_nodes(cluster.seed_urls())
        .response_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();

    // The slot is half moved when the invalidation starts: its keys are on
    // both primaries, the target's answering MOVED to anyone but an ASKING
    // client, the source's ASK for those already gone.
    on(
        &cluster,
        to,
        redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("IMPORTING")
            .arg(&from_id),
    )
    .await;
    on(
        &cluster,
        from,
        redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("MIGRATING")
            .arg(&to_id),
    )
    .await;
    migrate_keys(&cluster, slot, from, to, HOT / 200).await;

    let invalidation = {
        let cache = cache.clone();
        tokio::spawn(async move { cache.invalidate_prefix("mig:").await })
    };
    // The rest of the slot moves while the scan runs, then the slot is
    // handed over, told to every primary (as `redis-cli --cluster reshard`
    // does).
    while !migrate_keys(&cluster, slot, from, to, 1).await {}
    let others = cluster.primaries().into_iter().map(|p| p.port);
    let others: Vec<u16> = others.filter(|&port| port != to && port != from).collect();
    for port in [to, from].into_iter().chain(others) {
        on(
            &cluster,
            port,
            redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg("NODE")
                .arg(&to_id),
        )
        .await;
    }

    let deleted = invalidation.await.unwrap().expect("invalidate_prefix");
    assert_eq!(deleted, (HOT + SPREAD) as u64, "every key counted once");
    let left = cluster.keys_on_primaries("mig:*").await;
    assert!(
        left.is_empty(),
        "{} keys left, e.g. {:?}",
        left.len(),
        left.first()
    );
    assert_eq!(
        cluster.keys_on_primaries("migx*").await.len(),
        DECOYS,
        "the decoys are kept"
    );
}
