//! The launch event log: upstream BinderHub's `binderhub.jupyter.org/launch`
//! events (schema version 5), one JSON object per successful launch, in its
//! field names, to the configured sink. A writer task owns the sink, so a
//! slow file system or collector never holds a launch; events past its
//! buffer are dropped and counted in the log.

use std::io::Write;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::config::{EventLogConfig, EventSink};

/// The schema's id and the version these events follow.
pub const LAUNCH_SCHEMA: &str = "binderhub.jupyter.org/launch";
/// Its version: provider, spec, ref, status, build_token, origin.
pub const LAUNCH_SCHEMA_VERSION: u32 = 5;
/// Events waiting for the writer.
const BUFFER: usize = 1024;

/// One launch, in upstream's capsule: the envelope's `timestamp`, `schema`
/// and `version`, and the event's fields beside them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LaunchEvent {
    /// ISO 8601, UTC.
    pub timestamp: String,
    /// [`LAUNCH_SCHEMA`].
    pub schema: &'static str,
    /// [`LAUNCH_SCHEMA_VERSION`].
    pub version: u32,
    /// Upstream's provider name (`GitHub`, `Git`, `Zenodo`, …).
    pub provider: String,
    /// The spec as asked.
    pub spec: String,
    /// The resolved ref.
    #[serde(rename = "ref")]
    pub resolved_ref: String,
    /// `success` (upstream emits only successful launches).
    pub status: &'static str,
    /// Whether a build token admitted the launch.
    pub build_token: bool,
    /// The deployment's host.
    pub origin: String,
}

impl LaunchEvent {
    /// A successful launch now.
    pub fn success(
        provider_plugin: &str,
        spec: &str,
        resolved_ref: &str,
        build_token: bool,
        origin: &str,
    ) -> LaunchEvent {
        LaunchEvent {
            timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            schema: LAUNCH_SCHEMA,
            version: LAUNCH_SCHEMA_VERSION,
            provider: upstream_name(provider_plugin).into(),
            spec: spec.into(),
            resolved_ref: resolved_ref.into(),
            status: "success",
            build_token,
            origin: origin.into(),
        }
    }
}

/// The bundled providers' prefixes and upstream's names of them (the
/// schema's `provider` enum).
const UPSTREAM_NAMES: &[(&str, &str)] = &[
    ("gh", "GitHub"),
    ("gist", "Gist"),
    ("gl", "GitLab"),
    ("git", "Git"),
    ("zenodo", "Zenodo"),
    ("figshare", "Figshare"),
    ("hydroshare", "Hydroshare"),
    ("dataverse", "Dataverse"),
    ("swh", "SWHID"),
    ("ckan", "CKAN"),
];

/// Upstream's name of a bundled provider; any other provider by its own
/// plugin name.
pub fn upstream_name(plugin: &str) -> &str {
    UPSTREAM_NAMES
        .iter()
        .find(|(prefix, _)| *prefix == plugin)
        .map_or(plugin, |(_, name)| name)
}

/// The prefix of the provider an event names: a bundled one by upstream's
/// name (in any case), any other by its own.
pub fn provider_prefix(event_provider: &str) -> &str {
    UPSTREAM_NAMES
        .iter()
        .find(|(_, name)| name.eq_ignore_ascii_case(event_provider))
        .map_or(event_provider, |(prefix, _)| prefix)
}

/// Where launches are recorded.
pub struct EventLog {
    events: mpsc::Sender<LaunchEvent>,
    origin: Option<String>,
}

impl EventLog {
    /// The log `config` asks for and the task that writes it; `None` when
    /// it names no sink.
    pub fn new(
        config: &EventLogConfig,
    ) -> Option<(EventLog, impl Future<Output = ()> + Send + 'static)> {
        let sink = config.sink.clone()?;
        let (events, rx) = mpsc::channel(BUFFER);
        let log = EventLog {
            events,
            origin: config.origin.clone(),
        };
        Some((log, write(sink, rx)))
    }

    /// The configured origin, else `host` (where the launch was asked).
    pub fn origin<'a>(&'a self, host: &'a str) -> &'a str {
        self.origin.as_deref().unwrap_or(host)
    }

    /// Records `event`, or drops it when the writer is this far behind.
    pub fn record(&self, event: LaunchEvent) {
        if self.events.try_send(event).is_err() {
            tracing::warn!("the launch event log is behind or gone; an event was dropped");
        }
    }
}

/// Writes events to `sink` as they come, one JSON object per line (or POST).
async fn write(sink: EventSink, mut events: mpsc::Receiver<LaunchEvent>) {
    let client = reqwest::Client::new();
    while let Some(event) = events.recv().await {
        let line = serde_json::to_string(&event).expect("events serialize");
        let written = match &sink {
            EventSink::Stdout => {
                writeln!(std::io::stdout().lock(), "{line}").map_err(|e| e.to_string())
            }
            EventSink::File(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || {
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)
                        .and_then(|mut f| writeln!(f, "{line}"))
                        .map_err(|e| format!("{}: {e}", path.display()))
                })
                .await
                .unwrap_or_else(|e| Err(e.to_string()))
            }
            EventSink::Http(url) => client
                .post(url.clone())
                .header("content-type", "application/json")
                .body(line)
                .timeout(std::time::Duration::from_secs(10))
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map(drop)
                .map_err(|e| e.to_string()),
        };
        if let Err(e) = written {
            tracing::warn!("a launch event could not be written: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_upstreams_names_and_capsule() {
        let e = LaunchEvent::success("gh", "a/b/HEAD", "abc", true, "binder.example.org");
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["schema"], "binderhub.jupyter.org/launch");
        assert_eq!(json["version"], 5);
        assert_eq!(json["provider"], "GitHub");
        assert_eq!(json["ref"], "abc");
        assert_eq!(json["build_token"], true);
        assert!(json["timestamp"].as_str().unwrap().ends_with('Z'));
        let campus = LaunchEvent::success("campus", "x", "y", false, "o");
        assert_eq!(campus.provider, "campus");
    }
}
