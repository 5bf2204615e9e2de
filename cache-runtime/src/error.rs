//! The one error type of redis-memo.

use std::time::Duration;

/// Everything that can go wrong when you talk to the cache directly.
///
/// A `#[cached]` function never returns this: a cache that fails is skipped and
/// the function body runs (fail-open). You meet `Error` when you build a
/// [`Cache`](crate::Cache) or call one of its methods yourself, such as
/// [`Cache::invalidate_prefix`](crate::Cache::invalidate_prefix).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use redis_memo::{Cache, Error};
///
/// match Cache::connect("not a url").await {
///     Err(Error::InvalidUrl { reason }) => println!("fix REDIS_URL: {reason}"),
///     other => panic!("expected an invalid URL error, got {other:?}"),
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL given to [`Cache::connect`](crate::Cache::connect) is not a Redis URL.
    /// The URL itself is not repeated here, so that a password in it is never logged.
    #[error(
        "invalid Redis URL: {reason} (expected redis://[user:password@]host[:port][/db] or rediss://...)"
    )]
    InvalidUrl {
        /// Why the URL was refused.
        reason: String,
    },

    /// Redis could not be reached, or refused the connection (authentication, TLS, ...).
    #[error(
        "cannot connect to Redis: {0} (is redis-server running, and is the URL right? a port \
         that serves TLS needs a rediss:// URL)"
    )]
    Connection(#[source] redis::RedisError),

    /// Redis did not answer within the configured timeout.
    #[error(
        "Redis did not answer within {0:?}: it may be overloaded or paused, or, when connecting, \
         the address may be wrong or serve TLS (a TLS port needs a rediss:// URL)"
    )]
    Timeout(Duration),

    /// The TLS handshake with Redis failed; the message says why and what to do.
    #[error("TLS with Redis failed: {advice} ({source})")]
    Tls {
        /// What to do about it.
        advice: &'static str,
        /// The failure as redis-rs reported it.
        #[source]
        source: redis::RedisError,
    },

    /// Redis answered a command with an error (wrong type, read-only replica, out of memory, ...).
    #[error("Redis command failed: {0}")]
    Redis(#[source] redis::RedisError),

    /// An argument could not be encoded into a cache key: its `Serialize`
    /// implementation returned an error.
    #[error("cannot encode the arguments into a cache key: {0}")]
    Key(String),

    /// A value could not be encoded for storage.
    #[error("cannot encode the value: {0}")]
    Encode(#[source] Box<dyn std::error::Error + Send + Sync>),

    /// A stored value could not be decoded into the expected type (corrupt,
    /// of an older version of the type, or written by another codec).
    #[error("cannot decode the cached value: {0}")]
    Decode(#[source] Box<dyn std::error::Error + Send + Sync>),

    /// A value given to [`Cache::set`](crate::Cache::set) (or a `{fn}_prime`
    /// helper) encodes to more than
    /// [`max_value_bytes`](crate::CacheBuilder::max_value_bytes).
    #[error(
        "the value encodes to {size} bytes, more than max_value_bytes ({limit}); \
         raise CacheBuilder::max_value_bytes or store less"
    )]
    ValueTooLarge {
        /// The encoded size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },

    /// The server at the URL is not a standalone primary, so the constructor
    /// used cannot cache there: a Redis Cluster node, a Sentinel or a
    /// read-only replica. The message names the constructor to use.
    #[error("the server at this URL is {found}: {advice}")]
    WrongServer {
        /// What the server said it is.
        found: &'static str,
        /// What to do instead.
        advice: &'static str,
    },

    /// The Sentinels given to [`Cache::connect_sentinel`](crate::Cache::connect_sentinel)
    /// answered, but named no primary for the service that answers `ROLE` as
    /// master: the service name is wrong, or a failover is in progress.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use redis_memo::{Cache, Error};
    ///
    /// match Cache::connect_sentinel(["redis://127.0.0.1:26379"], "mymaster").await {
    ///     Err(Error::NoPrimary { service, advice }) => eprintln!("{service}: {advice}"),
    ///     other => println!("{other:?}"),
    /// }
    /// # }
    /// ```
    #[error(
        "no primary for Sentinel service {service:?}: {advice} (`SENTINEL MASTERS` on a \
         Sentinel lists the names it monitors)"
    )]
    NoPrimary {
        /// The service name given.
        service: String,
        /// What the Sentinels said, and what to do.
        advice: &'static str,
    },

    /// [`Cache::invalidate_prefix`](crate::Cache::invalidate_prefix) was given an
    /// empty prefix, which would delete every key of the database, including keys
    /// that redis-memo never wrote.
    #[error(
        "refusing to invalidate the empty prefix: it would delete every key of the database; \
         pass a non-empty prefix, or call Cache::invalidate_all_keys if that is what you want"
    )]
    EmptyPrefix,
}

impl Error {
    /// A failed connection attempt: a TLS failure says which case it is.
    pub(crate) fn from_connect(err: redis::RedisError) -> Self {
        let text = format!("{err:?} {err}").to_lowercase();
        let advice = if text.contains("unknownissuer") || text.contains("unknown issuer") {
            Some(
                "the server's certificate is not signed by a trusted authority: pass its CA with \
                 CacheBuilder::tls_ca_certificate",
            )
        } else if text.contains("certificaterequired")
            || text.contains("certificate required")
            || text.contains("handshakefailure")
        {
            Some(
                "the server requires a client certificate: pass one with \
                 CacheBuilder::tls_client_certificate",
            )
        } else if text.contains("corrupt message")
            || text.contains("invalidcontenttype")
            || text.contains("invalid content type")
            || text.contains("peer is incompatible")
        {
            Some(
                "the server does not speak TLS on this port: use a redis:// URL, or the \
                 server's TLS port",
            )
        } else if text.contains("notvalidforname") || text.contains("not valid for name") {
            Some("the server's certificate is not valid for this host name")
        } else {
            None
        };
        match advice {
            Some(advice) => Error::Tls {
                advice,
                source: err,
            },
            None => Error::Connection(err),
        }
    }

    /// Maps a redis-rs error to the variant a user would match on.
    pub(crate) fn from_redis(err: redis::RedisError, timeout: Duration) -> Self {
        if err.is_timeout() {
            Error::Timeout(timeout)
        } else if err.is_io_error() || err.is_connection_dropped() || err.is_connection_refusal() {
            Error::Connection(err)
        } else {
            Error::Redis(err)
        }
    }
}

impl Error {
    /// The server refused the credentials (a wrong or rotated password, a
    /// deleted user): a new connection may succeed once they are fixed.
    pub(crate) fn is_auth_failure(&self) -> bool {
        let (Error::Redis(err) | Error::Connection(err)) = self else {
            return false;
        };
        err.kind() == redis::ErrorKind::AuthenticationFailed
            || matches!(err.code(), Some("NOAUTH" | "WRONGPASS"))
    }

    /// The error from redis-rs underneath, when there is one.
    pub(crate) fn redis_error(&self) -> Option<&redis::RedisError> {
        match self {
            Error::Redis(err) | Error::Connection(err) => Some(err),
            _ => None,
        }
    }

    /// A `READONLY` reply: the server is a replica.
    pub(crate) fn is_read_only(&self) -> bool {
        matches!(self, Error::Redis(err)
            if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly))
    }
}

impl Error {
    /// What to do about an error that means the cache is misconfigured rather
    /// than briefly unavailable: a reply that will come back on every call
    /// until someone changes the configuration. `None` for other errors.
    pub(crate) fn misconfiguration(&self) -> Option<&'static str> {
        use redis::{ErrorKind, ServerErrorKind};
        let (Error::Redis(err) | Error::Connection(err)) = self else {
            return None;
        };
        Some(match err.kind() {
            // (A cluster store reports the redirections it cannot follow as
            // connection failures: a shard failing over.)
            ErrorKind::Server(ServerErrorKind::Moved | ServerErrorKind::Ask)
            | ErrorKind::Server(ServerErrorKind::CrossSlot)
                if matches!(self, Error::Redis(_)) =>
            {
                "the server is a Redis Cluster node: connect with Cache::connect_cluster"
            }
            ErrorKind::Server(ServerErrorKind::ReadOnly) => {
                "the server is a read-only replica (a failover may have demoted it): connect to \
                 the primary, or with Cache::connect_sentinel when Sentinel manages it"
            }
            ErrorKind::Server(ServerErrorKind::NoPerm) => {
                "the Redis user lacks a permission: grant it +@read +@write +@keyspace on the \
                 keys under each key_prefix (~prefix*)"
            }
            _ if self.is_auth_failure() => {
                "authentication failed: check the user and password of the URL against the \
                 server's (ACL) users; the connection is retried with backoff, so fixing either \
                 side resumes caching without a restart"
            }
            _ if err
                .detail()
                .is_some_and(|d| d.starts_with("unknown command")) =>
            {
                "the server does not know a command redis-memo needs: is it a Sentinel, or a \
                 proxy that filters commands?"
            }
            _ => return None,
        })
    }
}

/// `Result` with [`Error`](enum@Error) as the error type.
///
/// ```
/// fn check() -> redis_memo::Result<u64> {
///     Err(redis_memo::Error::EmptyPrefix)
/// }
/// assert!(check().is_err());
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;
