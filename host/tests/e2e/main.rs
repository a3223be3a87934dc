//! The tier that needs the real parts: a Docker engine, an OCI registry,
//! JupyterHub, Chromium and Helm, installed and started by `scripts/`. One
//! binary, so each part is started once per run and shared. Built only with
//! the `e2e` feature (`scripts/test` turns it on).

#[path = "../support/mod.rs"]
mod support;

mod api;
mod browser;
mod builds;
mod chart;
mod compat;
mod cull;
mod data;
mod federation;
mod image;
mod kubernetes;
mod launch;
mod login;
mod oci;
mod private;
mod quickstart;
mod registry;
mod security;
