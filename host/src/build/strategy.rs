//! Choosing how to build: the host lists a checked-out repository's root and
//! binder directory, and a build-strategy plugin (reading the small config
//! files it names through `repo-files`) returns a typed plan.

use std::path::Path;
use std::sync::Arc;

use crate::pipeline::Resolved;
use crate::plugins::bindings::{BuildPlan, PluginError, RepoFacts};
use crate::plugins::{DirRepo, PluginHost};

/// Why no plan came back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The checkout could not be listed.
    #[error("cannot read the repository checkout: {0}")]
    Checkout(String),
    /// The strategy refuses this repository (e.g. both `binder/` and `.binder/`).
    #[error("{0}")]
    Refused(String),
    /// The strategy is misconfigured, failed, or is not loaded.
    #[error("build strategy `{strategy}` failed: {message}")]
    Failed {
        /// The strategy's name.
        strategy: String,
        /// What went wrong.
        message: String,
    },
}

/// Names in `dir`, directories ending in `/`, sorted.
fn names(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let mut name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_dir() {
            name.push('/');
        }
        names.push(name);
    }
    names.sort();
    Ok(names)
}

/// What a strategy is told about a checkout of `resolved`.
pub fn repo_facts(checkout: &Path, resolved: &Resolved) -> std::io::Result<RepoFacts> {
    let root_files = names(checkout)?;
    let binder_dir = ["binder/", ".binder/"].into_iter().find(|d| root_files.iter().any(|f| f == d)).map(String::from);
    let binder_files = match &binder_dir {
        Some(d) => names(&checkout.join(d.trim_end_matches('/')))?,
        None => Vec::new(),
    };
    Ok(RepoFacts {
        provider: resolved.provider.clone(),
        spec: resolved.spec.clone(),
        resolved_ref: resolved.resolved_ref.clone(),
        repo_url: resolved.repo_url.clone(),
        root_files,
        binder_dir,
        binder_files,
    })
}

/// Asks `strategy` how to build the checkout of `resolved`.
pub async fn plan(plugins: &PluginHost, strategy: &str, resolved: &Resolved, checkout: &Path) -> Result<BuildPlan, PlanError> {
    let facts = repo_facts(checkout, resolved).map_err(|e| PlanError::Checkout(e.to_string()))?;
    let failed = |message: String| PlanError::Failed { strategy: strategy.into(), message };
    match plugins.plan(strategy, &facts, Arc::new(DirRepo::new(checkout))).await {
        Ok(Ok(plan)) => Ok(plan),
        Ok(Err(PluginError::InvalidSpec(m) | PluginError::Banned(m) | PluginError::NotFound(m))) => Err(PlanError::Refused(m)),
        Ok(Err(PluginError::InvalidConfig(m))) => Err(failed(format!("its configuration is wrong: {m}"))),
        Ok(Err(other)) => Err(failed(format!("{other:?}"))),
        Err(call) => Err(failed(call.to_string())),
    }
}
