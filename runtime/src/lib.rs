//! The plugin runtime: a wasmtime engine with deadlines and memory caps, host
//! imports as capabilities granted per plugin, a compiled-code cache on disk,
//! and the registry of loaded plugins.
//!
//! Every call runs in a fresh store and instance made from a pre-linked
//! `InstancePre`; nothing a plugin does survives its call, and a trap costs
//! only that call.
//!
//! This crate knows nothing of the service around it: it reads only its own
//! configuration ([`config`]), through [`PluginSettings`], and the components
//! the embedder bundles. The `bindery` host loads its plugins with it.
#![deny(missing_docs)]

pub mod bindings;
mod calls;
pub mod capabilities;
pub mod config;
pub mod download;
pub mod egress;
pub mod engine;
mod engine_config;
pub mod error;
pub mod gitwire;
pub mod host;
pub mod limits;
pub mod loader;
pub mod oci;
pub mod plugin;

/// Wall-clock milliseconds since the Unix epoch: what the `clock` capability
/// tells plugins by default, and how the host stamps its records.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What the `clock` capability tells plugins.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The wall clock ([`now_ms`]).
    #[default]
    System,
    /// Whatever the embedder sets: `bindery simulate` replays a day of
    /// launches on a virtual clock, and a policy that reads the time must
    /// read that day's, as it would have in service.
    Virtual(std::sync::Arc<std::sync::atomic::AtomicU64>),
}

impl Clock {
    /// Milliseconds since the Unix epoch, by this clock.
    pub fn now_ms(&self) -> u64 {
        match self {
            Clock::System => now_ms(),
            Clock::Virtual(ms) => ms.load(std::sync::atomic::Ordering::SeqCst),
        }
    }
}

pub use capabilities::{Capability, DirRepo, RepoFiles};
pub use engine::Runtime;
pub use error::{CallError, LoadError, error_chain, plugin_error_text};
pub use host::{PluginHost, PluginSettings, Reloaded};
pub use loader::WIT_VERSION;
pub use plugin::{CompileOutcome, LoadedPlugin, WitVersion, kind_name};
