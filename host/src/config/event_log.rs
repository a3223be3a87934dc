//! `[event_log]`: where upstream's launch events go.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use url::Url;

/// Upstream BinderHub's event log (`EventLog`): one
/// `binderhub.jupyter.org/launch` event per successful launch, which
/// mybinder.org archives for its analytics.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EventLogConfig {
    /// Where the events go: `"stdout"`, `{ file = "…" }` (appended, one
    /// JSON object per line) or `{ http = "https://…" }` (one POST per
    /// event); unset: nowhere, as upstream by default.
    pub sink: Option<EventSink>,
    /// The events' `origin` (upstream's `normalized_origin`, e.g.
    /// `mybinder.org`); default: the host the launch was asked of.
    pub origin: Option<String>,
}

/// Where launch events are written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum EventSink {
    /// Standard output, apart from the logs (which go to standard error).
    Stdout,
    /// A file, appended to.
    File(PathBuf),
    /// An HTTP endpoint, sent each event as a JSON POST.
    Http(Url),
}
