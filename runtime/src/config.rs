//! The runtime's configuration, as the host's `[plugin_runtime]` and
//! `[plugins.*]` sections read it: the runtime's limits, and each plugin's
//! source and grants.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// A plugin entry that names no source, or more than one, or an unpinned OCI
/// reference; the message names the entry and says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PluginConfigError(pub String);

/// Per-repository settings for specs matching `pattern` (upstream's `spec_config`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpecConfig {
    /// A regex matched case-insensitively at the start of the raw spec.
    pub pattern: String,
    /// Settings merged into the repository's config, e.g. `{ quota = 20 }`.
    pub config: serde_json::Map<String, serde_json::Value>,
}

/// Limits and behaviour of the plugin runtime.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Linear-memory cap per call, in MiB.
    pub memory_limit_mib: u64,
    /// Memory of all plugin calls together (guests' linear memory and the
    /// host's response buffers for them), in MiB; growth past it fails the
    /// call that asked. This, not slots × the per-call cap, is what plugins
    /// can cost the host.
    pub memory_budget_mib: u64,
    /// Wall-clock deadline per call (guest code and host imports together).
    pub call_timeout_ms: u64,
    /// Instruction budget per call; off when unset. Setting it anywhere turns on
    /// fuel metering in the engine, which changes the compiled-code cache key.
    pub fuel: Option<u64>,
    /// Plugin instances alive at once; further calls wait for a slot.
    pub max_concurrent_calls: usize,
    /// Calls into one plugin at once, so one provider whose upstream hangs
    /// cannot take every slot from the others. A call waits for its slots at
    /// most its own deadline.
    pub max_calls_per_plugin: usize,
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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
            memory_budget_mib: 96,
            call_timeout_ms: 10_000,
            fuel: None,
            max_concurrent_calls: 64,
            max_calls_per_plugin: 16,
            epoch_tick_ms: 5,
            reload_interval_ms: 2_000,
            http: HttpLimits::default(),
            git_timeout_ms: 20_000,
            compile_cache_dir: None,
            oci: OciPluginConfig::default(),
        }
    }
}

/// Limits of the `http` capability.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
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
    /// Bytes of the per-plugin ETag cache, in MiB.
    pub etag_cache_mib: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            default_timeout_ms: 10_000,
            max_timeout_ms: 30_000,
            max_response_bytes: 8 << 20,
            max_redirects: 5,
            etag_cache_entries: 1024,
            etag_cache_mib: 1,
        }
    }
}

/// One plugin: where it comes from and what it is granted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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
    #[schemars(with = "Vec<String>")]
    pub private_networks: Vec<IpNet>,
    /// Secrets by the name the plugin asks for, and where the host reads them.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSource>,
    /// Values the plugin reads through `config`.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub config: BTreeMap<String, toml::Value>,
    /// Providers, in authenticated mode: a logged-in user's own credential,
    /// from the hub's `auth_state`, replaces one of the plugin's secrets
    /// for that user's launches.
    #[serde(default)]
    pub user_credential: Option<UserCredential>,
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

/// Where a user's own credential for a provider comes from, and which of
/// the plugin's secrets it replaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserCredential {
    /// The secret the plugin reads (e.g. `access_token` for `gh`).
    pub secret: String,
    /// A JSON pointer into the user's `auth_state`, e.g. `/access_token`,
    /// where OAuthenticator's GitHub and GitLab logins keep the user's token.
    pub auth_state_key: String,
}

fn yes() -> bool {
    true
}

/// Where a secret's value comes from. Read at each use, so rotation needs no restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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
    pub fn source(&self, name: &str) -> Result<PluginSource, PluginConfigError> {
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
                    return Err(PluginConfigError(format!(
                        "[plugins.{name}] oci = {r:?}: pin the component by digest, `oci://<registry>/<repository>@sha256:<64 hex>` (`bindery plugin push` prints it)"
                    )));
                }
                Ok(PluginSource::Oci(reference.to_string()))
            }
            (None, None, None) => Err(PluginConfigError(format!(
                "[plugins.{name}] needs `path = \"…/plugin.wasm\"`, `bundled = \"<name>\"` or `oci = \"oci://…@sha256:…\"`"
            ))),
            _ => Err(PluginConfigError(format!(
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
