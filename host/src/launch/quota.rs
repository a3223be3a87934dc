//! Launch quotas, as upstream's `LaunchQuota`: the servers running now are
//! counted either from the hub (its users' servers and their `image`
//! option) or, as upstream's `KubernetesLaunchQuota`, from the user pods in
//! a namespace (by label, every phase, each pod once).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};

use super::{HealthCheck, LaunchError, LaunchRequest, Quota};
use crate::config::{ConfigError, QuotaConfig};
use crate::jupyterhub::Hub;
use crate::registry::naming::split_tag;

const LIST_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the running servers are counted.
enum Count {
    /// The hub's active users' servers.
    Hub(Arc<Hub>),
    /// Pods in a namespace: user servers by `users`, builds by `builds`
    /// (the latter only shown in `/health`, as upstream).
    Pods {
        pods: Box<Api<Pod>>,
        users: String,
        builds: String,
    },
}

/// The total and per-repository quotas, and what they count.
pub struct Quotas {
    count: Count,
    total: Option<u32>,
}

impl Quotas {
    /// Quotas as `config` sets them, counting on `hub` unless
    /// `[quota.kubernetes]` says to count pods.
    pub fn new(config: &QuotaConfig, hub: Arc<Hub>) -> Result<Quotas, ConfigError> {
        let count = match &config.kubernetes {
            None => Count::Hub(hub),
            Some(k) => {
                let (client, namespace) = crate::cluster::client(
                    k.api_url.as_ref(),
                    k.namespace.as_deref(),
                    "quota.kubernetes",
                )?;
                Count::Pods {
                    pods: Box::new(Api::namespaced(client, &namespace)),
                    users: k.user_pods.clone(),
                    builds: k.build_pods.clone(),
                }
            }
        };
        Ok(Quotas {
            count,
            total: config.total,
        })
    }

    /// The images of each server running or starting now (a pod's
    /// containers', a hub server's `image` option).
    async fn servers(&self) -> Result<Vec<Vec<String>>, String> {
        match &self.count {
            Count::Hub(hub) => {
                let users = hub.users("active").await.map_err(|e| e.to_string())?;
                Ok(users
                    .iter()
                    .flat_map(|u| u.servers.values())
                    .map(|s| {
                        let image = s.user_options.as_ref().and_then(|o| o.get("image"));
                        vec![image.and_then(Value::as_str).unwrap_or_default().into()]
                    })
                    .collect())
            }
            Count::Pods { pods, users, .. } => Ok(list(pods, users)
                .await?
                .iter()
                .map(|pod| {
                    let spec = pod.spec.iter().flat_map(|s| &s.containers);
                    spec.filter_map(|c| c.image.clone()).collect()
                })
                .collect()),
        }
    }

    /// Refuses a launch when the total, or the repository's quota
    /// (`repo_config.quota`), is full.
    pub async fn check(&self, request: &LaunchRequest) -> Result<(), LaunchError> {
        let repo_quota = request
            .repo_config
            .get("quota")
            .and_then(Value::as_u64)
            .filter(|q| *q > 0);
        if self.total.is_none() && repo_quota.is_none() {
            return Ok(());
        }
        let servers = self
            .servers()
            .await
            .map_err(|e| LaunchError::Failed(format!("Cannot check the launch quota: {e}")))?;
        if let Some(total) = self.total
            && servers.len() as u64 >= u64::from(total)
        {
            return Err(LaunchError::Quota {
                quota: Quota::Total,
                message: "Too many users on this BinderHub! Try again soon.\n".into(),
            });
        }
        if let Some(quota) = repo_quota {
            // Images by name, whatever their tag; a server counts once.
            let wanted = split_tag(&request.image).0;
            let same = servers
                .iter()
                .filter(|images| images.iter().any(|i| split_tag(i).0 == wanted))
                .count() as u64;
            if same >= quota {
                tracing::info!(repo = %request.repo_url, same, quota, "per-repository quota reached");
                return Err(LaunchError::Quota {
                    quota: Quota::Repo,
                    message: format!(
                        "Too many users running {}! Try again soon.\n",
                        request.repo_url
                    ),
                });
            }
        }
        Ok(())
    }

    /// Upstream's "Pod quota" check, when a total is set. Soft, as
    /// upstream's (`_ignore_failure`): a full site still serves its pages
    /// and launches of other replicas' users end, so it must not take every
    /// replica out of its Service.
    pub async fn health(&self) -> Option<HealthCheck> {
        let quota = self.total?;
        let counted = match &self.count {
            Count::Hub(_) => self.servers().await.map(|s| (s.len(), None)),
            Count::Pods { pods, builds, .. } => {
                match (self.servers().await, list(pods, builds).await) {
                    (Ok(users), Ok(builds)) => Ok((users.len(), Some(builds.len()))),
                    (Err(e), _) | (_, Err(e)) => Err(e),
                }
            }
        };
        let check = match counted {
            Ok((users, builds)) => {
                let total = users + builds.unwrap_or(0);
                let mut check = json!({ "service": "Pod quota", "total_pods": total, "user_pods": users, "quota": quota, "ok": total as u64 <= u64::from(quota), "_ignore_failure": true });
                if let Some(builds) = builds {
                    check["build_pods"] = json!(builds);
                }
                check
            }
            Err(e) => {
                json!({ "service": "Pod quota", "quota": quota, "ok": false, "error": e, "_ignore_failure": true })
            }
        };
        Some(HealthCheck {
            check: check.as_object().cloned().unwrap_or_default(),
        })
    }
}

/// One listing per check, uncached as upstream's, with a deadline: a launch
/// waits on it.
async fn list(pods: &Api<Pod>, selector: &str) -> Result<Vec<Pod>, String> {
    let params = ListParams::default().labels(selector);
    match tokio::time::timeout(LIST_TIMEOUT, pods.list(&params)).await {
        Ok(Ok(list)) => Ok(list.items),
        Ok(Err(e)) => Err(format!("listing pods ({selector}): {e}")),
        Err(_) => Err(format!(
            "listing pods ({selector}): no answer in {} s",
            LIST_TIMEOUT.as_secs()
        )),
    }
}
