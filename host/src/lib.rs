//! Bindery: a BinderHub whose repository providers, build strategies and cull
//! policies are sandboxed WebAssembly components.
//!
//! The crate is usable without the binary: [`config`] reads the configuration,
//! [`plugins`] runs plugins, [`pipeline`] holds the launch steps (resolution
//! first) over the sled [`cache`], [`api`] is the HTTP surface and [`serve`]
//! wires them together.
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
pub mod events;
pub mod health;
pub mod jupyterhub;
pub mod launch;
pub mod metrics;
pub mod pipeline;
pub mod registry;
pub mod serve;

/// Wall-clock milliseconds since the Unix epoch, as records and caches store time.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Bindery's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
