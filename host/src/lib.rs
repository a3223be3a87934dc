//! Bindery: a BinderHub whose repository providers, build strategies and cull
//! policies are sandboxed WebAssembly components.
//!
//! The crate is usable without the binary: [`config`] reads the configuration,
//! the plugin runtime is its own crate (`bindery_runtime`), [`pipeline`] holds
//! the launch steps (resolution first) over the sled [`cache`], [`api`] is the
//! HTTP surface, [`app`] builds every part and owns the background tasks, and
//! [`serve`] runs them until a signal.
#![deny(missing_docs)]

pub mod api;
pub mod app;
pub mod authoring;
pub mod build;
pub mod bundled;
pub mod cache;
pub mod cluster;
pub mod config;
pub mod cull;
pub mod edge;
pub mod event_log;
pub mod events;
pub mod federation;
pub mod health;
pub mod jupyterhub;
pub mod launch;
pub mod metrics;
pub mod pipeline;
pub mod registry;
pub mod serve;
pub mod simulate;

pub use bindery_runtime::now_ms;

/// Bindery's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
