//! Bindery: a BinderHub whose repository providers, build strategies and cull
//! policies are sandboxed WebAssembly components.
//!
//! The crate is usable without the binary: [`config`] reads the configuration,
//! [`plugins`] runs plugins, [`api`] is the HTTP surface and [`serve`] wires
//! them together.
#![deny(missing_docs)]

pub mod api;
pub mod authoring;
pub mod config;
pub mod plugins;
pub mod serve;

/// Bindery's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
