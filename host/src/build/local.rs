//! The `local` executor: upstream's `LocalRepo2dockerBuild`. It runs the
//! repo2docker CLI with BinderHub's exact command against the engine at
//! `build.local.docker_host`, relays its `--json-logs` lines as events, and
//! pushes with `--push` when a registry is configured. A build over its time
//! limit is killed.

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

use super::{BuildFailure, BuildLogSender, BuildRequest};
use crate::config::{LocalBuildConfig, RegistryConfig};
use crate::pipeline::Event;
use crate::plugins::bindings::{ContainerEngine, Repo2dockerPlan};

/// Runs repo2docker on this machine.
pub struct LocalExecutor {
    config: LocalBuildConfig,
    /// `CONTAINER_ENGINE_REGISTRY_CREDENTIALS` for `--push`, when the registry has a login.
    credentials: Option<String>,
    push: bool,
}

impl LocalExecutor {
    /// An executor pushing to `registry` when one is configured.
    pub fn new(config: &LocalBuildConfig, registry: &RegistryConfig) -> LocalExecutor {
        let credentials = match (&registry.url, &registry.username) {
            (Some(url), Some(user)) => {
                let host = url.host_str().map(|h| url.port().map_or(h.to_string(), |p| format!("{h}:{p}"))).unwrap_or_default();
                let password = registry.password.as_ref().and_then(|p| p.read()).unwrap_or_default();
                Some(json!({ "registry": host, "username": user, "password": password }).to_string())
            }
            _ => None,
        };
        LocalExecutor { config: config.clone(), credentials, push: registry.url.is_some() }
    }

    /// BinderHub's command: `--ref --image --no-clean --no-run --json-logs
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

    /// Runs the build to its end, its time limit, or until the future is dropped (which kills it).
    pub async fn build(&self, request: &BuildRequest, plan: &Repo2dockerPlan, timeout: Duration, log: &BuildLogSender) -> Result<(), BuildFailure> {
        let mut command = Command::new(&self.config.command);
        command.args(self.args(request, plan)).envs(&self.config.env).envs(plan.env.iter().map(|(k, v)| (k, v)));
        if let Some(host) = &self.config.docker_host {
            command.env("DOCKER_HOST", host);
        }
        if let Some(credentials) = &self.credentials {
            command.env("CONTAINER_ENGINE_REGISTRY_CREDENTIALS", credentials);
        }
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        let mut child = command.spawn().map_err(|e| BuildFailure {
            message: format!(
                "Cannot run {} ({e}): install repo2docker (pip install jupyter-repo2docker) or set build.local.command.\n",
                self.config.command.display()
            ),
        })?;
        let (stdout, stderr) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
        let relay = async {
            let (a, b) = tokio::join!(relay(stdout, log), relay(stderr, log));
            a || b
        };
        let run = async { tokio::join!(relay, child.wait()) };
        match tokio::time::timeout(timeout, run).await {
            Err(_) => {
                // Dropping the wait future leaves the child to kill_on_drop; kill now to say so at once.
                let _ = child.start_kill();
                let _ = child.wait().await;
                Err(BuildFailure { message: format!("The build took longer than its limit of {} s and was stopped.\n", timeout.as_secs()) })
            }
            Ok((_, Err(e))) => Err(BuildFailure { message: format!("repo2docker could not be watched: {e}\n") }),
            Ok((said_failed, Ok(status))) if status.success() && !said_failed => Ok(()),
            // repo2docker's own `failed` line already told the user why.
            Ok((true, _)) => Err(BuildFailure { message: String::new() }),
            Ok((false, Ok(status))) => Err(BuildFailure { message: format!("repo2docker exited with {status}; the log above says why.\n") }),
        }
    }
}

/// Sends each line of `stream` as an event; whether one said the build failed.
async fn relay(stream: impl AsyncRead + Unpin, log: &BuildLogSender) -> bool {
    let mut lines = BufReader::new(stream).lines();
    let mut failed = false;
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim().is_empty() {
            continue;
        }
        let event = Event::log_line(&line);
        failed |= matches!(event.phase(), "failed" | "failure");
        // The flight may be gone (nobody to tell); keep draining so the child is not blocked.
        let _ = log.send(event).await;
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::bindings::{Executor, ResourceLimits};

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
            limits: ResourceLimits { memory_limit: 0, memory_request: 0, cpu_limit: 0, cpu_request: 0 },
            appendix: Some("RUN echo hi".into()),
            timeout_secs: 10,
            environment_hash: None,
        };
        let registry = RegistryConfig { url: Some("http://reg:5000".parse().unwrap()), username: Some("u".into()), ..Default::default() };
        let local = LocalExecutor::new(&LocalBuildConfig::default(), &registry);
        assert_eq!(
            local.args(&request, &plan),
            [
                "--ref=abc", "--image=reg:5000/binder-x:abc", "--no-clean", "--no-run", "--json-logs", "--user-name=jovyan", "--user-id=1000",
                "--appendix=RUN echo hi", "--push", "--engine=podman", "--Repo2Docker.default_buildpack=None", "https://example.org/r.git",
            ]
        );
        assert_eq!(local.credentials.as_deref(), Some(r#"{"registry":"reg:5000","username":"u","password":""}"#));
        let unpushed = LocalExecutor::new(&LocalBuildConfig::default(), &RegistryConfig::default());
        assert!(!unpushed.args(&request, &plan).contains(&"--push".to_string()));
    }
}
