//! The builder from the environment: `REDIS_CLUSTER_NODES`, then
//! `REDIS_SENTINELS` with `REDIS_SENTINEL_SERVICE`, then `REDIS_URL`.

use super::CacheBuilder;
use crate::error::Error;

/// The builder the environment describes, and where it points (for the log
/// line that says so); `None` when it names no Redis (cache in memory).
pub(in crate::cache) fn from_env() -> Result<Option<(CacheBuilder, &'static str)>, Error> {
    if let Some(nodes) = cluster_nodes_from_env()? {
        let builder = CacheBuilder::default().cluster_nodes(nodes);
        return Ok(Some((builder, "a Redis Cluster (REDIS_CLUSTER_NODES)")));
    }
    if let Some(builder) = sentinel_from_env()? {
        return Ok(Some((
            builder,
            "the primary Sentinel names (REDIS_SENTINELS)",
        )));
    }
    Ok(url_from_env()?.map(|url| (CacheBuilder::default().url(url), "Redis (REDIS_URL)")))
}

/// `REDIS_URL`: `None` when unset; an error when set but empty or not UTF-8.
fn url_from_env() -> Result<Option<String>, Error> {
    match std::env::var("REDIS_URL") {
        Ok(url) if url.trim().is_empty() => Err(Error::InvalidUrl {
            reason:
                "REDIS_URL is set but empty; set it to a Redis URL, or unset it to cache in memory"
                    .into(),
        }),
        Ok(url) => Ok(Some(url.trim().to_owned())),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::InvalidUrl {
            reason: "REDIS_URL is not valid UTF-8".into(),
        }),
    }
}

/// `REDIS_CLUSTER_NODES` (comma-separated seed URLs): `None` when unset; an
/// error when set but empty (no seed) or not UTF-8.
fn cluster_nodes_from_env() -> Result<Option<Vec<String>>, Error> {
    url_list_from_env("REDIS_CLUSTER_NODES", "seed URLs")
}

/// A comma-separated list of URLs in `var`: `None` when unset; an error when
/// set but empty or not UTF-8.
fn url_list_from_env(var: &str, what: &str) -> Result<Option<Vec<String>>, Error> {
    match std::env::var(var) {
        Ok(list) => {
            let nodes: Vec<String> = list
                .split(',')
                .map(str::trim)
                .filter(|node| !node.is_empty())
                .map(str::to_owned)
                .collect();
            if nodes.is_empty() {
                return Err(Error::InvalidUrl {
                    reason: format!(
                        "{var} is set but empty; set it to comma-separated {what}, or unset it"
                    ),
                });
            }
            Ok(Some(nodes))
        }
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::InvalidUrl {
            reason: format!("{var} is not valid UTF-8"),
        }),
    }
}

/// `REDIS_SENTINELS` (comma-separated Sentinel URLs) and
/// `REDIS_SENTINEL_SERVICE`, with `REDIS_URL` for the data nodes when set: a
/// builder, or `None` when neither is set; an error when only one is.
fn sentinel_from_env() -> Result<Option<CacheBuilder>, Error> {
    let sentinels = url_list_from_env("REDIS_SENTINELS", "Sentinel URLs")?;
    let service = std::env::var("REDIS_SENTINEL_SERVICE")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    let (sentinels, service) = match (sentinels, service) {
        (None, None) => return Ok(None),
        (Some(sentinels), Some(service)) => (sentinels, service),
        (Some(_), None) => {
            return Err(Error::InvalidUrl {
                reason: "REDIS_SENTINELS is set but REDIS_SENTINEL_SERVICE is not; set it to \
                         the service name the Sentinels monitor"
                    .into(),
            });
        }
        (None, Some(_)) => {
            return Err(Error::InvalidUrl {
                reason: "REDIS_SENTINEL_SERVICE is set but REDIS_SENTINELS is not; set it to \
                         comma-separated Sentinel URLs"
                    .into(),
            });
        }
    };
    let mut builder = CacheBuilder::default().sentinel(sentinels, service);
    if let Some(url) = url_from_env()? {
        builder = builder.url(url);
    }
    Ok(Some(builder))
}
