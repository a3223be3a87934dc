//! Typed calls into each world. Every call gets a fresh instance.

use std::sync::Arc;

use wasmtime::component::{ComponentNamedList, Lift, Lower};

use super::bindings::{
    BuildPlan, ContentSource, Decision, DisplayConfig, GitContent, ImageDemand, PluginError,
    PluginMetadata, PoolBounds, RepoFacts, Resolution, Server, v0_1,
};
use super::capabilities::{RepoFiles, UserSecret};
use super::engine::Runtime;
use super::error::CallError;
use super::plugin::{LoadedPlugin, WitVersion, kind_name};

/// Calls the world's export `func` with `params` on a fresh instance of the
/// pre-linked component, within the plugin's limits. The types are checked
/// against the component's own when the function is looked up, so a
/// component of an older `bindery:plugin` whose records are the same is
/// called with the current types.
async fn call<P, R>(
    rt: &Runtime,
    p: &LoadedPlugin,
    repo: Option<Arc<dyn RepoFiles>>,
    user: Option<Arc<UserSecret>>,
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
    rt.call(p, repo, user, async |s| {
        let instance = p.pre.instance.instantiate_async(&mut *s).await?;
        let f = instance.get_typed_func::<P, R>(&mut *s, index)?;
        f.call_async(&mut *s, params).await
    })
    .await
}

/// The plugin's metadata.
pub(crate) async fn metadata(rt: &Runtime, p: &LoadedPlugin) -> Result<PluginMetadata, CallError> {
    if p.pre.wit == WitVersion::V0_1 {
        let (metadata,): (v0_1::PluginMetadata,) = call(rt, p, None, None, "metadata", ()).await?;
        return Ok(metadata.into());
    }
    let (metadata,) = call(rt, p, None, None, "metadata", ()).await?;
    Ok(metadata)
}

/// A provider's display configuration.
pub(crate) async fn display(rt: &Runtime, p: &LoadedPlugin) -> Result<DisplayConfig, CallError> {
    let (display,) = call(rt, p, None, None, "display", ()).await?;
    Ok(display)
}

/// A provider's resolution of `spec`, for `user` when given.
pub(crate) async fn resolve(
    rt: &Runtime,
    p: &LoadedPlugin,
    spec: &str,
    user: Option<Arc<UserSecret>>,
) -> Result<Result<Resolution, PluginError>, CallError> {
    let (resolution,) = call(rt, p, None, user, "resolve", (spec,)).await?;
    Ok(resolution)
}

/// How a provider's `resolution` is fetched. A provider built before
/// `content` existed is a git provider: its `repo-url` at `resolved-ref`.
pub(crate) async fn content(
    rt: &Runtime,
    p: &LoadedPlugin,
    resolution: &Resolution,
    user: Option<Arc<UserSecret>>,
) -> Result<Result<ContentSource, PluginError>, CallError> {
    if !p.pre.funcs.contains_key("content") {
        return Ok(Ok(ContentSource::Git(GitContent {
            url: resolution.repo_url.clone(),
            revision: resolution.resolved_ref.clone(),
            auth: None,
        })));
    }
    let (source,) = call(rt, p, None, user, "content", (resolution,)).await?;
    Ok(source)
}

/// A build strategy's plan for the repository in `repo`.
pub(crate) async fn plan(
    rt: &Runtime,
    p: &LoadedPlugin,
    facts: &RepoFacts,
    repo: Arc<dyn RepoFiles>,
) -> Result<Result<BuildPlan, PluginError>, CallError> {
    let (plan,) = call(rt, p, Some(repo), None, "plan", (facts,)).await?;
    Ok(plan)
}

/// A cull policy's decisions, one per server.
pub(crate) async fn decide(
    rt: &Runtime,
    p: &LoadedPlugin,
    now_ms: u64,
    servers: &[Server],
) -> Result<Result<Vec<Decision>, PluginError>, CallError> {
    let (decisions,) = call(rt, p, None, None, "decide", (now_ms, servers)).await?;
    Ok(one_each(decisions, servers.len(), "decisions", "servers"))
}

/// A pool policy's number of servers to keep for each image.
pub(crate) async fn sizes(
    rt: &Runtime,
    p: &LoadedPlugin,
    now_ms: u64,
    bounds: PoolBounds,
    images: &[ImageDemand],
) -> Result<Result<Vec<u32>, PluginError>, CallError> {
    let (sizes,) = call(rt, p, None, None, "sizes", (now_ms, bounds, images)).await?;
    Ok(one_each(sizes, images.len(), "sizes", "images"))
}

/// A policy's answers, one per item asked about: one that answers for the
/// wrong number cannot be trusted with any.
fn one_each<T>(
    answers: Result<Vec<T>, PluginError>,
    asked: usize,
    answer: &str,
    item: &str,
) -> Result<Vec<T>, PluginError> {
    answers.and_then(|a| {
        if a.len() == asked {
            Ok(a)
        } else {
            Err(PluginError::Internal(format!(
                "returned {} {answer} for {asked} {item}",
                a.len()
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_answering_for_the_wrong_number_of_items_is_an_error() {
        assert!(matches!(one_each(Ok(vec![1, 2]), 2, "sizes", "images"), Ok(v) if v == [1, 2]));
        assert!(matches!(
            one_each(Ok(vec![1]), 2, "sizes", "images"),
            Err(PluginError::Internal(m)) if m == "returned 1 sizes for 2 images"
        ));
        let refused = Err(PluginError::InvalidConfig("x".into()));
        assert!(matches!(
            one_each::<u32>(refused, 2, "sizes", "images"),
            Err(PluginError::InvalidConfig(m)) if m == "x"
        ));
    }
}
