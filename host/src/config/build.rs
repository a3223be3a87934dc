//! `[build]`: the strategy plugin and the local and Kubernetes executors.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Builds: a strategy plugin plans each one; an executor runs the plan.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BuildConfig {
    /// The build-strategy plugin (by the name it is loaded under).
    pub strategy: String,
    /// Where repositories are fetched and layers written; default `<data_dir>/builds`.
    pub work_dir: Option<PathBuf>,
    /// A repository bigger than this is refused: bytes fetched, and bytes its
    /// checkout would write (counted before anything is written).
    pub max_repo_bytes: u64,
    /// A revision with more files and directories than this is refused.
    pub max_repo_files: u64,
    /// A repository with one file bigger than this is refused: the host holds
    /// a file whole in memory while checking it out. GitHub's own limit.
    pub max_file_bytes: u64,
    /// Builds running at once on this replica (upstream's
    /// `concurrent_build_limit`); more wait, after upstream's "Waiting for
    /// build to start...", for a slot.
    pub max_concurrent: u64,
    /// Deadline of the host's fetch of a repository.
    pub fetch_timeout_secs: u64,
    /// A build's time limit when its plan gives none.
    pub timeout_secs: u64,
    /// The builder images a plan may run build pods of: references, or
    /// prefixes ending in `*`. A plugin chooses the image; the operator says
    /// which may run with the engine's socket.
    pub allowed_builder_images: Vec<String>,
    /// The `local` executor: the repo2docker CLI against a container engine.
    pub local: LocalBuildConfig,
    /// The `kubernetes` executor: build pods. Absent: plans naming it fail.
    pub kubernetes: Option<KubernetesBuildConfig>,
    /// Stop a build nobody has watched for this long (upstream's local
    /// builder stops at once when its client leaves). Unset: builds run to
    /// their end, as their image will be wanted again. A build pod is only
    /// no longer watched: the pod keeps building, as upstream's does.
    pub cancel_abandoned_after_secs: Option<u64>,
}

impl Default for BuildConfig {
    fn default() -> Self {
        BuildConfig {
            strategy: "layer-first".into(),
            work_dir: None,
            max_repo_bytes: 1 << 30,
            max_repo_files: 100_000,
            max_file_bytes: 100 << 20,
            max_concurrent: 32,
            fetch_timeout_secs: 300,
            timeout_secs: 3600,
            allowed_builder_images: vec!["quay.io/jupyterhub/repo2docker:*".into()],
            local: LocalBuildConfig::default(),
            kubernetes: None,
            cancel_abandoned_after_secs: None,
        }
    }
}

/// The `local` executor.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LocalBuildConfig {
    /// The repo2docker command.
    pub command: PathBuf,
    /// The engine's socket (`DOCKER_HOST`), e.g. `unix:///var/run/docker.sock`;
    /// unset: the engine's own default.
    pub docker_host: Option<String>,
    /// More environment for repo2docker, e.g. a proxy, or
    /// `R2D_DATAVERSE_INSTALLATIONS_URL` where GitHub cannot be reached.
    pub env: BTreeMap<String, String>,
    /// The hub's spawner starts servers from this engine's images
    /// (DockerSpawner on the same `docker_host`): a first launch then starts
    /// as soon as repo2docker has built the image, while it is pushed, and
    /// fails cleanly if the push does.
    pub spawner_shares_engine: bool,
}

impl Default for LocalBuildConfig {
    fn default() -> Self {
        LocalBuildConfig {
            command: "jupyter-repo2docker".into(),
            docker_host: None,
            env: BTreeMap::new(),
            spawner_shares_engine: false,
        }
    }
}

/// The `kubernetes` executor: upstream's `KubernetesBuildExecutor` and
/// `KubernetesCleaner`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesBuildConfig {
    /// The API server, e.g. `http://127.0.0.1:8001` behind `kubectl proxy`;
    /// unset: the in-cluster service account's.
    pub api_url: Option<url::Url>,
    /// Namespace of the build pods; unset: the service account's (in cluster), else `default`.
    pub namespace: Option<String>,
    /// The engine's socket on the node (`build_docker_host`), mounted at
    /// `/var/run/docker.sock`: `/var/run/docker.sock` (host), `/var/run/dind/docker.sock`
    /// (dind), `/var/run/pink/podman.sock` (pink); a `unix://` URL is also
    /// taken. Empty: no socket is mounted (e.g. a kaniko builder image).
    pub docker_host: String,
    /// A Secret holding `config.json`, mounted at `/root/.docker` for the push
    /// (upstream's `push_secret`). Unset: a `[registry]` login goes in
    /// `CONTAINER_ENGINE_REGISTRY_CREDENTIALS`, as upstream's `registry_credentials`.
    pub push_secret: Option<String>,
    /// `GIT_CREDENTIAL_ENV` for the builder (upstream's `git_credentials`).
    pub git_credentials: Option<String>,
    /// More environment for the builder (upstream's `extra_envs`).
    pub env: BTreeMap<String, String>,
    /// The build pods' node selector (upstream's `build_node_selector`).
    pub node_selector: BTreeMap<String, String>,
    /// Pull secrets for the builder image.
    pub image_pull_secrets: Vec<String>,
    /// Prefer the node a repository last built on (rendezvous hash of the
    /// repository URL over the image-builder daemonset's nodes), to reuse
    /// the engine's cache. Otherwise build pods spread over nodes.
    pub sticky_builds: bool,
    /// The cleaner deletes build pods older than this (upstream's `max_age`), running or not.
    pub max_age_secs: u64,
    /// How often the cleaner deletes finished and over-age build pods.
    pub cleaner_interval_secs: u64,
    /// Log lines shown to a request that finds the pod already building.
    pub log_tail_lines: i64,
}

impl Default for KubernetesBuildConfig {
    fn default() -> Self {
        KubernetesBuildConfig {
            api_url: None,
            namespace: None,
            docker_host: "/var/run/docker.sock".into(),
            push_secret: None,
            git_credentials: None,
            env: BTreeMap::new(),
            node_selector: BTreeMap::new(),
            image_pull_secrets: Vec::new(),
            sticky_builds: false,
            max_age_secs: 4 * 3600,
            cleaner_interval_secs: 60,
            log_tail_lines: 100,
        }
    }
}
