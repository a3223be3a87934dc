//! The always-granted capabilities: `log`, `clock` and `config`.

use super::CallState;
use crate::bindings::LogLevel;
use crate::bindings::provider::bindery::plugin::{clock, config, log};

/// Log lines one call may write; more would let a plugin flood the host's log.
const MAX_LOG_LINES_PER_CALL: u32 = 1_000;
/// Longer messages are cut.
const MAX_LOG_LINE_BYTES: usize = 4_096;

impl log::Host for CallState {
    fn log(&mut self, level: LogLevel, message: String) {
        self.log_lines += 1;
        if self.log_lines > MAX_LOG_LINES_PER_CALL {
            if self.log_lines == MAX_LOG_LINES_PER_CALL + 1 {
                tracing::warn!(plugin = %self.plugin, "log limit of {MAX_LOG_LINES_PER_CALL} lines per call reached; dropping the rest");
            }
            return;
        }
        let message = truncate(&message, MAX_LOG_LINE_BYTES);
        let plugin = &*self.plugin;
        match level {
            LogLevel::Trace => tracing::trace!(plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            LogLevel::Info => tracing::info!(plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            LogLevel::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl clock::Host for CallState {
    fn now_ms(&mut self) -> u64 {
        self.clock.now_ms()
    }
}

impl config::Host for CallState {
    fn get(&mut self, key: String) -> Option<String> {
        self.grants.config.get(&key).cloned()
    }
}
