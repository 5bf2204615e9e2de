//! TLS with a private CA, mutual TLS, and errors that say which case it is,
//! against redis-servers started with certificates the test generates.
//! Skipped, with a message, when the installed redis-server lacks TLS.

use redis_memo::{Cache, Error};
use redis_memo_test_support::{TestRedis, TlsOptions, tls_supported};

fn tls_or_skip() -> bool {
    if !tls_supported() {
        eprintln!("skipped: this redis-server was built without TLS (BUILD_TLS=yes)");
    }
    tls_supported()
}

fn tls_advice(result: Result<Cache, Error>) -> &'static str {
    match result {
        Err(Error::Tls { advice, .. }) => advice,
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_private_ca_is_trusted_when_given_and_refused_with_advice_when_not() {
    if !tls_or_skip() {
        return;
    }
    let redis = TestRedis::spawn_tls(TlsOptions { client_auth: false });
    let certs = redis.certs().unwrap();
    let cache = Cache::builder()
        .url(redis.url())
        .tls_ca_certificate(certs.ca.cert_pem.clone())
        .build()
        .await
        .unwrap();
    assert_eq!(cache.get_or_set("tls:1", 60, || async { 7u8 }).await, 7);
    assert_eq!(
        cache.get::<u8>("tls:1").await.unwrap(),
        Some(7),
        "stored over TLS"
    );

    let advice = tls_advice(Cache::connect(redis.url()).await);
    assert!(advice.contains("tls_ca_certificate"), "{advice}");
    let advice = tls_advice(
        Cache::builder()
            .url(redis.url())
            .tls_ca_certificate(certs.other_ca.cert_pem.clone())
            .build()
            .await,
    );
    assert!(
        advice.contains("tls_ca_certificate"),
        "another CA: {advice}"
    );
}

#[tokio::test]
async fn mutual_tls_needs_the_client_certificate() {
    if !tls_or_skip() {
        return;
    }
    let redis = TestRedis::spawn_tls(TlsOptions { client_auth: true });
    let certs = redis.certs().unwrap();
    let without = Cache::builder()
        .url(redis.url())
        .tls_ca_certificate(certs.ca.cert_pem.clone())
        .build()
        .await;
    assert!(
        matches!(&without, Err(Error::Tls { .. } | Error::Connection(_))),
        "{without:?}"
    );
    let cache = Cache::builder()
        .url(redis.url())
        .tls_ca_certificate(certs.ca.cert_pem.clone())
        .tls_client_certificate(certs.client.cert_pem.clone(), certs.client.key_pem.clone())
        .build()
        .await
        .unwrap();
    assert_eq!(cache.get_or_set("mtls:1", 60, || async { 9u8 }).await, 9);
    assert_eq!(cache.get::<u8>("mtls:1").await.unwrap(), Some(9));
}

#[tokio::test]
async fn tls_to_a_plain_port_and_certificates_without_rediss_are_clear_errors() {
    if !tls_or_skip() {
        return;
    }
    let plain = TestRedis::spawn(&[]);
    let tls_url = plain.url().replacen("redis://", "rediss://", 1);
    let result = Cache::builder()
        .url(&tls_url)
        .connect_timeout(std::time::Duration::from_secs(2))
        .build()
        .await;
    match result {
        Err(Error::Tls { advice, .. }) => {
            assert!(advice.contains("does not speak TLS"), "{advice}")
        }
        Err(Error::Timeout(_)) => {}
        other => panic!("expected a TLS error, got {other:?}"),
    }
    match Cache::builder()
        .url(plain.url())
        .tls_ca_certificate(b"-----BEGIN CERTIFICATE-----".to_vec())
        .build()
        .await
    {
        Err(Error::InvalidUrl { reason }) => assert!(reason.contains("rediss://"), "{reason}"),
        other => panic!("expected InvalidUrl, got {other:?}"),
    }
    // A plain URL to a TLS port: the server never answers in plain text.
    let tls = TestRedis::spawn_tls(TlsOptions { client_auth: false });
    let plain_url = tls.url().replacen("rediss://", "redis://", 1);
    let err = Cache::builder()
        .url(&plain_url)
        .connect_timeout(std::time::Duration::from_millis(500))
        .build()
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("rediss://"),
        "the message names the fix: {err}"
    );
}
