//! What a URL and the certificates given may be: the schemes, a user
//! without a password, `#insecure`, certificates on a plain URL; and the
//! redis-rs clients they open.

use crate::error::Error;

/// Refuses a URL whose scheme is not Redis's (or `rediss://` without TLS
/// support); unix sockets only when `unix` (a cluster has none).
pub(super) fn check_scheme(url: &str, unix: bool) -> Result<(), Error> {
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    match scheme {
        Some("redis") => {}
        Some("redis+unix" | "unix") if unix => {}
        Some("rediss") if cfg!(feature = "tls") => {}
        Some("rediss") => {
            return Err(Error::InvalidUrl {
                reason: "rediss:// needs the `tls` feature of redis-memo".into(),
            });
        }
        _ if unix => {
            return Err(Error::InvalidUrl {
                reason: "the URL must start with redis://, rediss:// or unix://".into(),
            });
        }
        _ => {
            return Err(Error::InvalidUrl {
                reason: format!("cluster seed {url:?} must start with redis:// or rediss://"),
            });
        }
    }
    Ok(())
}

/// Certificates for `rediss://`, beyond the public roots.
#[derive(Debug, Clone, Default)]
pub(super) struct TlsFiles {
    /// A CA to trust (PEM).
    pub(super) ca: Option<Vec<u8>>,
    /// A client certificate and key (PEM) for mutual TLS.
    pub(super) client: Option<(Vec<u8>, Vec<u8>)>,
}

pub(super) fn open_client(url: &str, tls: &TlsFiles) -> Result<redis::Client, Error> {
    let invalid = |reason: &str| Error::InvalidUrl {
        reason: reason.into(),
    };
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    let secure = match scheme {
        Some("redis" | "redis+unix" | "unix") => false,
        Some("rediss") if cfg!(feature = "tls") => true,
        Some("rediss") => return Err(invalid("rediss:// needs the `tls` feature of redis-memo")),
        _ => {
            return Err(invalid(
                "the URL must start with redis://, rediss:// or unix://",
            ));
        }
    };
    // `redis://app@host`: a user without a password would silently
    // authenticate as nobody (Redis then treats the connection as `default`).
    let authority = url.split_once("://").map_or("", |(_, rest)| {
        rest.split(['/', '?', '#']).next().unwrap_or("")
    });
    if let Some((userinfo, _)) = authority.rsplit_once('@')
        && !userinfo.is_empty()
        && !userinfo.contains(':')
    {
        return Err(invalid(
            "the URL names a user but no password; write redis://user:password@host (Redis \
             would otherwise use the `default` user)",
        ));
    }
    if url.ends_with("#insecure") && !cfg!(feature = "tls-insecure") {
        return Err(invalid(
            "`#insecure` (no certificate check) needs the `tls-insecure` feature of redis-memo; \
             to trust a private CA instead, use CacheBuilder::tls_ca_certificate",
        ));
    }
    if (tls.ca.is_some() || tls.client.is_some()) && !secure {
        return Err(invalid(
            "TLS certificates were given but the URL is not rediss://",
        ));
    }
    let opened = if secure && (tls.ca.is_some() || tls.client.is_some()) {
        with_certificates(url, tls)
    } else {
        redis::Client::open(url)
    };
    opened.map_err(|err| Error::InvalidUrl {
        reason: err.to_string(),
    })
}

#[cfg(feature = "tls")]
impl TlsFiles {
    pub(super) fn certificates(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: self.client.clone().map(|(client_cert, client_key)| {
                redis::ClientTlsConfig {
                    client_cert,
                    client_key,
                }
            }),
            root_cert: self.ca.clone(),
        }
    }
}

#[cfg(feature = "tls")]
fn with_certificates(url: &str, tls: &TlsFiles) -> redis::RedisResult<redis::Client> {
    redis::Client::build_with_tls(url, tls.certificates())
}

/// The CA and client certificate of [`TlsFiles`] on a cluster client: every
/// node the cluster names is reached with them, not only the seeds.
#[cfg(feature = "tls")]
pub(super) fn cluster_certificates(
    builder: redis::cluster::ClusterClientBuilder,
    nodes: &[String],
    tls: &TlsFiles,
) -> Result<redis::cluster::ClusterClientBuilder, Error> {
    if tls.ca.is_none() && tls.client.is_none() {
        return Ok(builder);
    }
    if nodes.iter().any(|node| !node.starts_with("rediss://")) {
        return Err(Error::InvalidUrl {
            reason: "TLS certificates were given but a cluster seed is not rediss://".into(),
        });
    }
    Ok(builder.certs(redis::TlsCertificates {
        client_tls: tls
            .client
            .clone()
            .map(|(client_cert, client_key)| redis::ClientTlsConfig {
                client_cert,
                client_key,
            }),
        root_cert: tls.ca.clone(),
    }))
}

#[cfg(not(feature = "tls"))]
pub(super) fn cluster_certificates(
    builder: redis::cluster::ClusterClientBuilder,
    _: &[String],
    _: &TlsFiles,
) -> Result<redis::cluster::ClusterClientBuilder, Error> {
    Ok(builder)
}

#[cfg(not(feature = "tls"))]
fn with_certificates(url: &str, _: &TlsFiles) -> redis::RedisResult<redis::Client> {
    redis::Client::open(url)
}
