//! The harness itself, against real processes: a cluster spreads keys and
//! survives a dead primary, sentinels fail over, TLS servers accept the
//! clients they should and refuse the others, ACL users get their rules.

use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redis_memo_test_support::{
    NodeRole, TestCluster, TestRedis, TestSentinel, TlsOptions, tls_supported,
};

/// Polls an async check every 100 ms until it holds; panics after `limit`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        let seen = match check().await {
            Ok(()) => return,
            Err(err) => err,
        };
        assert!(
            Instant::now() < deadline,
            "waited {limit:?} for {what}; last seen: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn cluster_spreads_keys_over_all_three_primaries() {
    let cluster = TestCluster::start();
    let primaries = cluster.primaries();
    assert_eq!(primaries.len(), 3, "{primaries:?}");
    assert_eq!(cluster.seed_urls().len(), 6);
    let nodes = cluster.nodes();
    assert_eq!(
        nodes.iter().filter(|n| n.role == NodeRole::Replica).count(),
        3
    );
    for replica in nodes.iter().filter(|n| n.role == NodeRole::Replica) {
        let primary = replica.primary_id.as_deref().expect("a replica's primary");
        assert!(primaries.iter().any(|p| p.id == primary), "{replica:?}");
    }

    let mut conn = cluster.client().await;
    for i in 0..100 {
        let () = conn
            .set(format!("spread:{i}"), i)
            .await
            .expect("SET through the cluster");
    }

    let by_primary = cluster.keys_by_primary("spread:*").await;
    assert_eq!(by_primary.len(), 3);
    for (port, keys) in &by_primary {
        assert!(
            !keys.is_empty(),
            "primary {port} holds none of the 100 keys"
        );
    }
    assert_eq!(cluster.keys_on_primaries("spread:*").await.len(), 100);
    for i in (0..100).step_by(17) {
        let key = format!("spread:{i}");
        let owner = cluster.primary_for_key(&key);
        assert!(
            by_primary[&owner.port].contains(&key),
            "{key} is not on {owner:?}"
        );
    }
    for i in 0..100 {
        let value: i64 = conn
            .get(format!("spread:{i}"))
            .await
            .expect("GET through the cluster");
        assert_eq!(value, i);
    }
}

#[tokio::test]
async fn a_killed_cluster_primary_is_replaced_by_its_replica() {
    let mut cluster = TestCluster::start();
    let key = "survives:failover";
    let mut conn = cluster.client().await;
    let () = conn.set(key, "still here").await.expect("SET");
    cluster.wait_replicated().await;
    drop(conn);

    let old = cluster.primary_for_key(key);
    let replica = cluster
        .nodes()
        .into_iter()
        .find(|n| n.primary_id.as_deref() == Some(old.id.as_str()))
        .expect("the primary's replica");
    cluster.kill(old.port);
    let promoted = cluster.wait_until_promoted(old.port);
    assert_eq!(promoted.port, replica.port, "its own replica takes over");
    assert_eq!(promoted.role, NodeRole::Primary);
    assert_eq!(cluster.primary_for_key(key).port, replica.port);
    assert_eq!(cluster.primaries().len(), 3);

    let value: String = cluster
        .client()
        .await
        .get(key)
        .await
        .expect("GET after failover");
    assert_eq!(value, "still here");

    cluster.restart(old.port);
    let back = cluster.node(old.port);
    assert_eq!(back.role, NodeRole::Replica, "{back:?}");
    assert_eq!(back.primary_id.as_deref(), Some(promoted.id.as_str()));
}

#[tokio::test]
async fn sentinel_failover_moves_writes_to_the_new_primary() {
    let sentinel = TestSentinel::start();
    assert_eq!(sentinel.sentinel_urls().len(), 3);
    let old = sentinel.primary_port();
    let replica = sentinel.replica_port();
    assert_ne!(old, replica);
    let () = sentinel
        .node_client(old)
        .await
        .set("before", 1)
        .await
        .expect("SET on the first primary");

    sentinel.failover();
    let new = sentinel.wait_for_primary_change(old);
    assert_eq!(new, replica, "the only replica is promoted");
    assert_eq!(sentinel.primary_port(), new);
    assert_eq!(sentinel.replica_port(), old);

    let mut primary = sentinel.node_client(new).await;
    let before: i64 = primary.get("before").await.expect("GET on the new primary");
    assert_eq!(before, 1, "the new primary has the old one's data");
    let () = primary
        .set("after", 2)
        .await
        .expect("SET on the new primary");

    // The sentinels turn the old primary into a replica of the new one.
    eventually(
        "the old primary to replicate the new one",
        Duration::from_secs(30),
        || async {
            let mut demoted = sentinel.node_client(old).await;
            let after: Option<i64> = demoted.get("after").await.map_err(|e| e.to_string())?;
            if after != Some(2) {
                return Err(format!("GET after on {old}: {after:?}"));
            }
            match demoted.set::<_, _, ()>("after", 3).await {
                Err(err) if err.code() == Some("READONLY") => Ok(()),
                other => Err(format!("SET on {old}: {other:?}")),
            }
        },
    )
    .await;
}

#[tokio::test]
async fn tls_server_accepts_clients_that_trust_its_ca_only() {
    if !tls_supported() {
        eprintln!("skipped: redis-server was built without TLS");
        return;
    }
    let mut redis = TestRedis::spawn_tls(TlsOptions { client_auth: false });
    assert!(
        redis.url().starts_with("rediss://127.0.0.1:"),
        "{}",
        redis.url()
    );
    let certs = redis.certs().expect("certificates of a TLS server");
    assert!(certs.ca.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(certs.server.cert_path.exists() && certs.server.key_path.exists());

    let trusting = redis::Client::build_with_tls(redis.url(), certs.trusting_ca()).expect("client");
    let mut conn = trusting
        .get_multiplexed_async_connection()
        .await
        .expect("a client trusting the CA connects");
    let () = conn.set("over", "tls").await.expect("SET over TLS");
    let value: String = conn.get("over").await.expect("GET over TLS");
    assert_eq!(value, "tls");

    let untrusting =
        redis::Client::build_with_tls(redis.url(), certs.trusting_other_ca()).expect("client");
    assert!(
        ping(&untrusting).await.is_err(),
        "a client trusting only the other CA must not get through"
    );
    let plain = redis::Client::open(format!("redis://127.0.0.1:{}", redis.port())).expect("url");
    assert!(ping(&plain).await.is_err(), "plain TCP on the TLS port");

    redis.kill();
    redis.restart(&[]);
    let mut again = redis.client().await;
    let pong: String = redis::cmd("PING")
        .query_async(&mut again)
        .await
        .expect("PING after restart");
    assert_eq!(pong, "PONG");
}

#[tokio::test]
async fn tls_server_with_client_auth_wants_a_certificate_from_its_ca() {
    if !tls_supported() {
        eprintln!("skipped: redis-server was built without TLS");
        return;
    }
    let redis = TestRedis::spawn_tls(TlsOptions { client_auth: true });
    let certs = redis.certs().expect("certificates of a TLS server");

    let with_cert =
        redis::Client::build_with_tls(redis.url(), certs.with_client_cert()).expect("client");
    ping(&with_cert)
        .await
        .expect("a client with the CA's client certificate gets through");

    let without_cert =
        redis::Client::build_with_tls(redis.url(), certs.trusting_ca()).expect("client");
    assert!(ping(&without_cert).await.is_err(), "no client certificate");

    let foreign_cert =
        redis::Client::build_with_tls(redis.url(), certs.with_other_client_cert()).expect("client");
    assert!(
        ping(&foreign_cert).await.is_err(),
        "a client certificate from the other CA"
    );
}

#[tokio::test]
async fn acl_users_get_the_rules_they_were_given() {
    let redis = TestRedis::spawn(&[]);
    let () = redis
        .client()
        .await
        .set("acl:key", "v")
        .await
        .expect("SET as default");
    redis
        .acl_setuser("reader", &["on", ">secret", "~acl:*", "+get"])
        .await;
    assert_eq!(
        redis.command(&["ACL", "WHOAMI"]).await,
        redis::Value::BulkString(b"default".to_vec())
    );

    let url = format!("redis://reader:secret@127.0.0.1:{}", redis.port());
    let mut reader = redis::Client::open(url)
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("the reader logs in");
    let value: String = reader.get("acl:key").await.expect("GET is allowed");
    assert_eq!(value, "v");
    let denied = reader
        .set::<_, _, ()>("acl:key", "w")
        .await
        .expect_err("SET is not");
    assert_eq!(denied.code(), Some("NOPERM"), "{denied}");
}

async fn ping(client: &redis::Client) -> redis::RedisResult<()> {
    let mut conn = client.get_multiplexed_async_connection().await?;
    redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .map(drop)
}
