//! Upstream's repo2docker command line and log relay, shared by the `local`
//! executor (a process here) and the `kubernetes` one (a build pod).

use bindery_runtime::bindings::{ContainerEngine, Repo2dockerPlan};
use serde_json::json;

use super::{BuildLogSender, BuildRequest};
use crate::config::{RegistryConfig, SecretSource};
use crate::events::Event;

/// How repo2docker is told to push.
pub struct Repo2dockerCommand {
    /// `CONTAINER_ENGINE_REGISTRY_CREDENTIALS` for `--push`, when the registry has a login.
    pub credentials: Option<String>,
    push: bool,
}

impl Repo2dockerCommand {
    /// Pushing to `registry` when one is configured.
    pub fn new(registry: &RegistryConfig) -> Repo2dockerCommand {
        let credentials = match (&registry.url, &registry.username) {
            (Some(url), Some(user)) => {
                let host = url
                    .host_str()
                    .map(|h| url.port().map_or(h.to_string(), |p| format!("{h}:{p}")))
                    .unwrap_or_default();
                let password = registry
                    .password
                    .as_ref()
                    .and_then(SecretSource::read)
                    .unwrap_or_default();
                Some(
                    json!({ "registry": host, "username": user, "password": password }).to_string(),
                )
            }
            _ => None,
        };
        Repo2dockerCommand {
            credentials,
            push: registry.url.is_some(),
        }
    }

    /// BinderHub's arguments: `--ref --image --no-clean --no-run --json-logs
    /// --user-name=jovyan --user-id=1000 [--appendix] [--push] <extra> <repo>`.
    pub fn args(&self, request: &BuildRequest, plan: &Repo2dockerPlan) -> Vec<String> {
        let mut args = vec![
            format!("--ref={}", request.resolved_ref),
            format!("--image={}", request.image),
            "--no-clean".into(),
            "--no-run".into(),
            "--json-logs".into(),
            "--user-name=jovyan".into(),
            "--user-id=1000".into(),
        ];
        if let Some(appendix) = &plan.appendix {
            args.push(format!("--appendix={appendix}"));
        }
        if self.push {
            args.push("--push".into());
        }
        let engine = match plan.engine {
            ContainerEngine::Docker => None,
            ContainerEngine::Podman => Some("podman"),
            ContainerEngine::Kaniko => Some("kaniko"),
            ContainerEngine::Buildah => Some("buildah"),
        };
        args.extend(engine.map(|e| format!("--engine={e}")));
        args.extend(plan.extra_args.iter().cloned());
        args.push(request.repo_url.clone());
        args
    }
}

/// Sends one line of repo2docker's output as an event (its `--json-logs`
/// objects verbatim, other lines as `unknown`); whether it said the build failed.
pub async fn relay_line(line: &str, log: &BuildLogSender) -> bool {
    if line.trim().is_empty() {
        return false;
    }
    let event = Event::log_line(line);
    let failed = matches!(event.phase(), "failed" | "failure");
    // The flight may be gone (nobody to tell); the caller keeps draining so the builder is not blocked.
    let _ = log.send(event).await;
    failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use bindery_runtime::bindings::{Executor, ResourceLimits};

    #[test]
    fn upstreams_command() {
        let request = BuildRequest {
            image: "reg:5000/binder-x:abc".into(),
            build_name: "build-x".into(),
            repo_url: "https://example.org/r.git".into(),
            resolved_ref: "abc".into(),
            provider: "git".into(),
            spec: "x/abc".into(),
            repo_config: Default::default(),
        };
        let plan = Repo2dockerPlan {
            executor: Executor::Local,
            builder_image: "i".into(),
            engine: ContainerEngine::Podman,
            buildpack: "CondaBuildPack".into(),
            extra_args: vec!["--Repo2Docker.default_buildpack=None".into()],
            env: vec![],
            limits: ResourceLimits {
                memory_limit: 0,
                memory_request: 0,
                cpu_limit: 0,
                cpu_request: 0,
            },
            appendix: Some("RUN echo hi".into()),
            timeout_secs: 10,
            environment_hash: None,
        };
        let registry = RegistryConfig {
            url: Some("http://reg:5000".parse().unwrap()),
            username: Some("u".into()),
            ..Default::default()
        };
        let command = Repo2dockerCommand::new(&registry);
        assert_eq!(
            command.args(&request, &plan),
            [
                "--ref=abc",
                "--image=reg:5000/binder-x:abc",
                "--no-clean",
                "--no-run",
                "--json-logs",
                "--user-name=jovyan",
                "--user-id=1000",
                "--appendix=RUN echo hi",
                "--push",
                "--engine=podman",
                "--Repo2Docker.default_buildpack=None",
                "https://example.org/r.git",
            ]
        );
        assert_eq!(
            command.credentials.as_deref(),
            Some(r#"{"registry":"reg:5000","username":"u","password":""}"#)
        );
        let unpushed = Repo2dockerCommand::new(&RegistryConfig::default());
        assert!(
            !unpushed
                .args(&request, &plan)
                .contains(&"--push".to_string())
        );
    }
}
