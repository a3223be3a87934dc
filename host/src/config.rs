//! Bindery's configuration: embedded defaults, then a TOML file, then
//! environment variables (`BINDERY_` prefix, `__` between nested keys, e.g.
//! `BINDERY_PLUGIN_RUNTIME__CALL_TIMEOUT_MS=500`). `BINDERY_CONFIG` (the file)
//! and `BINDERY_LOG` (the log filter) are the command line's, not keys.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The embedded defaults, including the grants of the bundled plugins.
pub const DEFAULTS_TOML: &str = include_str!("defaults.toml");

/// A configuration that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file, a key or a value is wrong.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        // figment's messages name the key and the source (file or env variable).
        let all: Vec<String> = e.into_iter().map(|e| e.to_string()).collect();
        ConfigError::Invalid(all.join("; "))
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP service listens on.
    pub listen: SocketAddr,
    /// Where Bindery keeps its state: the sled cache, the plugin compile cache, pulled OCI plugins and build directories.
    pub data_dir: PathBuf,
    /// Bearer token for `/admin/*`; without one the admin routes are off.
    #[serde(default)]
    pub admin_token: Option<String>,
    /// Limits and behaviour of the plugin runtime.
    #[serde(default)]
    pub plugin_runtime: RuntimeConfig,
    /// Plugins by the name they are loaded under.
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginConfig>,
    /// How long cached resolutions stay fresh, and how many are kept.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Launch quotas (upstream's `per_repo_quota`, `per_repo_quota_higher`).
    #[serde(default)]
    pub quota: QuotaConfig,
    /// The HTTP surface: paths, CORS, bans, the rate limit and build tokens.
    #[serde(default)]
    pub web: WebConfig,
    /// Where images are named, looked up and pushed.
    #[serde(default)]
    pub registry: RegistryConfig,
    /// How images are built: the strategy plugin and the executors.
    #[serde(default)]
    pub build: BuildConfig,
    /// The JupyterHub that runs launched servers.
    #[serde(default)]
    pub hub: HubConfig,
    /// Stopping servers: the cull-policy chain and the culler.
    #[serde(default)]
    pub cull: CullConfig,
}

/// The JupyterHub launches go to (upstream's `hub_url`, `hub_api_token` and
/// `Launcher` settings).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubConfig {
    /// The hub's public URL (user servers are at `{url}user/{name}/`). Unset: no launches.
    pub url: Option<url::Url>,
    /// Its REST API; default `{url}hub/api/`.
    pub api_url: Option<url::Url>,
    /// A service token with the scopes `admin:users admin:servers
    /// read:users:activity list:users access:servers`.
    pub api_token: Option<SecretSource>,
    /// One API request's deadline.
    pub request_timeout_secs: u64,
    /// Retries of a request the hub answers with 500 or more, and of a failed launch (a fresh user each time).
    pub retries: u32,
    /// The first retry's delay; it doubles.
    pub retry_delay_ms: u64,
    /// A launch not ready by then fails (upstream's `launch_timeout`).
    pub launch_timeout_secs: u64,
    /// Users per listing page (`limit=`); 0: the hub's default.
    pub page_size: u32,
    /// Launch for the hub user whose token the request carries, as a named
    /// server, instead of a temporary user (upstream's `auth_enabled`).
    pub auth_enabled: bool,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            url: None,
            api_url: None,
            api_token: Some(SecretSource::Env("JUPYTERHUB_API_TOKEN".into())),
            request_timeout_secs: 60,
            retries: 4,
            retry_delay_ms: 4000,
            launch_timeout_secs: 600,
            page_size: 0,
            auth_enabled: false,
        }
    }
}

/// The culler: which cull-policy plugins decide, how often, and who leads.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CullConfig {
    /// Whether this host culls (it does only with a hub).
    pub enabled: bool,
    /// Seconds between passes; the first runs at start.
    pub every_secs: u64,
    /// Cull-policy plugins, asked in order; the first that decides wins.
    pub policies: Vec<String>,
    /// Hub requests in flight at once during a pass.
    pub concurrency: usize,
    /// Several replicas: only the holder of this Kubernetes Lease culls.
    /// Unset: this host is the only one, and culls.
    pub leader: Option<LeaderConfig>,
}

impl Default for CullConfig {
    fn default() -> Self {
        CullConfig {
            enabled: true,
            every_secs: 300,
            policies: vec!["idle".into()],
            concurrency: 10,
            leader: None,
        }
    }
}

/// Leader election over a `coordination.k8s.io/v1` Lease.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaderConfig {
    /// The API server; unset: the in-cluster service account's.
    pub api_url: Option<url::Url>,
    /// The Lease's namespace; unset: the service account's.
    pub namespace: Option<String>,
    /// The Lease's name.
    pub lease: String,
    /// This replica's name in the Lease; default: the host name.
    pub identity: Option<String>,
    /// A leader that has not renewed for this long is replaced.
    pub lease_secs: u64,
}

impl Default for LeaderConfig {
    fn default() -> Self {
        LeaderConfig {
            api_url: None,
            namespace: None,
            lease: "bindery-culler".into(),
            identity: None,
            lease_secs: 15,
        }
    }
}

/// Builds: a strategy plugin plans each one; an executor runs the plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BuildConfig {
    /// The build-strategy plugin (by the name it is loaded under).
    pub strategy: String,
    /// Where repositories are fetched and layers written; default `<data_dir>/builds`.
    pub work_dir: Option<PathBuf>,
    /// A repository bigger than this (bytes fetched) is refused.
    pub max_repo_bytes: u64,
    /// Deadline of the host's fetch of a repository.
    pub fetch_timeout_secs: u64,
    /// A build's time limit when its plan gives none.
    pub timeout_secs: u64,
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
            fetch_timeout_secs: 300,
            timeout_secs: 3600,
            local: LocalBuildConfig::default(),
            kubernetes: None,
            cancel_abandoned_after_secs: None,
        }
    }
}

/// The `local` executor.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
}

impl Default for LocalBuildConfig {
    fn default() -> Self {
        LocalBuildConfig {
            command: "jupyter-repo2docker".into(),
            docker_host: None,
            env: BTreeMap::new(),
        }
    }
}

/// The `kubernetes` executor: upstream's `KubernetesBuildExecutor` and
/// `KubernetesCleaner`.
#[derive(Debug, Clone, Serialize, Deserialize)]
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

/// The HTTP surface (upstream's `BinderHub` web settings).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Path every route sits under; starts and ends with `/`.
    pub base_url: String,
    /// Base of badge and launch links (`binder_launch_host`); default
    /// `{proto}://{host}{base_url}` of the request.
    pub badge_base_url: Option<String>,
    /// `Access-Control-Allow-Origin` on every answer (mybinder.org: `*`).
    pub cors_allow_origin: Option<String>,
    /// Serve only `/build`, `/versions`, `/health`, `/metrics` and
    /// `/api/repoproviders`, and allow `build_only=true`.
    pub api_only: bool,
    /// Client networks refused with 403, each with the label the message names.
    pub ban_networks: Vec<BanNetwork>,
    /// Proxies whose `X-Forwarded-For` is believed; from anyone else the
    /// connection's own address is the client's.
    pub trusted_proxies: Vec<IpNet>,
    /// Launches per client address per window; `limit = 0` turns it off.
    pub rate_limit: RateLimitConfig,
    /// HS256 key of build tokens (hex); a random one per start when unset,
    /// which replicas behind one load balancer must not rely on.
    pub build_token_secret: Option<SecretSource>,
    /// Refuse a build token used from another origin than it was issued to.
    pub build_token_check_origin: bool,
    /// Seconds between `:keepalive` comments on an event stream.
    pub keepalive_secs: u64,
    /// Text above the launch form (HTML, trusted: it is the operator's).
    pub banner_html: String,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            base_url: "/".into(),
            badge_base_url: None,
            cors_allow_origin: None,
            api_only: false,
            ban_networks: Vec::new(),
            trusted_proxies: vec![
                "127.0.0.0/8".parse().expect("net"),
                "::1/128".parse().expect("net"),
            ],
            rate_limit: RateLimitConfig::default(),
            build_token_secret: None,
            build_token_check_origin: true,
            keepalive_secs: 25,
            banner_html: String::new(),
        }
    }
}

/// A client network refused with `Requests from {label} are not allowed`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BanNetwork {
    /// The network, e.g. `192.0.2.0/24`.
    pub network: IpNet,
    /// What the refusal calls it.
    pub label: String,
}

/// Upstream's per-address fixed-window limiter.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Requests per window; 0 turns the limiter off.
    pub limit: u32,
    /// The window.
    pub period_secs: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            limit: 10,
            period_secs: 3600,
        }
    }
}

/// The image registry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Put in front of every image name, e.g. `registry.example.org/binder/i-`
    /// (upstream's `image_prefix`).
    pub image_prefix: String,
    /// The registry's API, e.g. `https://registry.example.org`. Unset: no
    /// registry is asked, and only builds this host recorded count as present.
    pub url: Option<url::Url>,
    /// Basic-auth user; with `password`.
    pub username: Option<String>,
    /// Basic-auth password, also offered to a bearer-token service.
    pub password: Option<SecretSource>,
    /// A Docker `config.json` whose `auths` entry for the registry is used
    /// when no username is set (the build pods' push secret, mounted).
    pub docker_config: Option<PathBuf>,
    /// Tries per look-up when the registry fails or is unreachable.
    pub retries: u32,
    /// Deadline of one request.
    pub timeout_ms: u64,
    /// How long a found image is believed without asking again.
    pub found_ttl_secs: u64,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            image_prefix: String::new(),
            url: None,
            username: None,
            password: None,
            docker_config: None,
            retries: 3,
            timeout_ms: 10_000,
            found_ttl_secs: 600,
        }
    }
}

/// The sled cache of resolved refs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// How long a branch, tag, `HEAD` or unversioned record stays resolved.
    /// Immutable refs (a sha, a versioned DOI) stay until evicted.
    pub moving_ref_ttl_secs: u64,
    /// How long "not found" is remembered (upstream: 300 s).
    pub not_found_ttl_secs: u64,
    /// Resolutions kept; the oldest are evicted past this.
    pub max_refs: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            moving_ref_ttl_secs: 60,
            not_found_ttl_secs: 300,
            max_refs: 100_000,
        }
    }
}

/// Launch quotas; unset means unlimited.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaConfig {
    /// Servers the hub may run at once (upstream's `LaunchQuota.total_quota`); 0 closes launches.
    pub total: Option<u32>,
    /// Servers one repository may run at once.
    pub per_repo: Option<u32>,
    /// The same for specs matching a provider's `high_quota_specs`.
    pub per_repo_higher: Option<u32>,
}

/// Per-repository settings for specs matching `pattern` (upstream's `spec_config`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecConfig {
    /// A regex matched case-insensitively at the start of the raw spec.
    pub pattern: String,
    /// Settings merged into the repository's config, e.g. `{ quota = 20 }`.
    pub config: serde_json::Map<String, serde_json::Value>,
}

/// Limits and behaviour of the plugin runtime.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Linear-memory cap per call, in MiB.
    pub memory_limit_mib: u64,
    /// Wall-clock deadline per call (guest code and host imports together).
    pub call_timeout_ms: u64,
    /// Instruction budget per call; off when unset. Setting it anywhere turns on
    /// fuel metering in the engine, which changes the compiled-code cache key.
    pub fuel: Option<u64>,
    /// Plugin instances alive at once; further calls wait for a slot.
    pub max_concurrent_calls: usize,
    /// Granularity of deadline checks.
    pub epoch_tick_ms: u64,
    /// How often plugin files, and the config file's `[plugins.*]` entries, are checked for changes; 0 turns watching off.
    pub reload_interval_ms: u64,
    /// Limits of the `http` capability.
    pub http: HttpLimits,
    /// Deadline of one `git ls-remote`.
    pub git_timeout_ms: u64,
    /// Where compiled plugins are cached; default `<data_dir>/plugin-cache`.
    /// Replicas of one version may share it.
    pub compile_cache_dir: Option<PathBuf>,
    /// Plugins pulled from OCI registries (`oci = "oci://…@sha256:…"`).
    pub oci: OciPluginConfig,
}

/// Where `oci://` plugins come from and where they are kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OciPluginConfig {
    /// Registries (`host:port`) reached over plain HTTP, e.g. a loopback one.
    pub insecure_registries: Vec<String>,
    /// Basic-auth user for pulls and `bindery plugin push`; with `password`.
    pub username: Option<String>,
    /// Its password.
    pub password: Option<SecretSource>,
    /// Pulled components, by digest; default `<data_dir>/plugin-oci`.
    pub cache_dir: Option<PathBuf>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            memory_limit_mib: 64,
            call_timeout_ms: 10_000,
            fuel: None,
            max_concurrent_calls: 64,
            epoch_tick_ms: 5,
            reload_interval_ms: 2_000,
            http: HttpLimits::default(),
            git_timeout_ms: 20_000,
            compile_cache_dir: None,
            oci: OciPluginConfig::default(),
        }
    }
}

impl RuntimeConfig {
    /// The per-call deadline.
    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms)
    }
}

/// Limits of the `http` capability.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpLimits {
    /// Timeout when the plugin names none.
    pub default_timeout_ms: u64,
    /// The most a plugin may ask for.
    pub max_timeout_ms: u64,
    /// Response bodies larger than this fail with `too-large`.
    pub max_response_bytes: u64,
    /// Redirect hops followed before `redirect-loop`.
    pub max_redirects: u32,
    /// Entries of the per-plugin ETag cache.
    pub etag_cache_entries: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            default_timeout_ms: 10_000,
            max_timeout_ms: 30_000,
            max_response_bytes: 8 << 20,
            max_redirects: 5,
            etag_cache_entries: 1024,
        }
    }
}

/// One plugin: where it comes from and what it is granted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// A component file on disk.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// A plugin compiled into the binary, by name.
    #[serde(default)]
    pub bundled: Option<String>,
    /// A component in an OCI registry, pinned by digest:
    /// `oci://registry.example.org/plugins/campus@sha256:…`.
    #[serde(default)]
    pub oci: Option<String>,
    /// Set false to keep a configured (or bundled) plugin unloaded.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Hosts reachable through `http` and `git`: names, `*.domain` or `*`.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Non-public networks those hosts may resolve to (e.g. `127.0.0.0/8` for a test forge).
    #[serde(default)]
    pub private_networks: Vec<IpNet>,
    /// Secrets by the name the plugin asks for, and where the host reads them.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSource>,
    /// Values the plugin reads through `config`.
    #[serde(default)]
    pub config: BTreeMap<String, toml::Value>,
    /// Overrides of the runtime's per-call limits.
    #[serde(default)]
    pub memory_limit_mib: Option<u64>,
    /// See [`RuntimeConfig::call_timeout_ms`].
    #[serde(default)]
    pub call_timeout_ms: Option<u64>,
    /// See [`RuntimeConfig::fuel`].
    #[serde(default)]
    pub fuel: Option<u64>,
    /// Providers: specs refused, as regexes matched case-insensitively at the
    /// start of the raw spec (Python's `re.match`, as upstream).
    #[serde(default)]
    pub banned_specs: Vec<String>,
    /// Providers: when set, only specs matching one of these launch.
    #[serde(default)]
    pub allowed_specs: Vec<String>,
    /// Providers: specs given `quota.per_repo_higher`.
    #[serde(default)]
    pub high_quota_specs: Vec<String>,
    /// Providers: per-repository settings by spec pattern, applied in order.
    #[serde(default)]
    pub spec_config: Vec<SpecConfig>,
}

fn yes() -> bool {
    true
}

/// Where a secret's value comes from. Read at each use, so rotation needs no restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum SecretSource {
    /// An environment variable of the host.
    Env(String),
    /// A file, e.g. a mounted Kubernetes Secret; trailing newlines are trimmed.
    File(PathBuf),
}

impl SecretSource {
    /// The current value; `None` when unset or empty.
    pub fn read(&self) -> Option<String> {
        let value = match self {
            SecretSource::Env(var) => std::env::var(var).ok(),
            SecretSource::File(path) => std::fs::read_to_string(path)
                .ok()
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string()),
        };
        value.filter(|v| !v.is_empty())
    }
}

/// Where a plugin's component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    /// A file on disk, watched for changes.
    Path(PathBuf),
    /// Compiled into the binary.
    Bundled(String),
    /// In an OCI registry: `host/repository@sha256:…` (without `oci://`).
    Oci(String),
}

impl std::fmt::Display for PluginSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginSource::Path(p) => write!(f, "{}", p.display()),
            PluginSource::Bundled(n) => write!(f, "bundled:{n}"),
            PluginSource::Oci(r) => write!(f, "oci://{r}"),
        }
    }
}

impl PluginConfig {
    /// The source, or why the entry names none or two.
    pub fn source(&self, name: &str) -> Result<PluginSource, ConfigError> {
        match (&self.path, &self.bundled, &self.oci) {
            (Some(p), None, None) => Ok(PluginSource::Path(p.clone())),
            (None, Some(b), None) => Ok(PluginSource::Bundled(b.clone())),
            (None, None, Some(r)) => {
                let reference = r.strip_prefix("oci://").unwrap_or(r);
                let pinned = reference
                    .rsplit_once("@sha256:")
                    .is_some_and(|(repo, hex)| {
                        repo.contains('/')
                            && hex.len() == 64
                            && hex
                                .bytes()
                                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                    });
                if !pinned {
                    return Err(ConfigError::Invalid(format!(
                        "[plugins.{name}] oci = {r:?}: pin the component by digest, `oci://<registry>/<repository>@sha256:<64 hex>` (`bindery plugin push` prints it)"
                    )));
                }
                Ok(PluginSource::Oci(reference.to_string()))
            }
            (None, None, None) => Err(ConfigError::Invalid(format!(
                "[plugins.{name}] needs `path = \"…/plugin.wasm\"`, `bundled = \"<name>\"` or `oci = \"oci://…@sha256:…\"`"
            ))),
            _ => Err(ConfigError::Invalid(format!(
                "[plugins.{name}] names more than one of `path`, `bundled` and `oci`; keep one"
            ))),
        }
    }

    /// The config table as the strings the `config` import returns.
    pub fn config_strings(&self) -> BTreeMap<String, String> {
        self.config
            .iter()
            .map(|(k, v)| {
                let s = match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), s)
            })
            .collect()
    }
}

impl Config {
    /// Defaults, then `file` if given, then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::new()
            .merge(Serialized::defaults(Self::builtin()))
            .merge(Toml::string(DEFAULTS_TOML));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::Invalid(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        let config: Config = figment
            .merge(
                Env::prefixed("BINDERY_")
                    .ignore(&["config", "log"])
                    .split("__"),
            )
            .extract()?;
        config.validate()?;
        Ok(config)
    }

    /// Values no file can leave unset.
    fn builtin() -> serde_json::Value {
        serde_json::json!({
            "listen": "127.0.0.1:8585",
            "data_dir": default_data_dir(),
        })
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let rt = &self.plugin_runtime;
        if rt.call_timeout_ms == 0 || rt.epoch_tick_ms == 0 || rt.max_concurrent_calls == 0 {
            return Err(ConfigError::Invalid(
                "plugin_runtime: call_timeout_ms, epoch_tick_ms and max_concurrent_calls must be positive"
                    .into(),
            ));
        }
        for (name, p) in &self.plugins {
            p.source(name)?;
        }
        let base = &self.web.base_url;
        if !base.starts_with('/') || !base.ends_with('/') {
            return Err(ConfigError::Invalid(format!(
                "web.base_url must start and end with `/` (got {base:?})"
            )));
        }
        if let Some(url) = &self.registry.url {
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(ConfigError::Invalid(format!(
                    "registry.url must be an http(s) URL with a host (got {url})"
                )));
            }
        }
        let b = &self.build;
        if b.timeout_secs == 0 || b.fetch_timeout_secs == 0 || b.max_repo_bytes == 0 {
            return Err(ConfigError::Invalid(
                "build: timeout_secs, fetch_timeout_secs and max_repo_bytes must be positive"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Where builds fetch repositories and write layers.
    pub fn build_dir(&self) -> PathBuf {
        self.build
            .work_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("builds"))
    }

    /// The enabled plugins with their sources.
    pub fn enabled_plugins(&self) -> impl Iterator<Item = (&str, &PluginConfig)> {
        self.plugins
            .iter()
            .filter(|(_, p)| p.enabled)
            .map(|(n, p)| (n.as_str(), p))
    }
}

/// `$XDG_DATA_HOME/bindery`, else `~/.local/share/bindery`, else `./bindery-data`.
fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(d).join("bindery");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/bindery"),
        None => PathBuf::from("bindery-data"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bindery.toml");
        std::fs::write(
            &file,
            r#"
listen = "127.0.0.1:9000"
[plugin_runtime]
call_timeout_ms = 750
[plugins.mine]
path = "/plugins/mine.wasm"
hosts = ["forge.example.edu"]
private_networks = ["10.0.0.0/8"]
secrets = { token = { env = "MINE_TOKEN" } }
config = { base = "https://forge.example.edu", retries = 3 }
"#,
        )
        .unwrap();
        figment::Jail::expect_with(|jail| {
            jail.set_env("BINDERY_PLUGIN_RUNTIME__MEMORY_LIMIT_MIB", "16");
            jail.set_env("BINDERY_CONFIG", "/elsewhere.toml");
            jail.set_env("BINDERY_LOG", "debug");
            let c = Config::load(Some(&file)).map_err(|e| e.to_string())?;
            assert_eq!(c.listen.port(), 9000);
            assert_eq!(c.plugin_runtime.call_timeout_ms, 750);
            assert_eq!(c.plugin_runtime.memory_limit_mib, 16);
            let mine = &c.plugins["mine"];
            assert_eq!(
                mine.source("mine").unwrap(),
                PluginSource::Path("/plugins/mine.wasm".into())
            );
            assert_eq!(
                mine.secrets["token"],
                SecretSource::Env("MINE_TOKEN".into())
            );
            assert_eq!(mine.config_strings()["retries"], "3");
            Ok(())
        });
    }

    #[test]
    fn mistakes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bindery.toml");
        std::fs::write(&file, "[plugins.x]\nhosts = []\n").unwrap();
        let e = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(e.contains("[plugins.x] needs `path"), "{e}");
        std::fs::write(&file, "lissten = \"127.0.0.1:1\"\n").unwrap();
        let e = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(e.contains("lissten"), "{e}");
        let e = Config::load(Some(&dir.path().join("nope.toml")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not exist"), "{e}");
    }
}
