//! Logging under the crate's name: every event and span of redis-memo has the
//! target `redis_memo`, whichever module emits it, so that
//! `RUST_LOG=redis_memo=debug` (an `EnvFilter` directive) selects all of them.

/// The target of every event and span.
pub(crate) const TARGET: &str = "redis_memo";

macro_rules! warning {
    ($($arg:tt)+) => { ::tracing::warn!(target: $crate::log::TARGET, $($arg)+) };
}

macro_rules! info {
    ($($arg:tt)+) => { ::tracing::info!(target: $crate::log::TARGET, $($arg)+) };
}

macro_rules! debug {
    ($($arg:tt)+) => { ::tracing::debug!(target: $crate::log::TARGET, $($arg)+) };
}

macro_rules! error {
    ($($arg:tt)+) => { ::tracing::error!(target: $crate::log::TARGET, $($arg)+) };
}

pub(crate) use {debug, error, info, warning};
