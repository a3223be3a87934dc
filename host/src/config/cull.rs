//! `[cull]`: the cull-policy chain, how often it runs, and who leads among replicas.

use serde::{Deserialize, Serialize};

/// The culler: which cull-policy plugins decide, how often, and who leads.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
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
    /// Several replicas: only the holder of this Kubernetes Lease culls and
    /// tends the warm pool.
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
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
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
