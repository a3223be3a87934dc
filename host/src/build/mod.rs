//! Builds: a build-strategy plugin plans how ([`strategy`]), an executor turns
//! the resolved repository into an image in the registry. The pipeline drives
//! one through [`BuildExecutor`]; the executors themselves (Kubernetes build
//! pods, the local repo2docker CLI, the daemonless layer builder) live beside
//! this trait.

mod builder;
pub mod checkout;
mod command;
mod dockerignore;
pub mod fetch;
pub mod kubernetes;
pub mod layer;
pub mod local;
pub mod strategy;

pub use builder::Builder;

use std::sync::Arc;

use bindery_runtime::capabilities::UserSecret;
use futures_util::future::BoxFuture;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use crate::cache::BuildRecord;
use crate::events::Event;

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildRequest {
    /// The image to produce, by upstream's naming rule.
    pub image: String,
    /// Upstream's build pod name for it.
    pub build_name: String,
    /// The repository as the provider names it (a git remote, a DOI).
    pub repo_url: String,
    /// The revision.
    pub resolved_ref: String,
    /// The provider prefix and spec it was launched with.
    pub provider: String,
    /// The spec.
    pub spec: String,
    /// The rest of the provider's resolution, handed back to its `content`
    /// to learn how the revision is fetched.
    pub build_slug: String,
    /// The spec pinned to the revision.
    pub resolved_spec: String,
    /// Where a person sees the revision.
    pub ref_url: String,
    /// Whether the resolution is immutable.
    pub immutable: bool,
    /// Per-repository settings (`repo_config`).
    pub repo_config: Map<String, Value>,
    /// The launching user's own credential, for a private build: the
    /// provider's content call and the fetch use it in place of the
    /// plugin's secret. Never stored or logged.
    pub credential: Option<Arc<UserSecret>>,
}

/// A finished build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The pushed manifest's digest, when the executor knows it.
    pub digest: Option<String>,
}

/// A failed build, with the message users see (ending in a newline, or
/// empty when the log already said why, as upstream's bare `failed` does).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BuildFailure {
    /// What went wrong.
    pub message: String,
}

impl BuildFailure {
    /// A failure saying `message`, ending in a newline as event messages do.
    pub fn new(message: impl std::fmt::Display) -> BuildFailure {
        let mut message = message.to_string();
        if !message.ends_with('\n') {
            message.push('\n');
        }
        BuildFailure { message }
    }
}

/// What an executor tells a build's watchers, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// A log event.
    Log(Event),
    /// The hub can run the image now, though it is still being pushed: it
    /// is in the engine the hub's spawner starts servers from
    /// (`build.local.spawner_shares_engine`).
    Runnable,
}

/// Where an executor sends the build's log and progress.
#[derive(Debug, Clone)]
pub struct BuildLogSender(mpsc::Sender<Progress>);

/// The build's watchers are gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unwatched;

impl BuildLogSender {
    /// A sender, and the receiver its progress arrives on; at most `buffer`
    /// items wait to be taken.
    pub fn channel(buffer: usize) -> (BuildLogSender, mpsc::Receiver<Progress>) {
        let (tx, rx) = mpsc::channel(buffer);
        (BuildLogSender(tx), rx)
    }

    /// Sends a log event, waiting while the buffer is full.
    pub async fn send(&self, event: Event) -> Result<(), Unwatched> {
        self.0
            .send(Progress::Log(event))
            .await
            .map_err(|_| Unwatched)
    }

    /// Says that the image can be run before its push ends.
    pub async fn runnable(&self) {
        let _ = self.0.send(Progress::Runnable).await;
    }
}

/// Tells the build's watchers something in `phase`; nobody listening is not an error.
async fn say(log: &BuildLogSender, phase: &str, message: String) {
    let _ = log.send(Event::message(phase, message)).await;
}

/// What `/versions` says builds run with: upstream's `builder_info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuilderInfo {
    /// Build pods run this repo2docker image (upstream's Kubernetes builds).
    Image(String),
    /// repo2docker runs on this machine: its version, when it tells one.
    Local(Option<String>),
}

/// Runs builds.
pub trait BuildExecutor: Send + Sync {
    /// The name records and metrics use, e.g. `kubernetes`.
    fn name(&self) -> &'static str;

    /// What builds run with, unless a plan says otherwise.
    fn builder_info(&self) -> BoxFuture<'_, BuilderInfo>;

    /// Builds and pushes `request.image`, sending log events to `log`.
    fn build<'a>(
        &'a self,
        request: &'a BuildRequest,
        log: BuildLogSender,
    ) -> BoxFuture<'a, Result<Built, BuildFailure>>;

    /// Watches a build that was running when the host stopped. `None` when the
    /// executor cannot (a local process died with the host).
    fn reattach<'a>(
        &'a self,
        record: &'a BuildRecord,
        log: BuildLogSender,
    ) -> Option<BoxFuture<'a, Result<Built, BuildFailure>>> {
        let _ = (record, log);
        None
    }

    /// The handle recorded for `request`, for [`BuildExecutor::reattach`].
    fn handle(&self, request: &BuildRequest) -> Option<String> {
        let _ = request;
        None
    }
}
