//! Building against what does not answer, and settings that cannot work.

use std::time::Duration;

use super::CacheBuilder;
use crate::cache::Cache;
use crate::error::Error;

#[tokio::test]
async fn bad_urls_are_typed_errors() {
    for url in [
        "",
        "not a url",
        "http://localhost",
        "redis://host:notaport",
        "redis://app@127.0.0.1:6379",
    ] {
        match Cache::connect(url).await {
            Err(Error::InvalidUrl { .. }) => {}
            other => panic!("{url:?}: expected InvalidUrl, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn bad_cluster_seeds_are_typed_errors() {
    let cases: [&[&str]; 4] = [
        &[],
        &["not a url"],
        &["unix:///tmp/redis.sock"],
        &["redis://127.0.0.1:7000", "http://127.0.0.1:7001"],
    ];
    for seeds in cases {
        match Cache::connect_cluster(seeds).await {
            Err(Error::InvalidUrl { .. }) => {}
            other => panic!("{seeds:?}: expected InvalidUrl, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn bad_sentinel_settings_are_typed_errors() {
    let cases: [(&[&str], &str, Option<&str>); 6] = [
        (&[], "mymaster", None),
        (&["redis://127.0.0.1:26379"], "  ", None),
        (&["http://127.0.0.1:26379"], "mymaster", None),
        (&["unix:///tmp/sentinel.sock"], "mymaster", None),
        (&["redis://app@127.0.0.1:26379"], "mymaster", None),
        (
            &["redis://127.0.0.1:26379"],
            "mymaster",
            Some("redis://app@primary/0"),
        ),
    ];
    for (sentinels, service, url) in cases {
        let mut builder = Cache::builder().sentinel(sentinels, service);
        if let Some(url) = url {
            builder = builder.url(url);
        }
        for result in [builder.clone().build().await, builder.build_lazy().await] {
            match result {
                Err(Error::InvalidUrl { .. }) => {}
                other => {
                    panic!("{sentinels:?} {service:?}: expected InvalidUrl, got {other:?}")
                }
            }
        }
    }
}

/// `builder` names nothing that listens: `build` fails fast with a
/// connection error, `build_lazy` builds a cache of `kind` that fails open.
async fn unreachable_fails_fast_and_builds_lazily(builder: CacheBuilder, kind: &str) {
    let builder = builder.connect_timeout(Duration::from_millis(300));
    match builder.clone().build().await {
        Err(Error::Connection(_) | Error::Timeout(_)) => {}
        other => panic!("expected a connection error, got {other:?}"),
    }
    let lazy = builder.build_lazy().await.expect("a lazy cache builds");
    assert_eq!(lazy.backend_kind(), kind);
    assert!(lazy.ping().await.is_err());
    let value = lazy.get_or_set("k", 60, || async { 3u8 }).await;
    assert_eq!(value, 3, "fail-open");
}

#[tokio::test]
async fn an_unreachable_sentinel_fails_fast_and_a_lazy_one_builds() {
    let builder = Cache::builder().sentinel(["redis://127.0.0.1:1"], "mymaster");
    unreachable_fails_fast_and_builds_lazily(builder, "redis-sentinel").await;
}

#[tokio::test]
async fn an_unreachable_cluster_fails_fast_and_a_lazy_one_builds() {
    let builder = Cache::builder().cluster_nodes(["redis://127.0.0.1:1"]);
    unreachable_fails_fast_and_builds_lazily(builder, "redis-cluster").await;
}
