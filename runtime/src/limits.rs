//! Per-call resource limits.

use std::time::Duration;

use wasmtime::ResourceLimiter;

use crate::config::{PluginConfig, RuntimeConfig};

/// The limits of one plugin's calls, from the runtime defaults and its overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear-memory cap in bytes.
    pub memory_bytes: usize,
    /// Wall-clock deadline of a call.
    pub timeout: Duration,
    /// Instruction budget, where fuel metering is on.
    pub fuel: Option<u64>,
    /// Calls at once.
    pub calls: usize,
}

impl Limits {
    /// The limits of a plugin configured as `plugin`.
    pub fn for_plugin(runtime: &RuntimeConfig, plugin: &PluginConfig) -> Self {
        Limits {
            memory_bytes: (plugin.memory_limit_mib.unwrap_or(runtime.memory_limit_mib) << 20)
                as usize,
            timeout: Duration::from_millis(
                plugin.call_timeout_ms.unwrap_or(runtime.call_timeout_ms),
            ),
            fuel: plugin.fuel.or(runtime.fuel),
            calls: runtime.max_calls_per_plugin,
        }
    }
}

/// The store's limiter. It records a refused growth so the call's error can
/// say "out of memory" rather than the generic trap the guest turns it into.
#[derive(Debug)]
pub(crate) struct CallLimits {
    memory_bytes: usize,
    pub(crate) memory_refused: Option<usize>,
}

impl CallLimits {
    pub(crate) fn new(limits: &Limits) -> Self {
        CallLimits {
            memory_bytes: limits.memory_bytes,
            memory_refused: None,
        }
    }
}

/// Tables beyond this many elements are refused; Rust guests use a handful.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for CallLimits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.memory_refused = Some(desired);
            // An error traps at once; returning false would let the guest
            // abort with an unexplained `unreachable`.
            wasmtime::bail!(
                "memory limit of {} bytes reached (asked for {desired})",
                self.memory_bytes
            );
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        32
    }
    fn tables(&self) -> usize {
        32
    }
    fn memories(&self) -> usize {
        32
    }
}
