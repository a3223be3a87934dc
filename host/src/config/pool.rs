//! `[warm_pool]`: servers started ahead of demand for the images launched most.

use serde::{Deserialize, Serialize};

/// The warm pool: how many servers at most, which policy sizes it per image,
/// and how launches are counted.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct WarmPoolConfig {
    /// Servers kept started across all images; 0 turns the pool off.
    pub max_servers: u32,
    /// The pool-policy plugin that decides how many each image gets.
    pub policy: String,
    /// A launch counts half as much after this long, a quarter after twice it.
    pub half_life_secs: u64,
    /// Seconds between the pool's passes over the hub.
    pub every_secs: u64,
    /// Images whose launches are remembered; the least launched are forgotten.
    pub max_images: usize,
    /// The hub group of the pool's users; one handed to a launch moves to
    /// `hub.users_group`, and the culler treats it like any launch.
    pub group: String,
}

impl Default for WarmPoolConfig {
    fn default() -> Self {
        WarmPoolConfig {
            max_servers: 0,
            policy: "popular".into(),
            half_life_secs: 1800,
            every_secs: 5,
            max_images: 1000,
            group: "binder-pool".into(),
        }
    }
}
