//! The plugin runtime: a wasmtime engine with deadlines and memory caps, host
//! imports as capabilities granted per plugin, a compiled-code cache on disk,
//! and the registry of loaded plugins.
//!
//! Every call runs in a fresh store and instance made from a pre-linked
//! `InstancePre`; nothing a plugin does survives its call, and a trap costs
//! only that call.

pub mod bindings;
pub mod bundled;
mod calls;
pub mod capabilities;
pub mod engine;
pub mod error;
pub mod host;
pub mod limits;
pub mod loader;
pub mod oci;

pub use capabilities::{Capability, DirRepo, RepoFiles};
pub use engine::{CompileOutcome, Runtime};
pub use error::{CallError, LoadError};
pub use host::{PluginHost, Reloaded};
pub use loader::{LoadedPlugin, WIT_VERSION, kind_name};
