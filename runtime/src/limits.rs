//! Per-call resource limits.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// The memory of every live plugin call together: guests' linear memory
/// and the host's buffers for them (HTTP response bodies). Growth past it is
/// refused, so `max_concurrent_calls` × `memory_limit_mib` can be larger
/// than what the host can hold without the host ever holding more.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// The budget in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held by live calls.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// Why a call's memory could not grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Past the plugin's own `memory_limit_mib`.
    Own,
    /// The plugins together hold the whole shared budget.
    Shared,
}

/// The store's limiter: the call's own cap, and its share of the budget,
/// given back when the store is dropped. A refusal is recorded so the
/// call's error can say which limit it hit rather than the generic trap the
/// guest turns it into.
#[derive(Debug)]
pub(crate) struct CallLimits {
    memory_bytes: usize,
    budget: Arc<MemoryBudget>,
    /// Guest linear memory granted.
    linear: usize,
    /// Host buffers held for the call.
    host: usize,
    pub(crate) memory_refused: Option<Refused>,
}

impl CallLimits {
    pub(crate) fn new(limits: &Limits, budget: Arc<MemoryBudget>) -> Self {
        CallLimits {
            memory_bytes: limits.memory_bytes,
            budget,
            linear: 0,
            host: 0,
            memory_refused: None,
        }
    }

    /// Takes `more` bytes of the call's and the shared budget.
    fn grow(&mut self, more: usize) -> Result<(), Refused> {
        let refused = if self.linear + self.host + more > self.memory_bytes {
            Refused::Own
        } else if self.budget.take(more) {
            return Ok(());
        } else {
            Refused::Shared
        };
        self.memory_refused.get_or_insert(refused);
        Err(refused)
    }

    /// Counts a host buffer of `bytes` for this call (kept until it ends).
    pub(crate) fn hold(&mut self, bytes: usize) -> Result<(), Refused> {
        self.grow(bytes)?;
        self.host += bytes;
        Ok(())
    }
}

impl Drop for CallLimits {
    fn drop(&mut self) {
        self.budget.give_back(self.linear + self.host);
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
        let more = desired.saturating_sub(self.linear);
        if let Err(refused) = self.grow(more) {
            // An error traps at once; returning false would let the guest
            // abort with an unexplained `unreachable`.
            wasmtime::bail!("memory refused ({refused:?}) growing to {desired} bytes");
        }
        self.linear = self.linear.max(desired);
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
