//! The `local` executor: upstream's `LocalRepo2dockerBuild`. It runs the
//! repo2docker CLI with BinderHub's exact command against the engine at
//! `build.local.docker_host`, relays its `--json-logs` lines as events, and
//! pushes with `--push` when a registry is configured. A build over its time
//! limit is killed.
//!
//! repo2docker runs in its own process group and writes its log to a file
//! in the build directory, beside its pid: a Bindery that is killed leaves it
//! building, and the next Bindery follows the file (see [`Orphan`]) instead
//! of building the image a second time.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bindery_runtime::bindings::Repo2dockerPlan;
use tokio::io::BufReader;
use tokio::process::Command;

use super::command::{Repo2dockerCommand, Said, read_log_line, relay_line};
use super::{BuildFailure, BuildLogSender, BuildRequest};
use crate::config::{LocalBuildConfig, RegistryConfig};

const LOG_FILE: &str = "repo2docker.log";
const PID_FILE: &str = "repo2docker.pid";
/// How often a followed log is read again once it is at its end.
const POLL: Duration = Duration::from_millis(50);
/// `repo2docker --version` starts Python and imports repo2docker.
const VERSION_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs repo2docker on this machine.
pub struct LocalExecutor {
    config: LocalBuildConfig,
    command: Repo2dockerCommand,
}

impl LocalExecutor {
    /// An executor pushing to `registry` when one is configured.
    pub fn new(config: &LocalBuildConfig, registry: &RegistryConfig) -> LocalExecutor {
        LocalExecutor {
            config: config.clone(),
            command: Repo2dockerCommand::new(registry),
        }
    }

    /// Whether the hub can run an image this executor built before its push
    /// ends: it is in the engine the hub's spawner uses.
    pub fn runnable_early(&self) -> bool {
        self.config.spawner_shares_engine
    }

    /// Runs the build in `dir` to its end, its time limit, or until the
    /// future is dropped (which kills it). repo2docker fetches the repository
    /// itself, or builds `content` when the host fetched it.
    pub async fn build(
        &self,
        request: &BuildRequest,
        plan: &Repo2dockerPlan,
        content: Option<&Path>,
        dir: &Path,
        timeout: Duration,
        log: &BuildLogSender,
    ) -> Result<(), BuildFailure> {
        let log_path = dir.join(LOG_FILE);
        let output = std::fs::File::create(&log_path).map_err(|e| {
            BuildFailure::new(format!(
                "Cannot write the build log {}: {e}",
                log_path.display()
            ))
        })?;
        let errors = output.try_clone().map_err(|e| {
            BuildFailure::new(format!(
                "Cannot write the build log {}: {e}",
                log_path.display()
            ))
        })?;
        let mut command = Command::new(&self.config.command);
        command
            .args(self.command.args(request, plan, content))
            .envs(&self.config.env)
            .envs(plan.env.iter().map(|(k, v)| (k, v)));
        if let Some(host) = &self.config.docker_host {
            command.env("DOCKER_HOST", host);
        }
        if let Some(credentials) = &self.command.credentials {
            command.env("CONTAINER_ENGINE_REGISTRY_CREDENTIALS", credentials);
        }
        // Its own group: a Ctrl-C meant for Bindery does not reach it, and
        // the whole group (repo2docker's children too) is killed together.
        command
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(errors)
            .process_group(0);
        let mut child = command.spawn().map_err(|e| BuildFailure {
            message: format!(
                "Cannot run {} ({e}): install repo2docker (pip install jupyter-repo2docker) or set build.local.command.\n",
                self.config.command.display()
            ),
        })?;
        let group = Group(child.id().map(|pid| pid as i32));
        if let Some(pid) = group.0 {
            std::fs::write(dir.join(PID_FILE), pid.to_string()).map_err(|e| {
                BuildFailure::new(format!("Cannot write the build's pid file: {e}"))
            })?;
        }
        let run = async {
            let running = || matches!(child.try_wait(), Ok(None));
            let said_failed = follow(&log_path, 0, log, running, self.runnable_early()).await;
            (said_failed, child.wait().await)
        };
        let outcome = match tokio::time::timeout(timeout, run).await {
            Err(_) => Err(BuildFailure {
                message: format!(
                    "The build took longer than its limit of {} s and was stopped.\n",
                    timeout.as_secs()
                ),
            }),
            Ok((_, Err(e))) => Err(BuildFailure {
                message: format!("repo2docker could not be watched: {e}\n"),
            }),
            Ok((said_failed, Ok(status))) if status.success() && !said_failed => Ok(()),
            // repo2docker's own `failed` line already told the user why.
            Ok((true, _)) => Err(BuildFailure {
                message: String::new(),
            }),
            Ok((false, Ok(status))) => Err(BuildFailure {
                message: format!("repo2docker exited with {status}; the log above says why.\n"),
            }),
        };
        drop(group);
        outcome
    }

    /// What `repo2docker --version` says; `None` when it cannot be run
    /// (upstream's local builder then reports no version either).
    pub async fn version(&self) -> Option<String> {
        let mut command = Command::new(&self.config.command);
        command
            .arg("--version")
            .envs(&self.config.env)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = match tokio::time::timeout(VERSION_TIMEOUT, command.output()).await {
            Ok(Ok(output)) if output.status.success() => output,
            failed => {
                let why = match failed {
                    Ok(Ok(output)) => output.status.to_string(),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("no answer in {} s", VERSION_TIMEOUT.as_secs()),
                };
                let command = self.config.command.display();
                tracing::warn!("{command} --version: {why}");
                return None;
            }
        };
        let version = String::from_utf8_lossy(&output.stdout).trim().to_string();
        (!version.is_empty()).then_some(version)
    }
}

/// Kills a build's process group when the build ends or is dropped (a time
/// limit, nobody watching, Bindery shutting down). A SIGKILL of Bindery
/// runs no destructor: the build goes on, for the next Bindery to follow.
struct Group(Option<i32>);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            // SAFETY: kill(2) on the group this executor started; no memory is involved.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
    }
}

/// A repo2docker a previous Bindery started in a build directory: still
/// running, or finished since.
pub struct Orphan {
    dir: PathBuf,
    pid: i32,
}

impl Orphan {
    /// The build a previous Bindery left in `dir` for `image`, if it left one.
    pub fn find(dir: &Path, image: &str) -> Option<Orphan> {
        let pid = std::fs::read_to_string(dir.join(PID_FILE))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let orphan = Orphan {
            dir: dir.to_path_buf(),
            pid,
        };
        // A pid the system gave to another process since is not this build.
        if orphan.running() && !orphan.builds(image) {
            return None;
        }
        Some(orphan)
    }

    /// The directory it builds in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    fn running(&self) -> bool {
        // A zombie has finished; nobody may be left to reap it.
        std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .ok()
            .and_then(|stat| {
                stat.rsplit_once(") ")
                    .map(|(_, rest)| !rest.starts_with('Z'))
            })
            .unwrap_or(false)
    }

    fn builds(&self, image: &str) -> bool {
        std::fs::read(format!("/proc/{}/cmdline", self.pid)).is_ok_and(|cmdline| {
            cmdline
                .split(|b| *b == 0)
                .any(|arg| arg == format!("--image={image}").as_bytes())
        })
    }

    /// Relays its log from where it is now until it exits or `timeout` passes
    /// (then its group is killed); whether it said the build failed. With
    /// `runnable_early`, a push it starts is reported as [`BuildLogSender::runnable`].
    pub async fn follow(
        &self,
        log: &BuildLogSender,
        timeout: Duration,
        runnable_early: bool,
    ) -> Result<bool, BuildFailure> {
        let path = self.dir.join(LOG_FILE);
        let skip = std::fs::metadata(&path).map_or(0, |m| m.len());
        let followed = follow(&path, skip, log, || self.running(), runnable_early);
        match tokio::time::timeout(timeout, followed).await {
            Ok(said_failed) => Ok(said_failed),
            Err(_) => {
                drop(Group(Some(self.pid)));
                Err(BuildFailure {
                    message: format!(
                        "The build took longer than its limit of {} s and was stopped.\n",
                        timeout.as_secs()
                    ),
                })
            }
        }
    }
}

/// Relays the lines of the log at `path`, from byte `skip` on, as they are
/// written, until `running` says the writer is gone and the file is read to
/// its end; whether one said the build failed. With `runnable_early`, the
/// engine's `Successfully tagged` line, or else the first line of the push,
/// says the image can be run: the engine has it under its name.
async fn follow(
    path: &Path,
    skip: u64,
    log: &BuildLogSender,
    mut running: impl FnMut() -> bool,
    runnable_early: bool,
) -> bool {
    use tokio::io::AsyncSeekExt;
    let Ok(mut file) = tokio::fs::File::open(path).await else {
        return false;
    };
    if file.seek(std::io::SeekFrom::Start(skip)).await.is_err() {
        return false;
    }
    let mut reader = BufReader::new(file);
    let (mut line, mut cut, mut failed) = (Vec::new(), false, false);
    let mut told_runnable = !runnable_early;
    let mut said = async |said: Said| match said {
        Said::Failed => failed = true,
        Said::Tagged | Said::Pushing if !told_runnable => {
            told_runnable = true;
            log.runnable().await;
        }
        Said::Tagged | Said::Pushing | Said::Other => {}
    };
    loop {
        // Checked before reading: what the writer wrote before it ended is read after.
        let done = !running();
        match read_log_line(&mut reader, &mut line, &mut cut).await {
            Ok(0) | Err(_) if done => break,
            Ok(0) | Err(_) => tokio::time::sleep(POLL).await,
            // A line still being written waits for its end.
            Ok(_) if !line.ends_with(b"\n") && !done => {}
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                said(relay_line(text.trim_end_matches('\n'), cut, log).await).await;
                line.clear();
                cut = false;
            }
        }
    }
    if !line.is_empty() {
        said(relay_line(&String::from_utf8_lossy(&line), cut, log).await).await;
    }
    failed
}
