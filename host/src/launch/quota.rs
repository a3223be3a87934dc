//! Launch quotas, as upstream's `LaunchQuota`: the servers running now are
//! counted either from the hub (its users' servers and their `image`
//! option) or, as upstream's `KubernetesLaunchQuota`, from the user pods in
//! a namespace (by label, every phase, each pod once).
//!
//! The warm pool's unclaimed servers take room in the total (they run), but
//! not in a repository's quota: no one uses them yet, and a pool that holds
//! a popular repository's servers must not refuse that repository's users.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use serde_json::Value;

use super::{LaunchError, LaunchRequest, Quota, ServerCount};
use crate::config::{Config, ConfigError};
use crate::jupyterhub::{Hub, segment};
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

/// One server running or starting.
struct Running {
    /// Its images (a pod's containers', a hub server's `image` option).
    images: Vec<String>,
    /// An unclaimed warm pool server.
    pooled: bool,
}

/// The total and per-repository quotas, and what they count.
pub struct Quotas {
    count: Count,
    total: Option<u32>,
    hub: Arc<Hub>,
    /// The warm pool's group, and the group a claimed pool user joins.
    pool: Option<(String, String)>,
}

impl Quotas {
    /// Quotas as `config.quota` sets them, counting on `hub` unless
    /// `[quota.kubernetes]` says to count pods.
    pub fn new(config: &Config, hub: Arc<Hub>) -> Result<Quotas, ConfigError> {
        let pool = (config.warm_pool.max_servers > 0).then(|| {
            (
                config.warm_pool.group.clone(),
                config.hub.users_group.clone(),
            )
        });
        let config = &config.quota;
        let count = match &config.kubernetes {
            None => Count::Hub(hub.clone()),
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
            hub,
            pool,
        })
    }

    /// The total quota, if one is set.
    pub fn total(&self) -> Option<u32> {
        self.total
    }

    /// The servers running or starting now; which are pooled only where
    /// `pooled` asks (counting pods, that takes a hub request).
    async fn servers(&self, pooled: bool) -> Result<Vec<Running>, String> {
        match &self.count {
            Count::Hub(hub) => {
                let users = hub.users("active").await.map_err(|e| e.to_string())?;
                Ok(users
                    .iter()
                    .flat_map(|u| {
                        let pooled = self
                            .pool
                            .as_ref()
                            .is_some_and(|(pool, users)| u.unclaimed_in_pool(pool, users));
                        u.servers.values().map(move |s| {
                            let image = s.user_options.as_ref().and_then(|o| o.get("image"));
                            Running {
                                images: vec![
                                    image.and_then(Value::as_str).unwrap_or_default().into(),
                                ],
                                pooled,
                            }
                        })
                    })
                    .collect())
            }
            Count::Pods { pods, users, .. } => {
                let pods = list(pods, users).await?;
                let pooled = match pooled {
                    true => self.pool_users().await?,
                    false => Vec::new(),
                };
                Ok(pods
                    .iter()
                    .map(|pod| {
                        let spec = pod.spec.iter().flat_map(|s| &s.containers);
                        // KubeSpawner annotates its pods with the user's name, unescaped.
                        let user = pod
                            .metadata
                            .annotations
                            .as_ref()
                            .and_then(|a| a.get("hub.jupyter.org/username"));
                        Running {
                            images: spec.filter_map(|c| c.image.clone()).collect(),
                            pooled: user.is_some_and(|u| pooled.contains(u)),
                        }
                    })
                    .collect())
            }
        }
    }

    /// The warm pool's group members (a claimed one leaves it moments after
    /// joining the users' group, so for those moments it counts as pooled).
    async fn pool_users(&self) -> Result<Vec<String>, String> {
        let Some((pool, _)) = &self.pool else {
            return Ok(Vec::new());
        };
        match self
            .hub
            .json(
                reqwest::Method::GET,
                &format!("groups/{}", segment(pool)),
                None,
            )
            .await
        {
            Ok(group) => Ok(group["users"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|u| u.as_str().map(String::from))
                .collect()),
            Err(e) if e.status() == Some(404) => Ok(Vec::new()),
            Err(e) => Err(format!("listing the warm pool's group: {e}")),
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
            .servers(repo_quota.is_some())
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
                .filter(|s| !s.pooled && s.images.iter().any(|i| split_tag(i).0 == wanted))
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

    /// The servers running or starting, and the build pods when pods are
    /// counted, for `/health`'s "Pod quota" check.
    pub async fn count(&self) -> Result<ServerCount, String> {
        match &self.count {
            Count::Hub(_) => Ok(ServerCount {
                user_pods: self.servers(false).await?.len(),
                build_pods: None,
            }),
            Count::Pods { pods, builds, .. } => {
                let (users, builds) = tokio::join!(self.servers(false), list(pods, builds));
                Ok(ServerCount {
                    user_pods: users?.len(),
                    build_pods: Some(builds?.len()),
                })
            }
        }
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
