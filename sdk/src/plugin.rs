//! The plugin traits and the adapters that connect them to the generated exports.

use std::marker::PhantomData;

use crate::bindings::{build_strategy as bs, cull_policy as cp, pool_policy as pp, provider as pv};
use crate::build_strategy::{BuildPlan, RepoFacts};
use crate::context::{BuildStrategyContext, Context, HostContext, ProviderContext};
use crate::cull_policy::{Decision, Server};
use crate::pool_policy::{ImageDemand, PoolBounds};
use crate::provider::{ContentSource, DisplayConfig, Resolution};
use crate::types::{PluginError, PluginMetadata};

/// A repository provider: turns a launch spec into an immutable revision.
pub trait Provider {
    /// Name, version, kind and requested capabilities. Must not call the host.
    fn metadata() -> PluginMetadata;
    /// What the launch form shows for this provider.
    fn display_config() -> DisplayConfig;
    /// Resolves the spec (the launch URL after the provider prefix).
    fn resolve(ctx: &impl ProviderContext, spec: &str) -> Result<Resolution, PluginError>;
    /// How the host fetches a resolution this provider returned, when an
    /// image must be built. The default fetches `repo_url` with git at
    /// `resolved_ref`, anonymously.
    fn content(
        ctx: &impl ProviderContext,
        resolution: Resolution,
    ) -> Result<ContentSource, PluginError> {
        let _ = ctx;
        Ok(ContentSource::git_at(&resolution))
    }
}

/// A build strategy: decides how a resolved repository is built.
pub trait BuildStrategy {
    /// Name, version, kind and requested capabilities. Must not call the host.
    fn metadata() -> PluginMetadata;
    /// Plans the build of the repository described by `facts`.
    fn plan(ctx: &impl BuildStrategyContext, facts: RepoFacts) -> Result<BuildPlan, PluginError>;
}

/// A cull policy: decides which running servers to stop.
pub trait CullPolicy {
    /// Name, version, kind and requested capabilities. Must not call the host.
    fn metadata() -> PluginMetadata;
    /// One decision per server, in order.
    fn decide(
        ctx: &impl Context,
        now_ms: u64,
        servers: Vec<Server>,
    ) -> Result<Vec<Decision>, PluginError>;
}

/// A pool policy: decides how many started servers to keep ready for each
/// image launched recently.
pub trait PoolPolicy {
    /// Name, version, kind and requested capabilities. Must not call the host.
    fn metadata() -> PluginMetadata;
    /// How many servers to keep for each image, one number per image, in
    /// order. The host trims the total to `bounds`, taking from the images
    /// launched least first, so a policy need not.
    fn sizes(
        ctx: &impl Context,
        now_ms: u64,
        bounds: PoolBounds,
        images: Vec<ImageDemand>,
    ) -> Result<Vec<u32>, PluginError>;
}

/// Connects a [`Provider`] to the provider world's exports.
#[doc(hidden)]
pub struct ProviderAdapter<T>(PhantomData<T>);

impl<T: Provider> pv::exports::bindery::plugin::repo_provider::Guest for ProviderAdapter<T> {
    fn metadata() -> PluginMetadata {
        T::metadata()
    }
    fn display() -> DisplayConfig {
        T::display_config()
    }
    fn resolve(spec: String) -> Result<Resolution, PluginError> {
        T::resolve(&HostContext, &spec)
    }
    fn content(resolution: Resolution) -> Result<ContentSource, PluginError> {
        T::content(&HostContext, resolution)
    }
}

/// Connects a [`BuildStrategy`] to the build-strategy world's exports.
#[doc(hidden)]
pub struct BuildStrategyAdapter<T>(PhantomData<T>);

impl<T: BuildStrategy> bs::exports::bindery::plugin::build_strategy_plugin::Guest
    for BuildStrategyAdapter<T>
{
    fn metadata() -> PluginMetadata {
        T::metadata()
    }
    fn plan(facts: RepoFacts) -> Result<BuildPlan, PluginError> {
        T::plan(&HostContext, facts)
    }
}

/// Connects a [`CullPolicy`] to the cull-policy world's exports.
#[doc(hidden)]
pub struct CullPolicyAdapter<T>(PhantomData<T>);

impl<T: CullPolicy> cp::exports::bindery::plugin::cull_policy_plugin::Guest
    for CullPolicyAdapter<T>
{
    fn metadata() -> PluginMetadata {
        T::metadata()
    }
    fn decide(now_ms: u64, servers: Vec<Server>) -> Result<Vec<Decision>, PluginError> {
        T::decide(&HostContext, now_ms, servers)
    }
}

/// Connects a [`PoolPolicy`] to the pool-policy world's exports.
#[doc(hidden)]
pub struct PoolPolicyAdapter<T>(PhantomData<T>);

impl<T: PoolPolicy> pp::exports::bindery::plugin::pool_policy_plugin::Guest
    for PoolPolicyAdapter<T>
{
    fn metadata() -> PluginMetadata {
        T::metadata()
    }
    fn sizes(
        now_ms: u64,
        bounds: PoolBounds,
        images: Vec<ImageDemand>,
    ) -> Result<Vec<u32>, PluginError> {
        T::sizes(&HostContext, now_ms, bounds, images)
    }
}

// The exports exist only in the wasm component: native builds (the plugin's
// own `cargo test`) would otherwise hand the linker symbol names like
// `bindery:plugin/repo-provider@0.2.0#resolve`, which it rejects.

/// Exports a [`Provider`] implementation as the component's provider world.
#[macro_export]
macro_rules! export_provider {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        type __BinderyProviderExport = $crate::ProviderAdapter<$plugin>;
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::provider::__export_provider!(
            __BinderyProviderExport with_types_in $crate::bindings::provider
        );
    };
}

/// Exports a [`BuildStrategy`] implementation as the component's build-strategy world.
#[macro_export]
macro_rules! export_build_strategy {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        type __BinderyBuildStrategyExport = $crate::BuildStrategyAdapter<$plugin>;
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::build_strategy::__export_build_strategy!(
            __BinderyBuildStrategyExport with_types_in $crate::bindings::build_strategy
        );
    };
}

/// Exports a [`CullPolicy`] implementation as the component's cull-policy world.
#[macro_export]
macro_rules! export_cull_policy {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        type __BinderyCullPolicyExport = $crate::CullPolicyAdapter<$plugin>;
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::cull_policy::__export_cull_policy!(
            __BinderyCullPolicyExport with_types_in $crate::bindings::cull_policy
        );
    };
}

/// Exports a [`PoolPolicy`] implementation as the component's pool-policy world.
#[macro_export]
macro_rules! export_pool_policy {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        type __BinderyPoolPolicyExport = $crate::PoolPolicyAdapter<$plugin>;
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::pool_policy::__export_pool_policy!(
            __BinderyPoolPolicyExport with_types_in $crate::bindings::pool_policy
        );
    };
}
