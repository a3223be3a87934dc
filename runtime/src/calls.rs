//! Typed calls into each world. Every call gets a fresh instance.

use std::sync::Arc;

use wasmtime::component::{ComponentNamedList, Lift, Lower};

use super::bindings::{
    BuildPlan, ContentSource, Decision, DisplayConfig, GitContent, PluginError, PluginMetadata,
    RepoFacts, Resolution, Server,
};
use super::capabilities::RepoFiles;
use super::engine::Runtime;
use super::error::CallError;
use super::plugin::{LoadedPlugin, kind_name};

/// Calls the world's export `func` with `params` on a fresh instance of the
/// pre-linked component, within the plugin's limits. The types are checked
/// against the component's own when the function is looked up, so a
/// component of an older `bindery:plugin` whose records are the same is
/// called with the current types.
async fn call<P, R>(
    rt: &Runtime,
    p: &LoadedPlugin,
    repo: Option<Arc<dyn RepoFiles>>,
    func: &'static str,
    params: P,
) -> Result<R, CallError>
where
    P: ComponentNamedList + Lower + Send + Sync,
    R: ComponentNamedList + Lift + Send + Sync + 'static,
{
    // The host looks plugins up by kind, so this is a wrong kind.
    let Some(index) = p.pre.funcs.get(func) else {
        return Err(CallError::NotLoaded {
            plugin: format!("{} (it is a {} plugin)", p.name, kind_name(p.kind())),
            kind: "matching",
        });
    };
    rt.call(p, repo, async |s| {
        let instance = p.pre.instance.instantiate_async(&mut *s).await?;
        let f = instance.get_typed_func::<P, R>(&mut *s, index)?;
        f.call_async(&mut *s, params).await
    })
    .await
}

/// The plugin's metadata.
pub(crate) async fn metadata(rt: &Runtime, p: &LoadedPlugin) -> Result<PluginMetadata, CallError> {
    let (metadata,) = call(rt, p, None, "metadata", ()).await?;
    Ok(metadata)
}

/// A provider's display configuration.
pub(crate) async fn display(rt: &Runtime, p: &LoadedPlugin) -> Result<DisplayConfig, CallError> {
    let (display,) = call(rt, p, None, "display", ()).await?;
    Ok(display)
}

/// A provider's resolution of `spec`.
pub(crate) async fn resolve(
    rt: &Runtime,
    p: &LoadedPlugin,
    spec: &str,
) -> Result<Result<Resolution, PluginError>, CallError> {
    let (resolution,) = call(rt, p, None, "resolve", (spec,)).await?;
    Ok(resolution)
}

/// How a provider's `resolution` is fetched. A provider built before
/// `content` existed is a git provider: its `repo-url` at `resolved-ref`.
pub(crate) async fn content(
    rt: &Runtime,
    p: &LoadedPlugin,
    resolution: &Resolution,
) -> Result<Result<ContentSource, PluginError>, CallError> {
    if !p.pre.funcs.contains_key("content") {
        return Ok(Ok(ContentSource::Git(GitContent {
            url: resolution.repo_url.clone(),
            revision: resolution.resolved_ref.clone(),
            auth: None,
        })));
    }
    let (source,) = call(rt, p, None, "content", (resolution,)).await?;
    Ok(source)
}

/// A build strategy's plan for the repository in `repo`.
pub(crate) async fn plan(
    rt: &Runtime,
    p: &LoadedPlugin,
    facts: &RepoFacts,
    repo: Arc<dyn RepoFiles>,
) -> Result<Result<BuildPlan, PluginError>, CallError> {
    let (plan,) = call(rt, p, Some(repo), "plan", (facts,)).await?;
    Ok(plan)
}

/// A cull policy's decisions, one per server.
pub(crate) async fn decide(
    rt: &Runtime,
    p: &LoadedPlugin,
    now_ms: u64,
    servers: &[Server],
) -> Result<Result<Vec<Decision>, PluginError>, CallError> {
    let (decisions,): (Result<Vec<Decision>, PluginError>,) =
        call(rt, p, None, "decide", (now_ms, servers)).await?;
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
