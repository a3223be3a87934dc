//! Typed calls into each world. Every call gets a fresh instance.

use std::sync::Arc;

use super::bindings::{
    BuildPlan, Decision, DisplayConfig, PluginError, PluginMetadata, RepoFacts, Resolution, Server,
};
use super::capabilities::RepoFiles;
use super::engine::Runtime;
use super::error::CallError;
use super::plugin::{LoadedPlugin, WorldPre, kind_name};

/// Calls `method(args)` of an export interface on a fresh instance of the
/// pre-linked component, within the plugin's limits (one instance per call).
macro_rules! call {
    ($rt:expr, $p:expr, $repo:expr, $pre:ident.$export:ident.$method:ident($($arg:expr),*)) => {
        $rt.call($p, $repo, async |s| {
            $pre.instantiate_async(&mut *s)
                .await?
                .$export()
                .$method(s $(, $arg)*)
                .await
        })
        .await
    };
}

fn wrong_kind(plugin: &LoadedPlugin, wanted: &'static str) -> CallError {
    CallError::NotLoaded {
        plugin: format!(
            "{} (it is a {} plugin)",
            plugin.name,
            kind_name(plugin.kind())
        ),
        kind: wanted,
    }
}

/// The plugin's metadata.
pub(crate) async fn metadata(rt: &Runtime, p: &LoadedPlugin) -> Result<PluginMetadata, CallError> {
    match &p.pre {
        WorldPre::Provider(pre) => {
            call!(
                rt,
                p,
                None,
                pre.bindery_plugin_repo_provider.call_metadata()
            )
        }
        WorldPre::BuildStrategy(pre) => {
            call!(
                rt,
                p,
                None,
                pre.bindery_plugin_build_strategy_plugin.call_metadata()
            )
        }
        WorldPre::CullPolicy(pre) => {
            call!(
                rt,
                p,
                None,
                pre.bindery_plugin_cull_policy_plugin.call_metadata()
            )
        }
    }
}

/// A provider's display configuration.
pub(crate) async fn display(rt: &Runtime, p: &LoadedPlugin) -> Result<DisplayConfig, CallError> {
    let WorldPre::Provider(pre) = &p.pre else {
        return Err(wrong_kind(p, "provider"));
    };
    call!(rt, p, None, pre.bindery_plugin_repo_provider.call_display())
}

/// A provider's resolution of `spec`.
pub(crate) async fn resolve(
    rt: &Runtime,
    p: &LoadedPlugin,
    spec: &str,
) -> Result<Result<Resolution, PluginError>, CallError> {
    let WorldPre::Provider(pre) = &p.pre else {
        return Err(wrong_kind(p, "provider"));
    };
    call!(
        rt,
        p,
        None,
        pre.bindery_plugin_repo_provider.call_resolve(spec)
    )
}

/// A build strategy's plan for the repository in `repo`.
pub(crate) async fn plan(
    rt: &Runtime,
    p: &LoadedPlugin,
    facts: &RepoFacts,
    repo: Arc<dyn RepoFiles>,
) -> Result<Result<BuildPlan, PluginError>, CallError> {
    let WorldPre::BuildStrategy(pre) = &p.pre else {
        return Err(wrong_kind(p, "build-strategy"));
    };
    call!(
        rt,
        p,
        Some(repo),
        pre.bindery_plugin_build_strategy_plugin.call_plan(facts)
    )
}

/// A cull policy's decisions, one per server.
pub(crate) async fn decide(
    rt: &Runtime,
    p: &LoadedPlugin,
    now_ms: u64,
    servers: &[Server],
) -> Result<Result<Vec<Decision>, PluginError>, CallError> {
    let WorldPre::CullPolicy(pre) = &p.pre else {
        return Err(wrong_kind(p, "cull-policy"));
    };
    let decisions = rt
        .call(p, None, async |s| {
            pre.instantiate_async(&mut *s)
                .await?
                .bindery_plugin_cull_policy_plugin()
                .call_decide(s, now_ms, servers)
                .await
        })
        .await?;
    // A policy that answers for the wrong number of servers cannot be trusted with any.
    Ok(decisions.and_then(|d| {
        if d.len() == servers.len() {
            Ok(d)
        } else {
            Err(PluginError::Internal(format!(
                "returned {} decisions for {} servers",
                d.len(),
                servers.len()
            )))
        }
    }))
}
