//! `[hub]` and `[quota]`: the JupyterHub launches go to, and how many servers it may run.

use serde::{Deserialize, Serialize};

use super::SecretSource;

/// The JupyterHub launches go to (upstream's `hub_url`, `hub_api_token` and
/// `Launcher` settings).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
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
    /// Launch for the logged-in hub user (a browser's session, or the
    /// token a request carries) instead of a temporary user (upstream's
    /// `auth_enabled`). Browsers log in through the hub's OAuth.
    pub auth_enabled: bool,
    /// The OAuth client the hub registered for Bindery (the `binder`
    /// service's `oauth_client_id`).
    pub oauth_client_id: String,
    /// Where the hub sends browsers back after login (the service's
    /// `oauth_redirect_uri`); default `oauth_callback` under the address
    /// the browser used.
    pub oauth_redirect_uri: Option<url::Url>,
    /// Authenticated launches start a named server per launch, named from
    /// the repository (upstream's `use_named_servers`); `false`: the user's
    /// default server, one at a time.
    pub use_named_servers: bool,
    /// Named servers a user may have at once; 0: no limit (upstream's
    /// `named_server_limit_per_user`).
    pub named_server_limit_per_user: u32,
    /// The hub group Bindery puts its temporary users in: the culler stops
    /// only servers Bindery launched and deletes only this group's members,
    /// never an admin (needs the `admin:groups` and `groups` scopes).
    pub users_group: String,
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
            oauth_client_id: "service-binder".into(),
            oauth_redirect_uri: None,
            use_named_servers: true,
            named_server_limit_per_user: 0,
            users_group: "binder-users".into(),
        }
    }
}

/// Launch quotas; unset means unlimited.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaConfig {
    /// Servers the hub may run at once (upstream's `LaunchQuota.total_quota`); 0 closes launches.
    pub total: Option<u32>,
    /// Servers one repository may run at once.
    pub per_repo: Option<u32>,
    /// The same for specs matching a provider's `high_quota_specs`.
    pub per_repo_higher: Option<u32>,
    /// Count user pods in Kubernetes (upstream's `KubernetesLaunchQuota`)
    /// instead of the hub's servers: servers the hub does not know of
    /// (another hub's, or pods still terminating) count too.
    pub kubernetes: Option<KubernetesQuotaConfig>,
}

/// Where user and build pods are counted.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesQuotaConfig {
    /// The API server; unset: a kubeconfig (`KUBECONFIG`, `~/.kube/config`), else the pod's service account.
    pub api_url: Option<url::Url>,
    /// The namespace of the user pods; unset: the kubeconfig's or the service account's.
    pub namespace: Option<String>,
    /// User servers' pods (z2jh's labels, as upstream's).
    pub user_pods: String,
    /// Build pods, shown beside them in `/health`.
    pub build_pods: String,
}

impl Default for KubernetesQuotaConfig {
    fn default() -> Self {
        KubernetesQuotaConfig {
            api_url: None,
            namespace: None,
            user_pods: "app=jupyterhub,component=singleuser-server".into(),
            build_pods: "component=binderhub-build".into(),
        }
    }
}
