//! Capturing what redis-memo logs, to assert on it.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// A log sink for a `tracing_subscriber::fmt` subscriber, read back by tests.
///
/// `Logs::capture(level)` gives the sink and a `Dispatch` writing to it:
/// install it with `tracing::dispatcher::set_default(&dispatch)` around the
/// calls to observe.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// A sink and a subscriber writing every event up to `level` to it,
    /// without colours.
    pub fn capture(level: tracing::Level) -> (Logs, tracing::Dispatch) {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(level)
            .finish();
        (logs, tracing::Dispatch::new(subscriber))
    }

    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }

    /// The lines at `WARN` level.
    pub fn warnings(&self) -> Vec<String> {
        self.text()
            .lines()
            .filter(|line| line.contains("WARN"))
            .map(str::to_owned)
            .collect()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
