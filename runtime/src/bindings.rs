//! Host-side bindings for the worlds of `wit/`.
//!
//! The provider world generates the shared types and host interfaces once; the
//! other two worlds reuse them through `with`, so a `PluginError` is one Rust
//! type whichever world produced it.

/// The provider world.
#[allow(missing_docs)]
pub mod provider {
    wasmtime::component::bindgen!({
        world: "provider",
        path: "../sdk/wit",
        imports: {
            "bindery:plugin/http.fetch": async,
            "bindery:plugin/git.ls-remote": async,
            "bindery:plugin/git.ls-remote-authenticated": async,
        },
        exports: { default: async },
        // `bindery plugin call` reads arguments and prints answers as JSON.
        additional_derives: [serde::Serialize, serde::Deserialize],
    });
}

/// A world that reuses the provider world's shared types and host interfaces.
macro_rules! world_sharing_types {
    ($world:literal) => {
        wasmtime::component::bindgen!({
            world: $world,
            path: "../sdk/wit",
            exports: { default: async },
            additional_derives: [serde::Serialize, serde::Deserialize],
            with: {
                "bindery:plugin/types": crate::bindings::provider::bindery::plugin::types,
                "bindery:plugin/log": crate::bindings::provider::bindery::plugin::log,
                "bindery:plugin/clock": crate::bindings::provider::bindery::plugin::clock,
                "bindery:plugin/config": crate::bindings::provider::bindery::plugin::config,
            },
        });
    };
}

/// The build-strategy world.
#[allow(missing_docs)]
pub mod build_strategy {
    world_sharing_types!("build-strategy");
}

/// The cull-policy world.
#[allow(missing_docs)]
pub mod cull_policy {
    world_sharing_types!("cull-policy");
}

/// The pool-policy world.
#[allow(missing_docs)]
pub mod pool_policy {
    world_sharing_types!("pool-policy");
}

/// `plugin-metadata` as `bindery:plugin@0.1.0` has it. wasmtime matches
/// enum cases by name, and 0.1's `plugin-kind` has no `pool-policy`, so a
/// 0.1 component's metadata is read with these types.
pub(crate) mod v0_1 {
    use wasmtime::component::{ComponentType, Lift};

    use super::{CapabilityRequests, PluginKind as Current, PluginMetadata as CurrentMetadata};

    #[derive(ComponentType, Lift, Clone, Copy)]
    #[allow(dead_code, reason = "built only by `Lift`, from a component's answer")]
    #[component(enum)]
    #[repr(u8)]
    pub(crate) enum PluginKind {
        #[component(name = "provider")]
        Provider,
        #[component(name = "build-strategy")]
        BuildStrategy,
        #[component(name = "cull-policy")]
        CullPolicy,
    }

    #[derive(ComponentType, Lift)]
    #[component(record)]
    pub(crate) struct PluginMetadata {
        #[component(name = "name")]
        name: String,
        #[component(name = "version")]
        version: String,
        #[component(name = "kind")]
        kind: PluginKind,
        #[component(name = "description")]
        description: String,
        #[component(name = "requests")]
        requests: CapabilityRequests,
    }

    impl From<PluginMetadata> for CurrentMetadata {
        fn from(m: PluginMetadata) -> CurrentMetadata {
            CurrentMetadata {
                name: m.name,
                version: m.version,
                kind: match m.kind {
                    PluginKind::Provider => Current::Provider,
                    PluginKind::BuildStrategy => Current::BuildStrategy,
                    PluginKind::CullPolicy => Current::CullPolicy,
                },
                description: m.description,
                requests: m.requests,
            }
        }
    }
}

pub use build_strategy::exports::bindery::plugin::build_strategy_plugin::{
    BuildPlan, ContainerEngine, EnvironmentImage, Executor, LayerPlan, Repo2dockerPlan, RepoFacts,
    ResourceLimits,
};
pub use cull_policy::exports::bindery::plugin::cull_policy_plugin::{
    Decision, Server, ServerState,
};
pub use pool_policy::exports::bindery::plugin::pool_policy_plugin::{ImageDemand, PoolBounds};
pub use provider::bindery::plugin::types::{
    CapabilityRequests, ConfigKey, LogLevel, PluginError, PluginKind, PluginMetadata, RateLimit,
    UpstreamFailure,
};
pub use provider::bindery::plugin::{git, http, secrets};
pub use provider::exports::bindery::plugin::repo_provider::{
    BasicAuth, ContentSource, Credential, DisplayConfig, Download, FilesContent, GitContent,
    HeaderAuth, Notice, RefFallback, RefLifetime, Resolution, SwhVaultContent, Unpack,
};
