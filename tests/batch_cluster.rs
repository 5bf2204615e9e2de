//! Batches on a Redis Cluster: elements on every primary, read with one
//! `MGET` per slot sent at once (no `GET`), stored on their own primaries.

use redis_memo_test_support as support;

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use redis_memo::{Cache, cached};
use support::{TestCluster, command_counts};

#[cached(ttl = 300, key_prefix = "cb:", batch = ids, cache = cache, ignore(loads))]
async fn squares(cache: &Cache, loads: &Mutex<Vec<Vec<u64>>>, ids: &[u64]) -> HashMap<u64, u64> {
    loads.lock().unwrap().push(ids.to_vec());
    ids.iter().map(|&id| (id, id * id)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_reads_and_stores_on_every_primary() {
    let cluster = tokio::task::spawn_blocking(TestCluster::start)
        .await
        .unwrap();
    let cache = Cache::connect_cluster(cluster.seed_urls()).await.unwrap();
    let loads = Mutex::new(Vec::new());
    let ids: Vec<u64> = (0..300).collect();
    let expected: HashMap<u64, u64> = ids.iter().map(|&id| (id, id * id)).collect();
    assert_eq!(squares(&cache, &loads, &ids).await, expected);

    // Every element on its primary, read back with a plain client.
    let mut owners = BTreeSet::new();
    let mut plain = cluster.client().await;
    for &id in &ids {
        let key = squares_key(&cache, &id).await.unwrap();
        owners.insert(cluster.primary_for_key(&key).port);
        let stored: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut plain)
            .await
            .unwrap();
        assert_eq!(stored, Some((id * id).to_string()));
    }
    assert_eq!(owners.len(), 3, "the elements are on every primary");

    // A warm batch: MGETs only, on every primary.
    let mut primaries = Vec::new();
    for primary in cluster.primaries() {
        let mut conn = cluster.node_client(primary.port).await;
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async(&mut conn)
            .await
            .unwrap();
        primaries.push(conn);
    }
    assert_eq!(squares(&cache, &loads, &ids).await, expected);
    for conn in &mut primaries {
        let counts = command_counts(conn).await;
        assert!(counts.get("mget").is_some_and(|&n| n > 0), "{counts:?}");
        assert_eq!(counts.get("get"), None, "{counts:?}");
    }

    // One element invalidated: only it is loaded again.
    assert!(squares_invalidate(&cache, &7).await.unwrap());
    squares(&cache, &loads, &ids).await;
    assert_eq!(loads.lock().unwrap().len(), 2);
    assert_eq!(loads.lock().unwrap()[1], vec![7]);
}
