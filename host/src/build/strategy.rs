//! Choosing how to build: the host lists a checked-out repository's root and
//! binder directory, and a build-strategy plugin (reading the small config
//! files it names through `repo-files`) returns a typed plan.

use std::path::Path;
use std::sync::Arc;

use bindery_runtime::bindings::{BuildPlan, EnvironmentImage, PluginError, RepoFacts};
use bindery_runtime::{DirRepo, PluginHost};

use super::BuildRequest;
use crate::cache::Environment;

/// Why no plan came back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The checkout could not be listed.
    #[error("cannot read the repository checkout: {0}")]
    Checkout(String),
    /// The strategy refuses this repository (e.g. both `binder/` and `.binder/`).
    #[error("{0}")]
    Refused(String),
    /// The strategy returned a plan the host will not run.
    #[error("build strategy `{strategy}` returned an invalid plan: {message}")]
    Invalid {
        /// The strategy's name.
        strategy: String,
        /// What is wrong with it.
        message: String,
    },
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

/// What a strategy is told about a checkout of `request`'s revision, with
/// the environment images this host built for the repository.
pub fn repo_facts(
    checkout: &Path,
    request: &BuildRequest,
    environments: &[Environment],
) -> std::io::Result<RepoFacts> {
    let root_files = names(checkout)?;
    let binder_dir = ["binder/", ".binder/"]
        .into_iter()
        .find(|d| root_files.iter().any(|f| f == d))
        .map(String::from);
    let binder_files = match &binder_dir {
        Some(d) => names(&checkout.join(d.trim_end_matches('/')))?,
        None => Vec::new(),
    };
    let environments = environments
        .iter()
        .map(|e| EnvironmentImage {
            image: e.image.clone(),
            environment_hash: e.hash.clone(),
            resolved_ref: e.resolved_ref.clone(),
            built_ms: e.built_ms,
        })
        .collect();
    Ok(RepoFacts {
        provider: request.provider.clone(),
        spec: request.spec.clone(),
        resolved_ref: request.resolved_ref.clone(),
        repo_url: request.repo_url.clone(),
        root_files,
        binder_dir,
        binder_files,
        environments,
    })
}

/// Asks `strategy` how to build the checkout of `request`'s revision, and checks the answer.
pub async fn plan(
    plugins: &PluginHost,
    strategy: &str,
    request: &BuildRequest,
    checkout: &Path,
    environments: &[Environment],
) -> Result<BuildPlan, PlanError> {
    let facts = repo_facts(checkout, request, environments)
        .map_err(|e| PlanError::Checkout(e.to_string()))?;
    let failed = |message: String| PlanError::Failed {
        strategy: strategy.into(),
        message,
    };
    match plugins
        .plan(strategy, &facts, Arc::new(DirRepo::new(checkout)))
        .await
    {
        Ok(Ok(plan)) => match check(&plan) {
            Ok(()) => Ok(plan),
            Err(message) => Err(PlanError::Invalid {
                strategy: strategy.into(),
                message,
            }),
        },
        Ok(Err(
            PluginError::InvalidSpec(m) | PluginError::Banned(m) | PluginError::NotFound(m),
        )) => Err(PlanError::Refused(m)),
        Ok(Err(PluginError::InvalidConfig(m))) => {
            Err(failed(format!("its configuration is wrong: {m}")))
        }
        Ok(Err(other)) => Err(failed(format!("{other:?}"))),
        Err(call) => Err(failed(call.to_string())),
    }
}

/// The repo2docker arguments a plan may add, each as `--name=value`, the name
/// given exactly: repo2docker takes abbreviations (`--image-nam=`), and other
/// options run code (`--config=` loads a Python file) or undo what the host
/// sets (`--push`, `--user-id`, `--engine`).
const PLAN_ARGS: &[&str] = &[
    "--build-arg",
    "--build-memory-limit",
    "--cache-from",
    "--label",
    "--target-repo-dir",
    "--Repo2Docker.default_buildpack",
];
/// The environment a plan may give repo2docker: proxies. Others run code on
/// the host in local builds (`LD_PRELOAD`, `PYTHONPATH`, `GIT_CONFIG_*`).
const PLAN_ENV: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];
/// No build may ask for more than a day.
const MAX_TIMEOUT_SECS: u64 = 24 * 3600;

/// What is wrong with `plan`, if anything the host should not run.
pub fn check(plan: &BuildPlan) -> Result<(), String> {
    let timeout = match plan {
        BuildPlan::Repo2docker(p) => p.timeout_secs,
        BuildPlan::Layer(p) => p.timeout_secs,
    };
    if timeout > MAX_TIMEOUT_SECS {
        return Err(format!(
            "timeout_secs {timeout} is over the limit of {MAX_TIMEOUT_SECS}"
        ));
    }
    match plan {
        BuildPlan::Repo2docker(p) => {
            if p.builder_image.trim().is_empty() || p.builder_image.contains(char::is_whitespace) {
                return Err(format!(
                    "builder_image {:?} is not an image reference",
                    p.builder_image
                ));
            }
            if let Some(arg) = p.extra_args.iter().find(|a| {
                a.split_once('=')
                    .is_none_or(|(name, _)| !PLAN_ARGS.contains(&name))
            }) {
                return Err(format!(
                    "extra argument {arg:?} is not one a plan may give (as --name=value: {})",
                    PLAN_ARGS.join(", ")
                ));
            }
            if let Some((name, _)) = p
                .env
                .iter()
                .find(|(name, _)| !PLAN_ENV.contains(&name.as_str()))
            {
                return Err(format!(
                    "environment variable {name:?} is not one a plan may set ({})",
                    PLAN_ENV.join(", ")
                ));
            }
            if p.environment_hash
                .as_ref()
                .is_some_and(|h| h.is_empty() || h.len() > 128)
            {
                return Err("environment_hash must be 1 to 128 characters".into());
            }
        }
        BuildPlan::Layer(p) => {
            if p.environment_image
                .parse::<oci_client::Reference>()
                .is_err()
            {
                return Err(format!(
                    "environment_image {:?} is not an image reference",
                    p.environment_image
                ));
            }
            let dir = std::path::Path::new(&p.target_dir);
            let clean = dir.components().all(|c| {
                matches!(
                    c,
                    std::path::Component::RootDir | std::path::Component::Normal(_)
                )
            });
            if !dir.is_absolute() || !clean || dir.parent().is_none() {
                return Err(format!(
                    "target_dir {:?} must be an absolute path below / without `..`",
                    p.target_dir
                ));
            }
            if p.uid == 0 || p.gid == 0 {
                return Err("the content may not be owned by root (uid or gid 0), as repo2docker refuses too".into());
            }
            if p.environment_hash.is_empty() {
                return Err("environment_hash is empty".into());
            }
            // A commit sha, or a record version (read from the environment's
            // listing, never handed to git as a revision expression).
            if p.base_ref.as_ref().is_some_and(|r| {
                r.is_empty()
                    || r.len() > 256
                    || r.contains(|c: char| c.is_whitespace() || c.is_control())
            }) {
                return Err(format!(
                    "base_ref {:?} is not a revision",
                    p.base_ref.as_deref().unwrap_or_default()
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bindery_runtime::bindings::{
        ContainerEngine, Executor, LayerPlan, Repo2dockerPlan, ResourceLimits,
    };

    fn r2d() -> Repo2dockerPlan {
        Repo2dockerPlan {
            executor: Executor::Local,
            builder_image: "quay.io/jupyterhub/repo2docker:2024.07.0".into(),
            engine: ContainerEngine::Docker,
            buildpack: "PythonBuildPack".into(),
            extra_args: vec!["--cache-from=reg/x:1".into(), "--label=a=b".into()],
            env: vec![("HTTPS_PROXY".into(), "http://proxy:3128".into())],
            limits: ResourceLimits {
                memory_limit: 0,
                memory_request: 0,
                cpu_limit: 0,
                cpu_request: 0,
            },
            appendix: None,
            timeout_secs: 600,
            environment_hash: Some("ab".into()),
        }
    }

    fn layer() -> LayerPlan {
        LayerPlan {
            environment_image: "127.0.0.1:5000/binder-x:abc".into(),
            environment_hash: "ab".into(),
            base_ref: Some("a".repeat(40)),
            target_dir: "/home/jovyan".into(),
            uid: 1000,
            gid: 1000,
            timeout_secs: 0,
        }
    }

    /// A change that makes a plan invalid, and the field the error names.
    type Mutation<P> = (fn(&mut P), &'static str);

    #[test]
    fn invalid_plans_are_named() {
        assert_eq!(check(&BuildPlan::Repo2docker(r2d())), Ok(()));
        assert_eq!(check(&BuildPlan::Layer(layer())), Ok(()));
        let bad_r2d: Vec<Mutation<Repo2dockerPlan>> = vec![
            (|p| p.builder_image = String::new(), "builder_image"),
            (
                |p| p.extra_args = vec!["--image=evil".into()],
                "--image=evil",
            ),
            (|p| p.extra_args = vec!["--push".into()], "--push"),
            // Abbreviations repo2docker would take for host-set options.
            (
                |p| p.extra_args = vec!["--image-nam=evil".into()],
                "--image-nam=evil",
            ),
            (|p| p.extra_args = vec!["--re=x".into()], "--re=x"),
            // Options that run code, or a known one not given as --name=value.
            (
                |p| p.extra_args = vec!["--config=/tmp/x.py".into()],
                "--config",
            ),
            (|p| p.extra_args = vec!["--label".into()], "--label"),
            (
                |p| p.extra_args = vec!["--Repo2Docker.user_id=0".into()],
                "user_id",
            ),
            (
                |p| p.env = vec![("LD_PRELOAD".into(), "/tmp/x.so".into())],
                "LD_PRELOAD",
            ),
            (
                |p| p.env = vec![("PYTHONPATH".into(), "/tmp".into())],
                "PYTHONPATH",
            ),
            (
                |p| p.env = vec![("GIT_CONFIG_COUNT".into(), "1".into())],
                "GIT_CONFIG_COUNT",
            ),
            (
                |p| p.env = vec![("DOCKER_HOST".into(), "tcp://x".into())],
                "DOCKER_HOST",
            ),
            (|p| p.env = vec![("A B".into(), "x".into())], "A B"),
            (|p| p.timeout_secs = 10 * 24 * 3600, "timeout_secs"),
            (
                |p| p.environment_hash = Some(String::new()),
                "environment_hash",
            ),
        ];
        for (spoil, named) in bad_r2d {
            let mut p = r2d();
            spoil(&mut p);
            let e = check(&BuildPlan::Repo2docker(p)).unwrap_err();
            assert!(e.contains(named), "{named}: {e}");
        }
        let bad_layer: Vec<Mutation<LayerPlan>> = vec![
            (
                |p| p.environment_image = "Not An Image".into(),
                "environment_image",
            ),
            (|p| p.target_dir = "home/jovyan".into(), "target_dir"),
            (|p| p.target_dir = "/home/../etc".into(), "target_dir"),
            (|p| p.target_dir = "/".into(), "target_dir"),
            (|p| p.uid = 0, "root"),
            (|p| p.base_ref = Some("main branch".into()), "base_ref"),
            (|p| p.environment_hash = String::new(), "environment_hash"),
        ];
        for (spoil, named) in bad_layer {
            let mut p = layer();
            spoil(&mut p);
            let e = check(&BuildPlan::Layer(p)).unwrap_err();
            assert!(e.contains(named), "{named}: {e}");
        }
    }
}
