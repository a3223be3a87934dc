//! The `local` executor: upstream's `LocalRepo2dockerBuild`. It runs the
//! repo2docker CLI with BinderHub's exact command against the engine at
//! `build.local.docker_host`, relays its `--json-logs` lines as events, and
//! pushes with `--push` when a registry is configured. A build over its time
//! limit is killed.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

use super::command::{Repo2dockerCommand, relay_line};
use super::{BuildFailure, BuildLogSender, BuildRequest};
use crate::config::{LocalBuildConfig, RegistryConfig};
use crate::plugins::bindings::Repo2dockerPlan;

/// Runs repo2docker on this machine.
pub struct LocalExecutor {
    config: LocalBuildConfig,
    command: Repo2dockerCommand,
}

impl LocalExecutor {
    /// An executor pushing to `registry` when one is configured.
    pub fn new(config: &LocalBuildConfig, registry: &RegistryConfig) -> LocalExecutor {
        LocalExecutor { config: config.clone(), command: Repo2dockerCommand::new(registry) }
    }

    /// Runs the build to its end, its time limit, or until the future is dropped (which kills it).
    pub async fn build(&self, request: &BuildRequest, plan: &Repo2dockerPlan, timeout: Duration, log: &BuildLogSender) -> Result<(), BuildFailure> {
        let mut command = Command::new(&self.config.command);
        command.args(self.command.args(request, plan)).envs(&self.config.env).envs(plan.env.iter().map(|(k, v)| (k, v)));
        if let Some(host) = &self.config.docker_host {
            command.env("DOCKER_HOST", host);
        }
        if let Some(credentials) = &self.command.credentials {
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
        failed |= relay_line(&line, log).await;
    }
    failed
}
