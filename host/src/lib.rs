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
pub mod cache;
pub mod cluster;
pub mod config;
pub mod cull;
pub mod egress;
pub mod events;
pub mod health;
pub mod jupyterhub;
pub mod launch;
pub mod metrics;
pub mod pipeline;
pub mod plugins;
pub mod registry;
pub mod serve;

/// Wall-clock milliseconds since the Unix epoch, as records and caches store time.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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

/// Bindery's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
