//! The axum example, driven over real HTTP on a free port, with its cache on
//! a redis-server the test starts.

use redis_memo_test_support as support;

#[path = "../examples/axum_service.rs"]
mod service;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 client: one request per connection.
async fn request(port: u16, method: &str, path: &str) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

#[tokio::test]
async fn miss_hit_fresh_not_found_invalidation_and_health_over_http() {
    // A server of its own: the app invalidates its whole `users:` prefix.
    let redis = support::TestRedis::spawn(&[]);
    let cache = redis.cache().await;
    let db = Arc::new(service::Db::default());
    let state = service::AppState {
        cache: cache.clone(),
        db: db.clone(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, service::app(state)).await });
    let queries = || db.queries.load(Ordering::SeqCst);

    let miss = request(port, "GET", "/users/7").await;
    assert_eq!(miss.status, 200);
    assert_eq!(queries(), 1, "the first request queries the database");
    assert_eq!(miss.header("x-db-queries"), Some("1"));
    let hit = request(port, "GET", "/users/7").await;
    assert_eq!((hit.status, &hit.body), (200, &miss.body));
    assert_eq!(queries(), 1, "the second is served from the cache");

    let key = service::user_key(&cache, 7).await.unwrap();
    let stored: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut redis.client().await)
        .await
        .unwrap();
    assert_eq!(
        stored.as_deref(),
        Some(miss.body.as_str()),
        "the JSON is in Redis"
    );

    let stores = cache.stats().stores;
    let fresh = request(port, "GET", "/users/7?fresh=true").await;
    assert_eq!(fresh.status, 200);
    assert_eq!(queries(), 2, "fresh=true skips the cache");
    assert_eq!(cache.stats().stores, stores, "and writes nothing");

    for _ in 0..2 {
        assert_eq!(request(port, "GET", "/users/999").await.status, 404);
    }
    assert_eq!(queries(), 4, "a missing user is not cached");

    let invalidated = request(port, "POST", "/invalidate/users").await;
    assert_eq!(invalidated.status, 200);
    assert_eq!(invalidated.body, r#"{"deleted":1}"#);
    request(port, "GET", "/users/7").await;
    assert_eq!(
        queries(),
        5,
        "after invalidation the next request is a miss"
    );

    let health = request(port, "GET", "/health").await;
    assert_eq!(health.status, 200);
    let health: serde_json::Value = serde_json::from_str(&health.body).unwrap();
    assert_eq!(health["backend"], "redis");
    assert_eq!(health["hits"], 1);
}
