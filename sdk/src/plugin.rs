//! The plugin traits and the adapters that connect them to the generated exports.

use std::marker::PhantomData;

use crate::bindings::{build_strategy as bs, cull_policy as cp, pool_policy as pp, provider as pv};
use crate::build_strategy::{BuildPlan, RepoFacts};
use crate::config::PluginConfig;
use crate::context::{BuildStrategyContext, Context, HostContext, ProviderContext};
use crate::cull_policy::{Decision, Server};
use crate::pool_policy::{ImageDemand, PoolBounds};
use crate::provider::{ContentSource, DisplayConfig, Resolution};
use crate::types::{CapabilityRequests, ConfigKey, PluginError, PluginKind, PluginMetadata};

/// The plugin crate's `Cargo.toml`, which its metadata comes from: read in
/// the plugin's crate by [`package!`](crate::package!).
#[derive(Debug, Clone, Copy)]
pub struct Package {
    /// `bindery-plugin-<name>` or `<name>`.
    pub name: &'static str,
    /// The crate's version.
    pub version: &'static str,
    /// The crate's description.
    pub description: &'static str,
}

impl Package {
    /// The metadata of a `kind` plugin from this crate with these requests.
    /// Its name is the crate's without the `bindery-plugin-` prefix.
    pub fn metadata(
        self,
        kind: PluginKind,
        hosts: &[&str],
        secrets: &[&str],
        config_keys: Vec<ConfigKey>,
    ) -> PluginMetadata {
        let owned = |list: &[&str]| list.iter().map(ToString::to_string).collect();
        PluginMetadata {
            name: self
                .name
                .strip_prefix("bindery-plugin-")
                .unwrap_or(self.name)
                .into(),
            version: self.version.into(),
            kind,
            description: self.description.into(),
            requests: CapabilityRequests {
                hosts: owned(hosts),
                config_keys,
                secrets: owned(secrets),
            },
        }
    }
}

/// The [`Package`] of the crate it is used in.
#[macro_export]
macro_rules! package {
    () => {
        $crate::Package {
            name: ::std::env!("CARGO_PKG_NAME"),
            version: ::std::env!("CARGO_PKG_VERSION"),
            description: ::std::env!("CARGO_PKG_DESCRIPTION"),
        }
    };
}

/// A plugin crate's [`Package`], as a type: the export macros make one.
#[doc(hidden)]
pub trait PackageInfo {
    const PACKAGE: Package;
}

/// A repository provider: turns a launch spec into an immutable revision.
pub trait Provider {
    /// Its configuration: a [`config!`](crate::config!) struct, or `()`.
    type Config: PluginConfig;
    /// Hosts it reaches through `http` and `git`: `api.github.com`,
    /// `*.zenodo.org`, or `*` for one that follows any URL.
    const HOSTS: &'static [&'static str] = &[];
    /// Secrets it reads by name (each one the operator may grant).
    const SECRETS: &'static [&'static str] = &[];
    /// Name, version and description from the crate's `Cargo.toml`, and
    /// the requests: [`Provider::HOSTS`], [`Provider::SECRETS`] and the
    /// config's keys.
    fn metadata(package: Package) -> PluginMetadata {
        let keys = Self::Config::keys();
        package.metadata(PluginKind::Provider, Self::HOSTS, Self::SECRETS, keys)
    }
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
    /// Its configuration: a [`config!`](crate::config!) struct, or `()`.
    type Config: PluginConfig;
    /// Name, version and description from the crate's `Cargo.toml`, and
    /// the config's keys.
    fn metadata(package: Package) -> PluginMetadata {
        package.metadata(PluginKind::BuildStrategy, &[], &[], Self::Config::keys())
    }
    /// Plans the build of the repository described by `facts`.
    fn plan(ctx: &impl BuildStrategyContext, facts: RepoFacts) -> Result<BuildPlan, PluginError>;
}

/// A cull policy: decides which running servers to stop.
pub trait CullPolicy {
    /// Its configuration: a [`config!`](crate::config!) struct, or `()`.
    type Config: PluginConfig;
    /// Name, version and description from the crate's `Cargo.toml`, and
    /// the config's keys.
    fn metadata(package: Package) -> PluginMetadata {
        package.metadata(PluginKind::CullPolicy, &[], &[], Self::Config::keys())
    }
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
    /// Its configuration: a [`config!`](crate::config!) struct, or `()`.
    type Config: PluginConfig;
    /// Name, version and description from the crate's `Cargo.toml`, and
    /// the config's keys.
    fn metadata(package: Package) -> PluginMetadata {
        package.metadata(PluginKind::PoolPolicy, &[], &[], Self::Config::keys())
    }
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
pub struct ProviderAdapter<T, P>(PhantomData<(T, P)>);

impl<T: Provider, P: PackageInfo> pv::exports::bindery::plugin::repo_provider::Guest
    for ProviderAdapter<T, P>
{
    fn metadata() -> PluginMetadata {
        T::metadata(P::PACKAGE)
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
pub struct BuildStrategyAdapter<T, P>(PhantomData<(T, P)>);

impl<T: BuildStrategy, P: PackageInfo> bs::exports::bindery::plugin::build_strategy_plugin::Guest
    for BuildStrategyAdapter<T, P>
{
    fn metadata() -> PluginMetadata {
        T::metadata(P::PACKAGE)
    }
    fn plan(facts: RepoFacts) -> Result<BuildPlan, PluginError> {
        T::plan(&HostContext, facts)
    }
}

/// Connects a [`CullPolicy`] to the cull-policy world's exports.
#[doc(hidden)]
pub struct CullPolicyAdapter<T, P>(PhantomData<(T, P)>);

impl<T: CullPolicy, P: PackageInfo> cp::exports::bindery::plugin::cull_policy_plugin::Guest
    for CullPolicyAdapter<T, P>
{
    fn metadata() -> PluginMetadata {
        T::metadata(P::PACKAGE)
    }
    fn decide(now_ms: u64, servers: Vec<Server>) -> Result<Vec<Decision>, PluginError> {
        T::decide(&HostContext, now_ms, servers)
    }
}

/// Connects a [`PoolPolicy`] to the pool-policy world's exports.
#[doc(hidden)]
pub struct PoolPolicyAdapter<T, P>(PhantomData<(T, P)>);

impl<T: PoolPolicy, P: PackageInfo> pp::exports::bindery::plugin::pool_policy_plugin::Guest
    for PoolPolicyAdapter<T, P>
{
    fn metadata() -> PluginMetadata {
        T::metadata(P::PACKAGE)
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
        struct __BinderyPackage;
        #[cfg(target_arch = "wasm32")]
        impl $crate::PackageInfo for __BinderyPackage {
            const PACKAGE: $crate::Package = $crate::package!();
        }
        #[cfg(target_arch = "wasm32")]
        type __BinderyProviderExport = $crate::ProviderAdapter<$plugin, __BinderyPackage>;
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
        struct __BinderyPackage;
        #[cfg(target_arch = "wasm32")]
        impl $crate::PackageInfo for __BinderyPackage {
            const PACKAGE: $crate::Package = $crate::package!();
        }
        #[cfg(target_arch = "wasm32")]
        type __BinderyBuildStrategyExport = $crate::BuildStrategyAdapter<$plugin, __BinderyPackage>;
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
        struct __BinderyPackage;
        #[cfg(target_arch = "wasm32")]
        impl $crate::PackageInfo for __BinderyPackage {
            const PACKAGE: $crate::Package = $crate::package!();
        }
        #[cfg(target_arch = "wasm32")]
        type __BinderyCullPolicyExport = $crate::CullPolicyAdapter<$plugin, __BinderyPackage>;
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
        struct __BinderyPackage;
        #[cfg(target_arch = "wasm32")]
        impl $crate::PackageInfo for __BinderyPackage {
            const PACKAGE: $crate::Package = $crate::package!();
        }
        #[cfg(target_arch = "wasm32")]
        type __BinderyPoolPolicyExport = $crate::PoolPolicyAdapter<$plugin, __BinderyPackage>;
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::pool_policy::__export_pool_policy!(
            __BinderyPoolPolicyExport with_types_in $crate::bindings::pool_policy
        );
    };
}
