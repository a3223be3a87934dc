//! Launching: asking JupyterHub to start a server from a built image. The
//! pipeline drives a [`Launcher`]; the JupyterHub REST launcher is [`hub`].

pub mod hub;
pub mod pool;
pub mod quota;

use futures_util::future::BoxFuture;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

/// What to launch, with the `user_options` upstream sends to the spawner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchRequest {
    /// The image.
    pub image: String,
    /// The repository.
    pub repo_url: String,
    /// Where a person sees the revision (`binder_ref_url`).
    pub ref_url: String,
    /// `binder_launch_host`.
    pub launch_host: String,
    /// `binder_request`: `v2/{provider}/{spec}`.
    pub binder_request: String,
    /// `binder_persistent_request`: `v2/{provider}/{resolved spec}`.
    pub persistent_request: String,
    /// `binder_client_ip`.
    pub client_ip: String,
    /// Per-repository settings (`repo_config`: the quota and more).
    pub repo_config: Map<String, Value>,
    /// The logged-in hub user to launch for (authenticated mode); `None`: a temporary user.
    pub user: Option<String>,
}

impl LaunchRequest {
    /// The image, the repository and the `binder_*` fields, as upstream puts
    /// them in the spawner's `user_options` and in the `ready` event.
    pub fn binder_fields(&self) -> Map<String, Value> {
        let fields = serde_json::json!({
            "image": self.image,
            "repo_url": self.repo_url,
            "binder_ref_url": self.ref_url,
            "binder_launch_host": self.launch_host,
            "binder_request": self.binder_request,
            "binder_persistent_request": self.persistent_request,
            "binder_client_ip": self.client_ip,
        });
        match fields {
            Value::Object(map) => map,
            _ => unreachable!("a JSON object literal"),
        }
    }
}

/// A running server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launched {
    /// The server's URL.
    pub url: String,
    /// The token that opens it.
    pub token: String,
    /// The hub user whose server it is.
    pub user: String,
    /// The server's name; empty for the user's default server.
    pub server: String,
    /// Whether the user is a temporary one, deleted with its server.
    pub temporary: bool,
}

/// Which quota refused a launch (upstream's `binderhub_launch_count` statuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    /// The total number of servers (`pod_quota`).
    Total,
    /// Servers of one repository (`repo_quota`).
    Repo,
}

/// Why a launch did not happen, in the words users see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LaunchError {
    /// A quota is full (upstream's "Too many users …" messages).
    #[error("{message}")]
    Quota {
        /// Which one.
        quota: Quota,
        /// What the user reads.
        message: String,
    },
    /// The hub failed or timed out.
    #[error("{0}")]
    Failed(String),
}

/// What `/health` reports of the hub and of the servers it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct LauncherHealth {
    /// Whether the hub's API answers, and why not.
    pub hub: Result<(), String>,
    /// The servers running or starting, for the "Pod quota" check.
    pub servers: Result<ServerCount, String>,
    /// The total quota, if one is set.
    pub quota: Option<u32>,
}

/// The servers and builds the "Pod quota" check counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerCount {
    /// Users' servers (pods, with `[quota.kubernetes]`).
    pub user_pods: usize,
    /// Build pods, when counted in the cluster; else the caller counts
    /// this replica's builds.
    pub build_pods: Option<usize>,
}

/// Starts servers.
pub trait Launcher: Send + Sync {
    /// Refuses a launch before any build when a quota is full.
    fn admit<'a>(&'a self, request: &'a LaunchRequest) -> BoxFuture<'a, Result<(), LaunchError>>;

    /// Starts a server, sending each progress message the hub reports to `progress`.
    fn launch<'a>(
        &'a self,
        request: &'a LaunchRequest,
        progress: mpsc::Sender<String>,
    ) -> BoxFuture<'a, Result<Launched, LaunchError>>;

    /// Removes, in the background, a server that was launched but will not
    /// be used: its launch started while the image was pushed, and the push
    /// failed or the client left.
    fn discard(&self, launched: &Launched);

    /// What `/health` shows of the hub and the servers running.
    fn health(&self) -> BoxFuture<'_, LauncherHealth>;
}
