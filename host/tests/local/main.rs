//! The fast tier: everything but the real parts. Plugins are built and run
//! in the real runtime, providers talk to in-process forges and a local `git
//! daemon`, and the `bindery` binary is started and stopped; nothing needs
//! root, a container engine, a registry, a hub, a browser or Helm.

#[path = "../support/mod.rs"]
mod support;

mod authoring;
mod bundled;
mod content;
mod docs;
mod loading;
mod logs;
mod providers;
mod sandbox;
mod simulate;
mod strategy;
mod streams;
