//! Bindery's configuration: embedded defaults, then a TOML file, then
//! environment variables (`BINDERY_` prefix, `__` between nested keys, e.g.
//! `BINDERY_PLUGIN_RUNTIME__CALL_TIMEOUT_MS=500`). `BINDERY_CONFIG` (the file),
//! `BINDERY_LOG` (the log filter) and `BINDERY_LOG_FORMAT` are the command
//! line's, not keys. Variables Kubernetes sets for a Service named `bindery…`
//! (`BINDERY_PORT`, `BINDERY_SERVICE_HOST`, …) are not configuration either.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bindery_runtime::PluginSettings;
use bindery_runtime::host::Bundled;
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};

mod build;
mod cull;
mod event_log;
mod federation;
mod hub;
mod pool;
mod registry;
mod simulate;
mod web;

pub use bindery_runtime::config::{
    HttpLimits, OciPluginConfig, PluginConfig, PluginConfigError, PluginSource, RuntimeConfig,
    SecretSource, SpecConfig, UserCredential,
};
pub use build::{BuildConfig, KubernetesBuildConfig, LocalBuildConfig};
pub use cull::{CullConfig, LeaderConfig};
pub use event_log::{EventLogConfig, EventSink};
pub use federation::{CheckConfig, FederationConfig, MemberConfig};
pub use hub::{HubConfig, KubernetesQuotaConfig, QuotaConfig};
pub use pool::WarmPoolConfig;
pub use registry::{CacheConfig, RegistryConfig};
pub use simulate::{SimulateConfig, Spread};
pub use web::{BanNetwork, RateLimitConfig, WebConfig};

/// The embedded defaults, including the grants of the bundled plugins.
pub const DEFAULTS_TOML: &str = include_str!("defaults.toml");

/// A configuration that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file, a key or a value is wrong.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl From<PluginConfigError> for ConfigError {
    fn from(e: PluginConfigError) -> Self {
        ConfigError::Invalid(e.0)
    }
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        // figment's messages name the key and the source (file or env variable).
        let all: Vec<String> = e.into_iter().map(|e| e.to_string()).collect();
        ConfigError::Invalid(all.join("; "))
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP service listens on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Where Bindery keeps its state: the sled cache, the plugin compile cache, pulled OCI plugins and build directories.
    #[serde(default = "default_data_dir")]
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
    /// Servers started ahead of demand for the images launched most.
    #[serde(default)]
    pub warm_pool: WarmPoolConfig,
    /// Upstream's launch events.
    #[serde(default)]
    pub event_log: EventLogConfig,
    /// Other Bindery deployments that share this one's launch link.
    #[serde(default)]
    pub federation: FederationConfig,
    /// The model `bindery simulate` replays a launch trace with.
    #[serde(default)]
    pub simulate: SimulateConfig,
}

impl Config {
    /// What is wrong with the configuration file at `path`, as the TOML
    /// parser sees it: a syntax error, an unknown key or a value of the
    /// wrong type, with its line and column; then, merged with the defaults
    /// and the environment, what [`Config::load`] refuses.
    pub fn check(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?;
        toml::from_str::<Config>(&text)
            .map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?;
        Config::load(Some(path))
    }

    /// Defaults, then `file` if given, then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::new().merge(Toml::string(DEFAULTS_TOML));
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
                    .ignore(&["config", "log", "log_format"])
                    .filter(|key| !is_service_link(key.as_str()))
                    .split("__"),
            )
            .extract()?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let rt = &self.plugin_runtime;
        if rt.call_timeout_ms == 0
            || rt.epoch_tick_ms == 0
            || rt.max_concurrent_calls == 0
            || rt.max_calls_per_plugin == 0
            || rt.memory_budget_mib == 0
        {
            return Err(ConfigError::Invalid(
                "plugin_runtime: call_timeout_ms, epoch_tick_ms, max_concurrent_calls, max_calls_per_plugin and memory_budget_mib must be positive"
                    .into(),
            ));
        }
        if rt.memory_limit_mib > rt.memory_budget_mib {
            return Err(ConfigError::Invalid(format!(
                "plugin_runtime.memory_limit_mib ({}) is more than memory_budget_mib ({}), which all plugin calls share",
                rt.memory_limit_mib, rt.memory_budget_mib
            )));
        }
        for (name, p) in &self.plugins {
            p.source(name)?;
            if let Some(user) = &p.user_credential {
                let why = if !self.hub.auth_enabled {
                    "users' credentials come with their login: set hub.auth_enabled"
                } else if user.secret.is_empty() {
                    "`secret` names the plugin's secret that a user's credential replaces"
                } else if !user.auth_state_key.starts_with('/') {
                    "`auth_state_key` is a JSON pointer into the user's auth_state, e.g. \"/access_token\""
                } else {
                    continue;
                };
                return Err(ConfigError::Invalid(format!(
                    "plugins.{name}.user_credential: {why}"
                )));
            }
        }
        let base = &self.web.base_url;
        if !base.starts_with('/') || !base.ends_with('/') {
            return Err(ConfigError::Invalid(format!(
                "web.base_url must start and end with `/` (got {base:?})"
            )));
        }
        if let Some(url) = &self.registry.url
            && (!matches!(url.scheme(), "http" | "https") || url.host_str().is_none())
        {
            return Err(ConfigError::Invalid(format!(
                "registry.url must be an http(s) URL with a host (got {url})"
            )));
        }
        let b = &self.build;
        if [
            b.timeout_secs,
            b.fetch_timeout_secs,
            b.max_repo_bytes,
            b.max_repo_files,
            b.max_file_bytes,
            b.max_concurrent,
        ]
        .contains(&0)
        {
            return Err(ConfigError::Invalid(
                "build: timeout_secs, fetch_timeout_secs, max_repo_bytes, max_repo_files, max_file_bytes and max_concurrent must be positive"
                    .into(),
            ));
        }
        if let Some(problem) = self.simulate.problem() {
            return Err(ConfigError::Invalid(problem));
        }
        if let Some(problem) = self.federation.problem(
            self.web.build_token_secret.is_some(),
            self.web.cors_allow_origin.is_some(),
        ) {
            return Err(ConfigError::Invalid(problem));
        }
        let pool = &self.warm_pool;
        if pool.max_servers > 0 {
            if self.hub.auth_enabled {
                return Err(ConfigError::Invalid(
                    "warm_pool: a pooled server belongs to no one, so it serves anonymous launches only; turn it off (max_servers = 0) with hub.auth_enabled".into(),
                ));
            }
            if pool.every_secs == 0 || pool.half_life_secs == 0 || pool.max_images == 0 {
                return Err(ConfigError::Invalid(
                    "warm_pool: every_secs, half_life_secs and max_images must be positive".into(),
                ));
            }
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

/// The plugin runtime reads its own sections, and the plugins this binary bundles.
impl PluginSettings for Config {
    fn runtime(&self) -> &RuntimeConfig {
        &self.plugin_runtime
    }
    fn plugins(&self) -> &BTreeMap<String, PluginConfig> {
        &self.plugins
    }
    fn data_dir(&self) -> &Path {
        &self.data_dir
    }
    fn bundled(&self) -> Bundled {
        crate::bundled::BUNDLED
    }
}

/// Whether `key` (a variable's name after `BINDERY_`) has the shape of the
/// variables Kubernetes gives every pod for a Service named `bindery` or
/// `bindery-x` (service links: `{S}_SERVICE_HOST`, `{S}_SERVICE_PORT[_{NAME}]`,
/// `{S}_PORT[_{N}_{PROTO}[_PROTO|_PORT|_ADDR]]`). Only top-level keys can be
/// confused with those: a Service name has no `__`, and no top-level key of
/// Bindery's ends this way (a test keeps it so).
fn is_service_link(key: &str) -> bool {
    if key.contains("__") {
        return false;
    }
    let parts: Vec<String> = key.split('_').map(str::to_ascii_uppercase).collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let protocol = |p: &str| matches!(p, "TCP" | "UDP" | "SCTP");
    let number = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    match parts.as_slice() {
        [.., "SERVICE", "HOST"] | [.., "PORT"] => true,
        [.., "PORT", n, p] => number(n) && protocol(p),
        // `…_PORT` itself ended the first arm.
        [.., "PORT", n, p, "PROTO" | "ADDR"] => number(n) && protocol(p),
        // The port's name follows `SERVICE_PORT`, and may be anything.
        _ => parts.windows(2).any(|w| w == ["SERVICE", "PORT"]),
    }
}

/// `$XDG_DATA_HOME/bindery`, else `~/.local/share/bindery`, else `./bindery-data`.
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8585))
}

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
    #[allow(
        clippy::result_large_err,
        reason = "figment's Jail takes a closure returning its own error type"
    )]
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
    #[allow(
        clippy::result_large_err,
        reason = "figment's Jail takes a closure returning its own error type"
    )]
    fn kubernetes_service_links_are_not_configuration() {
        figment::Jail::expect_with(|jail| {
            // What a pod gets for Services `bindery` and `bindery-hub`.
            for (name, value) in [
                ("BINDERY_PORT", "tcp://10.0.0.7:80"),
                ("BINDERY_PORT_80_TCP", "tcp://10.0.0.7:80"),
                ("BINDERY_PORT_80_TCP_ADDR", "10.0.0.7"),
                ("BINDERY_PORT_80_TCP_PORT", "80"),
                ("BINDERY_PORT_80_TCP_PROTO", "tcp"),
                ("BINDERY_SERVICE_HOST", "10.0.0.7"),
                ("BINDERY_SERVICE_PORT", "80"),
                ("BINDERY_SERVICE_PORT_HTTP", "80"),
                ("BINDERY_HUB_SERVICE_HOST", "10.0.0.8"),
                ("BINDERY_HUB_PORT_8081_TCP", "tcp://10.0.0.8:8081"),
            ] {
                jail.set_env(name, value);
            }
            jail.set_env("BINDERY_LOG_FORMAT", "json");
            jail.set_env("BINDERY_ADMIN_TOKEN", "still read");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.admin_token.as_deref(), Some("still read"));
            // Nested keys are never service links, whatever their last word.
            jail.set_env("BINDERY_PLUGINS__X__CONFIG__PORT", "8080");
            jail.set_env("BINDERY_PLUGINS__X__PATH", "/x.wasm");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.plugins["x"].config_strings()["port"], "8080");
            Ok(())
        });
        // No top-level key of Bindery's could be taken for one.
        let defaults = serde_json::to_value(Config::load(None).unwrap()).unwrap();
        for key in defaults.as_object().unwrap().keys() {
            assert!(!is_service_link(key), "{key} looks like a service link");
        }
        assert!(!is_service_link("hub__port") && !is_service_link("support"));
    }

    /// `Config::load` of `file` inside figment's Jail, whose lock keeps the
    /// environment other tests set in theirs out of this one.
    #[allow(
        clippy::result_large_err,
        reason = "figment's Jail takes a closure returning its own error type"
    )]
    fn jailed(file: &Path) -> Result<Config, String> {
        let mut loaded = None;
        figment::Jail::expect_with(|_| {
            loaded = Some(Config::load(Some(file)).map_err(|e| e.to_string()));
            Ok(())
        });
        loaded.expect("the jail ran")
    }

    #[test]
    fn mistakes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bindery.toml");
        std::fs::write(&file, "[plugins.x]\nhosts = []\n").unwrap();
        let e = jailed(&file).unwrap_err();
        assert!(e.contains("[plugins.x] needs `path"), "{e}");
        std::fs::write(&file, "lissten = \"127.0.0.1:1\"\n").unwrap();
        let e = jailed(&file).unwrap_err();
        assert!(e.contains("lissten"), "{e}");
        let e = jailed(&dir.path().join("nope.toml")).unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
    }

    #[test]
    fn a_warm_pool_it_cannot_keep_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bindery.toml");
        for (toml, says) in [
            (
                "[warm_pool]\nmax_servers = 2\n[hub]\nauth_enabled = true\n",
                "anonymous launches only",
            ),
            (
                "[warm_pool]\nmax_servers = 2\nevery_secs = 0\n",
                "must be positive",
            ),
        ] {
            std::fs::write(&file, toml).unwrap();
            let e = jailed(&file).unwrap_err();
            assert!(e.contains(says), "{toml}: {e}");
        }
        // Off, the same settings are no concern of the pool's.
        std::fs::write(
            &file,
            "[warm_pool]\nevery_secs = 0\n[hub]\nauth_enabled = true\n",
        )
        .unwrap();
        assert!(jailed(&file).is_ok());
    }

    #[test]
    fn a_user_credential_is_checked_where_it_is_configured() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bindery.toml");
        let gh = "[plugins.gh]\nbundled = \"gh\"\n";
        for (toml, says) in [
            (
                "user_credential = { secret = \"access_token\", auth_state_key = \"/access_token\" }\n",
                "plugins.gh.user_credential: users' credentials come with their login: set hub.auth_enabled",
            ),
            (
                "user_credential = { secret = \"access_token\", auth_state_key = \"access_token\" }\n[hub]\nauth_enabled = true\n",
                "`auth_state_key` is a JSON pointer",
            ),
            (
                "user_credential = { secret = \"\", auth_state_key = \"/access_token\" }\n[hub]\nauth_enabled = true\n",
                "`secret` names the plugin's secret",
            ),
            (
                "user_credential = { secret = \"access_token\" }\n",
                "auth_state_key",
            ),
        ] {
            std::fs::write(&file, format!("{gh}{toml}")).unwrap();
            let e = jailed(&file).unwrap_err();
            assert!(e.contains(says), "{toml}: {e}");
        }
        std::fs::write(
            &file,
            format!("{gh}user_credential = {{ secret = \"access_token\", auth_state_key = \"/access_token\" }}\n[hub]\nauth_enabled = true\n"),
        )
        .unwrap();
        let c = jailed(&file).unwrap();
        assert_eq!(
            c.plugins["gh"].user_credential.as_ref().unwrap().secret,
            "access_token"
        );
    }
}
