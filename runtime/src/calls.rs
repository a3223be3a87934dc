//! Typed calls into each world. Every call gets a fresh instance.

use std::sync::Arc;

use super::bindings::{
    BuildPlan, Decision, DisplayConfig, PluginError, PluginMetadata, RepoFacts, Resolution, Server,
};
use super::capabilities::RepoFiles;
use super::engine::Runtime;
use super::error::CallError;
use super::plugin::{LoadedPlugin, WorldPre, kind_name};

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
            rt.call(p, None, async |s| {
                pre.instantiate_async(&mut *s)
                    .await?
                    .bindery_plugin_repo_provider()
                    .call_metadata(s)
                    .await
            })
            .await
        }
        WorldPre::BuildStrategy(pre) => {
            rt.call(p, None, async |s| {
                pre.instantiate_async(&mut *s)
                    .await?
                    .bindery_plugin_build_strategy_plugin()
                    .call_metadata(s)
                    .await
            })
            .await
        }
        WorldPre::CullPolicy(pre) => {
            rt.call(p, None, async |s| {
                pre.instantiate_async(&mut *s)
                    .await?
                    .bindery_plugin_cull_policy_plugin()
                    .call_metadata(s)
                    .await
            })
            .await
        }
    }
}

/// A provider's display configuration.
pub(crate) async fn display(rt: &Runtime, p: &LoadedPlugin) -> Result<DisplayConfig, CallError> {
    let WorldPre::Provider(pre) = &p.pre else {
        return Err(wrong_kind(p, "provider"));
    };
    rt.call(p, None, async |s| {
        pre.instantiate_async(&mut *s)
            .await?
            .bindery_plugin_repo_provider()
            .call_display(s)
            .await
    })
    .await
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
    rt.call(p, None, async |s| {
        pre.instantiate_async(&mut *s)
            .await?
            .bindery_plugin_repo_provider()
            .call_resolve(s, spec)
            .await
    })
    .await
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
    rt.call(p, Some(repo), async |s| {
        pre.instantiate_async(&mut *s)
            .await?
            .bindery_plugin_build_strategy_plugin()
            .call_plan(s, facts)
            .await
    })
    .await
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
