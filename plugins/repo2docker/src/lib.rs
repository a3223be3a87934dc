//! The `repo2docker` build strategy: names the buildpack repo2docker would
//! pick for a repository, by repo2docker's own detection order and rules
//! ([`bindery_sdk::repo2docker`]), and plans a repo2docker build with the
//! operator's builder image, engine, arguments, limits and timeout.
use bindery_sdk::prelude::*;
use bindery_sdk::repo2docker;

pub struct Repo2docker;

impl BuildStrategy for Repo2docker {
    type Config = repo2docker::Settings;

    fn plan(ctx: &impl BuildStrategyContext, facts: RepoFacts) -> Result<BuildPlan, PluginError> {
        let buildpack = repo2docker::detect(ctx, &facts)?;
        ctx.info(&format!(
            "{}@{}: {}",
            facts.repo_url,
            facts.resolved_ref,
            buildpack.name()
        ));
        Ok(BuildPlan::Repo2docker(repo2docker::plan(ctx, buildpack)?))
    }
}

bindery_sdk::export_build_strategy!(Repo2docker);
