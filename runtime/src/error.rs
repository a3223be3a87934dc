//! The plugin runtime's errors: one type for loading, one for calling.

use std::time::Duration;

/// A plugin could not be loaded. Every message names the plugin.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The component file cannot be read.
    #[error("plugin `{plugin}`: cannot read {source_desc}: {reason}")]
    Read {
        /// The plugin's configured name.
        plugin: String,
        /// Where it was read from.
        source_desc: String,
        /// The I/O error.
        reason: String,
    },
    /// Not a valid component, or one this engine cannot compile.
    #[error("plugin `{plugin}`: not a valid WebAssembly component: {reason}")]
    Invalid {
        /// The plugin's configured name.
        plugin: String,
        /// What wasmtime said.
        reason: String,
    },
    /// Built against a `bindery:plugin` version this host does not speak.
    #[error(
        "plugin `{plugin}` was built against `{item}`, but this host implements bindery:plugin@{host_version} (and loads 0.1.0 components); rebuild it with a matching bindery-sdk"
    )]
    IncompatibleWit {
        /// The plugin's configured name.
        plugin: String,
        /// The import or export that carries the version.
        item: String,
        /// This host's WIT version.
        host_version: &'static str,
    },
    /// It imports something it was not granted, or that no plugin gets.
    #[error("plugin `{plugin}` imports `{import}`, which is not granted: {hint}")]
    ImportNotGranted {
        /// The plugin's configured name.
        plugin: String,
        /// The full import name.
        import: String,
        /// What to do about it.
        hint: String,
    },
    /// It implements none of the three worlds.
    #[error(
        "plugin `{plugin}` exports none of bindery:plugin's worlds (provider, build-strategy, cull-policy, pool-policy); it exports: {exports}"
    )]
    NoWorld {
        /// The plugin's configured name.
        plugin: String,
        /// What it does export.
        exports: String,
    },
    /// Its metadata contradicts what it exports or what the operator configured.
    #[error("plugin `{plugin}`: {reason}")]
    Rejected {
        /// The plugin's configured name.
        plugin: String,
        /// Why.
        reason: String,
    },
    /// Calling `metadata` (or a provider's `display`) failed.
    #[error("plugin `{plugin}`: metadata call failed: {source}")]
    Metadata {
        /// The plugin's configured name.
        plugin: String,
        /// The call's error.
        source: CallError,
    },
}

/// A call into a plugin failed. The plugin's own typed errors are not here:
/// they come back as the call's `Ok(Err(PluginError))`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// No plugin of that name and kind is loaded.
    #[error("no {kind} plugin named `{plugin}` is loaded")]
    NotLoaded {
        /// The name asked for.
        plugin: String,
        /// The kind asked for.
        kind: &'static str,
    },
    /// The call ran past its deadline (guest code or a host import).
    #[error("plugin `{plugin}` did not answer within {}ms", .after.as_millis())]
    Timeout {
        /// The plugin's name.
        plugin: String,
        /// The deadline.
        after: Duration,
    },
    /// No call slot freed up within the call's deadline.
    #[error(
        "plugin `{plugin}` had no free call slot within {}ms (plugin_runtime.max_calls_per_plugin and max_concurrent_calls); try again in a moment",
        .waited.as_millis()
    )]
    Busy {
        /// The plugin's name.
        plugin: String,
        /// How long the call waited.
        waited: Duration,
    },
    /// The plugin tried to grow its memory past the cap.
    #[error("plugin `{plugin}` exceeded its memory limit of {} MiB", .limit_bytes >> 20)]
    OutOfMemory {
        /// The plugin's name.
        plugin: String,
        /// The cap.
        limit_bytes: usize,
    },
    /// The plugins together held the whole shared memory budget.
    #[error(
        "plugin `{plugin}` could not get more memory: plugin calls together hold the whole plugin_runtime.memory_budget_mib ({} MiB); try again in a moment",
        .budget_bytes >> 20
    )]
    MemoryBudget {
        /// The plugin's name.
        plugin: String,
        /// The shared budget.
        budget_bytes: usize,
    },
    /// The plugin used up its instruction budget.
    #[error("plugin `{plugin}` ran out of fuel ({budget} units)")]
    OutOfFuel {
        /// The plugin's name.
        plugin: String,
        /// The budget.
        budget: u64,
    },
    /// The plugin trapped (a panic, an abort, a bug).
    #[error("plugin `{plugin}` crashed: {message}")]
    Trap {
        /// The plugin's name.
        plugin: String,
        /// The panic message where the plugin printed one, else the trap.
        message: String,
    },
}

/// An error and its sources, joined by `: `, each said once (libraries often
/// repeat their source's text in their own message).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for text in std::iter::successors(Some(e), |s| s.source()).map(ToString::to_string) {
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// A plugin's error in words for the person who launched the repository.
pub fn plugin_error_text(e: &crate::bindings::PluginError) -> String {
    use crate::bindings::PluginError;
    match e {
        PluginError::Upstream(u) => match u.status {
            Some(s) => format!("{} answered {s}: {}", u.service, u.message),
            None => format!("{}: {}", u.service, u.message),
        },
        PluginError::InvalidConfig(m) => format!("the provider is misconfigured: {m}"),
        PluginError::Internal(m) => format!("the provider failed: {m}"),
        PluginError::RateLimited(r) => r.message.clone(),
        PluginError::InvalidSpec(m)
        | PluginError::Banned(m)
        | PluginError::Unauthorized(m)
        | PluginError::NotFound(m) => m.clone(),
    }
}
