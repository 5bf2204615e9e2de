//! Test support for redis-memo's own tests, benches and CLI tests (not
//! published): real `redis-server` processes started on free ports in
//! temporary directories with persistence off ([`TestRedis`], over TLS with
//! [`TestRedis::spawn_tls`] and [`TestCerts`]), a Redis Cluster
//! ([`TestCluster`]) and a Sentinel setup ([`TestSentinel`]), the backend
//! under test ([`Harness`], [`on_both_backends!`]) with key prefixes of its
//! own per test, reference encoders written from the documented key encoding
//! independently of the crate ([`reference`](mod@reference)), log capture ([`Logs`]),
//! reads through a local tier ([`tier`]), and a TCP relay that can freeze a
//! connection without closing it ([`TcpRelay`]); and a cached function
//! whose helpers another crate cannot use ([`other_crate`]).
//! No mocks.

mod cluster;
mod harness;
mod logs;
pub mod other_crate;
mod poll;
mod process;
pub mod race;
pub mod reference;
mod relay;
mod sentinel;
mod server;
pub mod tier;
mod tls;

/// Six cluster nodes (three primaries, three replicas) and what a test does with them.
pub use cluster::{ClusterNode, NodeRole, TestCluster};
pub use harness::Harness;
pub use logs::Logs;
pub use poll::{command_counts, until};
pub use relay::TcpRelay;
/// A primary, a replica and three sentinels.
pub use sentinel::TestSentinel;
pub use server::TestRedis;
/// Run-time certificates and TLS servers.
pub use tls::{CertFiles, TestCerts, TlsOptions, tls_supported};

/// Runs each behaviour `async fn name(h: &Harness)` twice: on a Redis the
/// test starts and on the in-memory backend.
///
/// ```ignore
/// on_both_backends! {
///     #[tokio::test]
///     hit_vs_miss, values_are_json,
/// }
/// ```
#[macro_export]
macro_rules! on_both_backends {
    (#[$test:meta] $($name:ident),* $(,)?) => {
        mod redis {
            $(
                #[$test]
                async fn $name() {
                    super::$name(&$crate::Harness::redis().await).await;
                }
            )*
        }
        mod memory {
            $(
                #[$test]
                async fn $name() {
                    super::$name(&$crate::Harness::memory()).await;
                }
            )*
        }
    };
}
