//! The Sentinel side of the builder: redis-rs's Sentinel client from the
//! builder's URLs and certificates.

use super::url::{TlsFiles, check_scheme, open_client};
use super::{CacheBuilder, SentinelSpec};
use crate::error::Error;
use crate::store::SentinelConnector;

impl CacheBuilder {
    /// redis-rs's Sentinel client for `spec`, with this builder's data-node
    /// URL and certificates, and a client per Sentinel (for their events).
    pub(super) fn sentinel_connector(
        &self,
        spec: &SentinelSpec,
    ) -> Result<(SentinelConnector, Vec<redis::Client>), Error> {
        use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
        let invalid = |reason: String| Error::InvalidUrl { reason };
        if spec.sentinels.is_empty() {
            return Err(invalid("Sentinel needs at least one Sentinel URL".into()));
        }
        if spec.service.is_empty() {
            return Err(invalid(
                "the Sentinel service name is empty; give the name of `sentinel monitor <name> \
                 ...` in sentinel.conf"
                    .into(),
            ));
        }
        let no_certificates = TlsFiles::default();
        let tls_for = |url: &str| {
            if url.starts_with("rediss://") {
                &self.tls
            } else {
                &no_certificates
            }
        };
        let mut sentinels = Vec::with_capacity(spec.sentinels.len());
        for url in &spec.sentinels {
            check_scheme(url, false)?;
            sentinels.push(open_client(url, tls_for(url))?);
        }
        let data_node = match &self.url {
            Some(url) => Some(
                open_client(url, tls_for(url))?
                    .get_connection_info()
                    .clone(),
            ),
            None => None,
        };
        let tls_mode = |addr: &redis::ConnectionAddr| match addr {
            redis::ConnectionAddr::TcpTls { insecure: true, .. } => Some(redis::TlsMode::Insecure),
            redis::ConnectionAddr::TcpTls { .. } => Some(redis::TlsMode::Secure),
            _ => None,
        };
        let data_tls = match &data_node {
            Some(info) => tls_mode(info.addr()),
            None => tls_mode(sentinels[0].get_connection_info().addr()),
        };
        let addrs = sentinels
            .iter()
            .map(|client| client.get_connection_info().addr().clone());
        let mut builder =
            SentinelClientBuilder::new(addrs, &spec.service, SentinelServerType::Master)
                .map_err(|err| invalid(err.to_string()))?;
        let sentinel_auth = sentinels[0].get_connection_info().redis_settings();
        if let Some(user) = sentinel_auth.username() {
            builder = builder.set_client_to_sentinel_username(user);
        }
        if let Some(password) = sentinel_auth.password() {
            builder = builder.set_client_to_sentinel_password(password);
        }
        if let Some(mode) = data_tls {
            builder = builder.set_client_to_redis_tls_mode(mode);
            #[cfg(feature = "tls")]
            if self.tls.ca.is_some() || self.tls.client.is_some() {
                builder = builder.set_client_to_redis_certificates(self.tls.certificates());
            }
        }
        if let Some(info) = &data_node {
            let settings = info.redis_settings();
            builder = builder.set_client_to_redis_db(settings.db());
            if let Some(user) = settings.username() {
                builder = builder.set_client_to_redis_username(user);
            }
            if let Some(password) = settings.password() {
                builder = builder.set_client_to_redis_password(password);
            }
        }
        let resolver = builder.build().map_err(|err| invalid(err.to_string()))?;
        let connector = SentinelConnector::new(
            resolver,
            spec.service.clone(),
            sentinels.clone(),
            self.connection_config(),
            self.connect_timeout,
            self.response_timeout,
        );
        Ok((connector, sentinels))
    }
}
