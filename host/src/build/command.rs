//! Upstream's repo2docker command line and log relay, shared by the `local`
//! executor (a process here) and the `kubernetes` one (a build pod).

use bindery_runtime::bindings::{ContainerEngine, Repo2dockerPlan};
use serde_json::json;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

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
    /// With `content`, repo2docker builds that directory (the host fetched
    /// it) instead of fetching the repository, and `--ref` has no use.
    pub fn args(
        &self,
        request: &BuildRequest,
        plan: &Repo2dockerPlan,
        content: Option<&std::path::Path>,
    ) -> Vec<String> {
        let mut args = Vec::new();
        if content.is_none() {
            args.push(format!("--ref={}", request.resolved_ref));
        }
        args.extend([
            format!("--image={}", request.image),
            "--no-clean".into(),
            "--no-run".into(),
            "--json-logs".into(),
            "--user-name=jovyan".into(),
            "--user-id=1000".into(),
        ]);
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
        args.push(
            content.map_or_else(|| request.repo_url.clone(), |dir| dir.display().to_string()),
        );
        args
    }
}

/// The longest build-log line read: the rest of a longer one is dropped, so
/// a build that prints without newlines cannot fill Bindery's memory.
/// repo2docker's failure line carries a traceback, hence more than an event.
pub const MAX_LINE_BYTES: usize = 64 << 10;
/// The largest event a log line becomes: its message is cut to fit, and a
/// JSON line keeps only its `phase` and `message`.
pub const MAX_EVENT_BYTES: usize = 4 << 10;

/// Reads the next line of a build log into `line`, up to and including its
/// newline, keeping at most [`MAX_LINE_BYTES`] of it; bytes read, 0 at the
/// end. A line cut short still ends in its newline once that arrives, and
/// `cut` says it was cut. Called again after a partial line (no newline
/// yet), it goes on with the same line.
pub async fn read_log_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    cut: &mut bool,
) -> std::io::Result<usize> {
    let mut read = 0;
    loop {
        let buffer = reader.fill_buf().await?;
        if buffer.is_empty() {
            return Ok(read);
        }
        let (take, ended) = match buffer.iter().position(|&b| b == b'\n') {
            Some(at) => (at + 1, true),
            None => (buffer.len(), false),
        };
        let room = MAX_LINE_BYTES.saturating_sub(line.len());
        let kept = &buffer[..take.min(room)];
        line.extend_from_slice(kept);
        if take > room {
            *cut = true;
            if ended && !line.ends_with(b"\n") {
                line.push(b'\n');
            }
        }
        reader.consume(take);
        read += take;
        if ended {
            return Ok(read);
        }
    }
}

/// What a line of repo2docker's log said about the build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Said {
    /// The build failed.
    Failed,
    /// The engine has the image under its name (`Successfully tagged …`).
    Tagged,
    /// The image is built and being pushed.
    Pushing,
    /// Anything else.
    Other,
}

/// Sends one line of repo2docker's output as an event (its `--json-logs`
/// objects verbatim, other lines as `unknown`, a line [`read_log_line`] cut
/// short as `unknown` saying so); what it said.
pub async fn relay_line(line: &str, cut: bool, log: &BuildLogSender) -> Said {
    if line.trim().is_empty() {
        return Said::Other;
    }
    let event = bounded_event(line, cut);
    let said = match event.phase() {
        "failed" | "failure" => Said::Failed,
        "pushing" => Said::Pushing,
        // The engine's last build line; repo2docker tags only the image it builds.
        "building"
            if event.json().contains("Successfully tagged ")
                && message_of(&event).starts_with("Successfully tagged ") =>
        {
            Said::Tagged
        }
        _ => Said::Other,
    };
    // The flight may be gone (nobody to tell); the caller keeps draining so the builder is not blocked.
    let _ = log.send(event).await;
    said
}

fn message_of(event: &Event) -> String {
    serde_json::from_str::<serde_json::Value>(event.json())
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// `line` as an event of at most about [`MAX_EVENT_BYTES`].
fn bounded_event(line: &str, cut: bool) -> Event {
    let event = Event::log_line(line);
    if !cut && event.json().len() <= MAX_EVENT_BYTES {
        return event;
    }
    let parsed = (!cut)
        .then(|| serde_json::from_str::<serde_json::Value>(line.trim_end()).ok())
        .flatten();
    let (phase, message) = match &parsed {
        Some(object) => (
            object["phase"].as_str().unwrap_or("unknown"),
            object["message"].as_str().unwrap_or_default(),
        ),
        None => ("unknown", line),
    };
    let mut end = MAX_EVENT_BYTES.min(message.len());
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let message = message[..end].trim_end();
    Event::message(
        phase,
        format!("{message} [cut at {} KiB]\n", MAX_EVENT_BYTES >> 10),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bindery_runtime::bindings::{Executor, ResourceLimits};

    #[tokio::test]
    async fn a_log_line_longer_than_the_cap_is_cut_and_the_next_one_whole() {
        // A gigabyte without a newline would be held whole by `read_until`.
        let huge = vec![b'x'; 3 << 20];
        let input = [
            b"first\n".as_slice(),
            &huge,
            b"\n{\"phase\":\"building\",\"message\":\"ok\\n\"}\n",
        ]
        .concat();
        // A small buffer, as a pipe delivers it.
        let mut reader = tokio::io::BufReader::with_capacity(1024, input.as_slice());
        let (mut line, mut cut) = (Vec::new(), false);
        let mut lines = Vec::new();
        loop {
            let n = read_log_line(&mut reader, &mut line, &mut cut)
                .await
                .unwrap();
            if n == 0 {
                break;
            }
            assert!(
                line.len() <= MAX_LINE_BYTES + 1,
                "{} bytes held",
                line.len()
            );
            lines.push((String::from_utf8_lossy(&line).into_owned(), cut));
            line.clear();
            cut = false;
        }
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], ("first\n".to_string(), false));
        assert!(lines[1].1 && lines[1].0.ends_with('\n'));
        assert!(!lines[2].1);

        let (log, mut rx) = BuildLogSender::channel(4);
        let mut next = async || match rx.recv().await {
            Some(crate::build::Progress::Log(event)) => event,
            other => panic!("{other:?}"),
        };
        relay_line(lines[1].0.trim_end(), true, &log).await;
        let event = next().await;
        assert_eq!(event.phase(), "unknown");
        assert!(event.json().len() < MAX_EVENT_BYTES + 100);
        assert!(event.json().contains("[cut at 4 KiB]"));
        assert_eq!(
            relay_line(lines[2].0.trim_end(), false, &log).await,
            Said::Other
        );
        assert_eq!(next().await.phase(), "building");
        let tagged = r#"{"message": "Successfully tagged r/binder-x:1\n", "phase": "building"}"#;
        assert_eq!(relay_line(tagged, false, &log).await, Said::Tagged);
        next().await;
        let pushing = r#"{"phase": "pushing", "message": "Pushing image\n"}"#;
        assert_eq!(relay_line(pushing, false, &log).await, Said::Pushing);
        assert_eq!(next().await.phase(), "pushing");
        // repo2docker's failure, traceback and all: its phase and message stay.
        let failure = serde_json::json!({
            "phase": "failed",
            "message": format!("Error during build: boom {}", "é".repeat(3000)),
            "exc_info": "x".repeat(20_000),
        })
        .to_string();
        assert_eq!(
            relay_line(&failure, false, &log).await,
            Said::Failed,
            "it says the build failed"
        );
        let event = next().await;
        assert_eq!(event.phase(), "failed");
        assert!(event.json().len() < MAX_EVENT_BYTES + 100);
        assert!(!event.json().contains("exc_info"));
        let message = serde_json::from_str::<serde_json::Value>(event.json()).unwrap();
        assert!(
            message["message"]
                .as_str()
                .unwrap()
                .starts_with("Error during build: boom")
        );
    }

    #[test]
    fn upstreams_command() {
        let request = BuildRequest {
            image: "reg:5000/binder-x:abc".into(),
            build_name: "build-x".into(),
            repo_url: "https://example.org/r.git".into(),
            resolved_ref: "abc".into(),
            provider: "git".into(),
            spec: "x/abc".into(),
            build_slug: "x".into(),
            resolved_spec: "x".into(),
            ref_url: "x".into(),
            immutable: true,
            repo_config: Default::default(),
            credential: None,
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
            command.args(&request, &plan, None),
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
                .args(&request, &plan, None)
                .contains(&"--push".to_string())
        );
        // Fetched by the host: the directory, and no ref to check out.
        let fetched = command.args(&request, &plan, Some(std::path::Path::new("/b/repo")));
        assert_eq!(fetched.last().map(String::as_str), Some("/b/repo"));
        assert!(!fetched.iter().any(|a| a.starts_with("--ref")));
    }
}
