//! The `kubernetes` executor: upstream's `KubernetesBuildExecutor`. Each
//! build is a pod named by upstream's rule, running the plan's builder image
//! with BinderHub's repo2docker command; the host watches it, follows its log,
//! and deletes it when it ends. The pod name is the single-flight key across
//! hosts and restarts: a `409` on create means the build is already running,
//! and it is followed instead. A cleaner deletes finished and over-age build
//! pods, as upstream's `KubernetesCleaner` does.
//!
//! Git credentials reach repo2docker's clone as upstream's do, in
//! `GIT_CREDENTIAL_ENV`, but from a Secret of the build's own (owned by its
//! pod, deleted with it), never in the pod's spec.
//!
//! Tested against an in-process test double of the API server (no API server
//! can be installed where the tests run): `host/tests/support/kube.rs`.

use std::collections::BTreeSet;
use std::pin::pin;
use std::time::Duration;

use bindery_runtime::bindings::Repo2dockerPlan;
use blake2::Blake2bVar;
use blake2::digest::{Update, VariableOutput};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::watch_object;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use super::command::{Repo2dockerCommand, Said, read_log_line, relay_line};
use super::{BuildFailure, BuildLogSender, BuildRequest, say};
use crate::config::{ConfigError, KubernetesBuildConfig, RegistryConfig};
use crate::events::Event;
use crate::now_ms;

/// Upstream's label for build pods; the cleaner and anti-affinity select on it.
pub const COMPONENT: &str = "binderhub-build";
/// The image-builder daemonset's pods, whose nodes sticky builds choose from.
const BUILDER_NODES: &str = "component=image-builder,app=binder";
/// How long a finished pod's log may take to drain.
const LOG_DRAIN: Duration = Duration::from_secs(10);
/// Pause after a failed watch before it lists again.
const WATCH_RETRY: Duration = Duration::from_secs(1);

/// The key of a build's Secret that holds `GIT_CREDENTIAL_ENV`.
const CREDENTIALS_KEY: &str = "git-credential-env";

/// Build pods on a cluster.
pub struct KubernetesExecutor {
    pods: Api<Pod>,
    secrets: Api<Secret>,
    config: KubernetesBuildConfig,
    command: Repo2dockerCommand,
}

/// How a followed pod ended, when it did not succeed.
enum Ended {
    /// The pod failed; whether its log said why.
    Failed { said: bool, reason: String },
    /// The pod was deleted under us (by the cleaner, by hand, or by another
    /// host following the same pod once it succeeded).
    Deleted,
}

/// How a build pod that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodEnd {
    /// Seen to succeed.
    Succeeded,
    /// Gone before it was seen to end: only the registry can tell whether it pushed.
    Gone,
}

impl KubernetesExecutor {
    /// A client for `config` (in cluster unless `api_url` is set).
    pub fn new(
        config: &KubernetesBuildConfig,
        registry: &RegistryConfig,
    ) -> Result<KubernetesExecutor, ConfigError> {
        let (client, namespace) = crate::cluster::client(
            config.api_url.as_ref(),
            config.namespace.as_deref(),
            "build.kubernetes",
        )?;
        Ok(KubernetesExecutor {
            pods: Api::namespaced(client.clone(), &namespace),
            secrets: Api::namespaced(client, &namespace),
            config: config.clone(),
            command: Repo2dockerCommand::new(registry),
        })
    }

    /// The cleaner: every `cleaner_interval_secs`, deletes finished and
    /// over-age build pods. The caller runs it.
    pub fn cleaner(&self) -> impl Future<Output = ()> + Send + 'static {
        let (pods, max_age, interval) = (
            self.pods.clone(),
            Duration::from_secs(self.config.max_age_secs),
            Duration::from_secs(self.config.cleaner_interval_secs.max(1)),
        );
        async move {
            loop {
                tokio::time::sleep(interval).await;
                if let Err(e) = clean(&pods, max_age).await {
                    tracing::warn!("the build pod cleaner could not list pods: {e}");
                }
            }
        }
    }

    /// Runs the build in its pod, or follows the pod already building it.
    /// `credentials`, upstream's `git_credentials` lines, authenticate
    /// repo2docker's clone (the provider's, else `git_credentials` of the
    /// config).
    pub async fn build(
        &self,
        request: &BuildRequest,
        plan: &Repo2dockerPlan,
        credentials: Option<&str>,
        timeout: Duration,
        log: &BuildLogSender,
    ) -> Result<PodEnd, BuildFailure> {
        let name = &request.build_name;
        let credentials = credentials.or(self.config.git_credentials.as_deref());
        if let Some(credentials) = credentials {
            self.put_credentials(name, credentials).await?;
        }
        let pod = self.pod(request, plan, credentials.is_some()).await?;
        let tail = match self.pods.create(&PostParams::default(), &pod).await {
            Ok(created) => {
                if credentials.is_some() {
                    self.own_credentials(name, &created).await;
                }
                None
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                say(
                    log,
                    "building",
                    format!("Found build pod {name} already running; following it.\n"),
                )
                .await;
                Some(self.config.log_tail_lines)
            }
            Err(e) => {
                return Err(BuildFailure::new(format!(
                    "Cannot create the build pod {name}: {e}"
                )));
            }
        };
        self.follow_for(name, tail, timeout, log).await
    }

    /// Follows a pod this or an earlier host started.
    pub async fn attach(
        &self,
        name: &str,
        timeout: Duration,
        log: &BuildLogSender,
    ) -> Result<PodEnd, BuildFailure> {
        match self.pods.get_opt(name).await {
            Ok(None) => Ok(PodEnd::Gone),
            Ok(Some(_)) => {
                self.follow_for(name, Some(self.config.log_tail_lines), timeout, log)
                    .await
            }
            Err(e) => Err(BuildFailure::new(format!(
                "Cannot look up the build pod {name}: {e}"
            ))),
        }
    }

    /// [`Self::follow`] within `timeout`; a pod over it is deleted.
    async fn follow_for(
        &self,
        name: &str,
        tail: Option<i64>,
        timeout: Duration,
        log: &BuildLogSender,
    ) -> Result<PodEnd, BuildFailure> {
        let Ok(outcome) = tokio::time::timeout(timeout, self.follow(name, tail, log)).await else {
            self.delete(name).await;
            return Err(BuildFailure::new(format!(
                "The build took longer than its limit of {} s and its pod was deleted.",
                timeout.as_secs()
            )));
        };
        match outcome {
            Ok(()) => Ok(PodEnd::Succeeded),
            // repo2docker's own `failed` line already told the user why.
            Err(Ended::Failed { said: true, .. }) => Err(BuildFailure {
                message: String::new(),
            }),
            Err(Ended::Failed {
                said: false,
                reason,
            }) => Err(BuildFailure::new(format!(
                "The build pod {name} failed: {reason}"
            ))),
            Err(Ended::Deleted) => Ok(PodEnd::Gone),
        }
    }

    /// Watches the pod to its end, relaying its log once it runs; deletes it when it ends.
    async fn follow(
        &self,
        name: &str,
        tail: Option<i64>,
        log: &BuildLogSender,
    ) -> Result<(), Ended> {
        let mut watch = pin!(watch_object(self.pods.clone(), name));
        let mut logs: Option<AbortOnDrop<bool>> = None;
        let mut waiting = String::new();
        loop {
            let pod = match watch.next().await {
                Some(Ok(Some(pod))) => pod,
                Some(Ok(None)) => return Err(Ended::Deleted),
                Some(Err(e)) => {
                    // The watcher lists again on the next poll.
                    tracing::warn!(pod = name, "watching the build pod failed: {e}");
                    tokio::time::sleep(WATCH_RETRY).await;
                    continue;
                }
                None => return Err(Ended::Deleted),
            };
            let status = pod.status.unwrap_or_default();
            let phase = status.phase.unwrap_or_default();
            if phase == "Pending" {
                let why = waiting_reason(status.container_statuses.as_deref().unwrap_or_default());
                if !why.is_empty() && why != waiting {
                    say(
                        log,
                        "building",
                        format!("The build pod is waiting: {why}\n"),
                    )
                    .await;
                    waiting = why;
                }
                continue;
            }
            if phase == "Unknown" {
                // Upstream passes this on as a bare `unknown` event.
                if waiting != phase {
                    let _ = log
                        .send(Event::from_json(&json!({ "phase": "unknown" }).to_string()))
                        .await;
                    waiting = phase;
                }
                continue;
            }
            if logs.is_none() {
                logs = Some(AbortOnDrop(tokio::spawn(follow_log(
                    self.pods.clone(),
                    name.to_string(),
                    tail,
                    log.clone(),
                ))));
            }
            if phase == "Succeeded" || phase == "Failed" {
                // The log ends with the container; a stuck stream must not hold the build.
                let said = match logs.take() {
                    Some(task) => tokio::time::timeout(LOG_DRAIN, task.join())
                        .await
                        .unwrap_or(false),
                    None => false,
                };
                self.delete(name).await;
                if phase == "Succeeded" {
                    return Ok(());
                }
                let reason = [status.reason, status.message]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(": ");
                let reason = if reason.is_empty() {
                    terminated_reason(status.container_statuses.as_deref().unwrap_or_default())
                } else {
                    reason
                };
                return Err(Ended::Failed { said, reason });
            }
        }
    }

    async fn delete(&self, name: &str) {
        match self.pods.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => tracing::warn!(
                pod = name,
                "cannot delete the build pod (the cleaner will): {e}"
            ),
        }
        // Its credentials, if it had any (else the pod's deletion collects them).
        match self.secrets.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => tracing::warn!(
                pod = name,
                "cannot delete the build's credentials (the pod's deletion will): {e}"
            ),
        }
    }

    /// Writes the build's Secret holding `credentials`, replacing one an
    /// earlier attempt left.
    async fn put_credentials(&self, name: &str, credentials: &str) -> Result<(), BuildFailure> {
        let secret = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": { "name": name, "labels": { "name": name, "component": COMPONENT } },
            "type": "Opaque",
            "stringData": { CREDENTIALS_KEY: credentials },
        });
        let failed = |e: kube::Error| {
            BuildFailure::new(format!(
                "Cannot store the credentials of the build {name}: {e}"
            ))
        };
        let secret: Secret = serde_json::from_value(secret).map_err(|e| {
            BuildFailure::new(format!(
                "Cannot make the credentials of the build {name}: {e}"
            ))
        })?;
        match self.secrets.create(&PostParams::default(), &secret).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => self
                .secrets
                .patch(name, &PatchParams::default(), &Patch::Merge(&secret))
                .await
                .map(drop)
                .map_err(failed),
            Err(e) => Err(failed(e)),
        }
    }

    /// Makes the pod the owner of its Secret, so that deleting the pod (by
    /// the cleaner, by hand) deletes the credentials too.
    async fn own_credentials(&self, name: &str, pod: &Pod) {
        let Some(uid) = &pod.metadata.uid else {
            return;
        };
        let owner = json!({ "metadata": { "ownerReferences": [{
            "apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid,
        }] } });
        if let Err(e) = self
            .secrets
            .patch(name, &PatchParams::default(), &Patch::Merge(&owner))
            .await
        {
            tracing::warn!(pod = name, "cannot make the pod own its credentials: {e}");
        }
    }

    /// Upstream's build pod for `request`.
    async fn pod(
        &self,
        request: &BuildRequest,
        plan: &Repo2dockerPlan,
        credentials: bool,
    ) -> Result<Pod, BuildFailure> {
        let c = &self.config;
        let mut args = vec!["jupyter-repo2docker".to_string()];
        args.extend(self.command.args(request, plan, None));
        let (mut mounts, mut volumes) = (Vec::new(), Vec::new());
        let socket = c
            .docker_host
            .strip_prefix("unix://")
            .unwrap_or(&c.docker_host);
        if !socket.is_empty() {
            mounts.push(json!({ "name": "docker-socket", "mountPath": "/var/run/docker.sock" }));
            volumes.push(json!({ "name": "docker-socket", "hostPath": { "path": socket, "type": "Socket" } }));
        }
        let mut env = Vec::new();
        if credentials {
            env.push(
                json!({ "name": "GIT_CREDENTIAL_ENV", "valueFrom": { "secretKeyRef": {
                "name": request.build_name, "key": CREDENTIALS_KEY } } }),
            );
        }
        match (&c.push_secret, &self.command.credentials) {
            (Some(secret), _) => {
                mounts.push(json!({ "name": "docker-config", "mountPath": "/root/.docker" }));
                volumes
                    .push(json!({ "name": "docker-config", "secret": { "secretName": secret } }));
            }
            (None, Some(credentials)) => env.push(
                json!({ "name": "CONTAINER_ENGINE_REGISTRY_CREDENTIALS", "value": credentials }),
            ),
            (None, None) => {}
        }
        env.extend(
            c.env
                .iter()
                .chain(plan.env.iter().map(|(k, v)| (k, v)))
                .map(|(k, v)| json!({ "name": k, "value": v })),
        );
        let toleration = |key: &str| json!({ "key": key, "operator": "Equal", "value": "user", "effect": "NoSchedule" });
        let pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": request.build_name,
                "labels": { "name": request.build_name, "component": COMPONENT },
                "annotations": { "binder-repo": request.repo_url },
            },
            "spec": {
                "containers": [{
                    "name": "builder",
                    "image": plan.builder_image,
                    "args": args,
                    "volumeMounts": mounts,
                    "resources": resources(plan),
                    "env": env,
                }],
                // GKE does not allow a `/` in a node pool taint's key, hence the second spelling.
                "tolerations": [toleration("hub.jupyter.org/dedicated"), toleration("hub.jupyter.org_dedicated")],
                "nodeSelector": c.node_selector,
                "volumes": volumes,
                "restartPolicy": "Never",
                // The repository's code runs here: no API credentials, and no
                // environment naming the namespace's services.
                "automountServiceAccountToken": false,
                "enableServiceLinks": false,
                "affinity": self.affinity(&request.repo_url).await,
                "imagePullSecrets": c.image_pull_secrets.iter().map(|s| json!({ "name": s })).collect::<Vec<_>>(),
            },
        });
        serde_json::from_value(pod).map_err(|e| {
            BuildFailure::new(format!(
                "Cannot make the build pod {}: {e}",
                request.build_name
            ))
        })
    }

    /// Sticky builds prefer the node the rendezvous hash of the repository
    /// picks among the image builders' nodes, so its engine cache is reused;
    /// otherwise build pods prefer not to share a node.
    async fn affinity(&self, repo_url: &str) -> Value {
        if self.config.sticky_builds {
            match self
                .pods
                .list(&ListParams::default().labels(BUILDER_NODES))
                .await
            {
                Ok(list) => {
                    let nodes: BTreeSet<String> = list
                        .items
                        .into_iter()
                        .filter_map(|p| p.spec?.node_name)
                        .collect();
                    if let Some(node) =
                        rendezvous_rank(nodes.iter().map(String::as_str), repo_url).first()
                    {
                        return json!({ "nodeAffinity": { "preferredDuringSchedulingIgnoredDuringExecution": [{
                            "weight": 100,
                            "preference": { "matchExpressions": [{ "key": "kubernetes.io/hostname", "operator": "In", "values": [node] }] },
                        }]}});
                    }
                }
                Err(e) => tracing::warn!(
                    "sticky builds: cannot list the image builders ({e}); the pod may go to any node"
                ),
            }
        }
        json!({ "podAntiAffinity": { "preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 100,
            "podAffinityTerm": { "topologyKey": "kubernetes.io/hostname", "labelSelector": { "matchLabels": { "component": COMPONENT } } },
        }]}})
    }
}

/// The plan's limits and requests; zero means none.
fn resources(plan: &Repo2dockerPlan) -> Value {
    let l = &plan.limits;
    let quantities = |memory: u64, cpu: u32| {
        let mut q = serde_json::Map::new();
        if memory > 0 {
            q.insert("memory".into(), json!(memory.to_string()));
        }
        if cpu > 0 {
            q.insert("cpu".into(), json!(format!("{cpu}m")));
        }
        Value::Object(q)
    };
    json!({ "limits": quantities(l.memory_limit, l.cpu_limit), "requests": quantities(l.memory_request, l.cpu_request) })
}

/// Upstream's `rendezvous_rank`: nodes by BLAKE2b-64 of `"{key}-{node}"`,
/// highest first, so a repository keeps its node while the set changes little.
pub fn rendezvous_rank<'a>(nodes: impl IntoIterator<Item = &'a str>, key: &str) -> Vec<&'a str> {
    let mut ranked: Vec<(u64, &str)> = nodes
        .into_iter()
        .map(|node| {
            let mut hash = Blake2bVar::new(8).expect("8 is a valid BLAKE2b output size");
            hash.update(format!("{key}-{node}").as_bytes());
            let mut out = [0u8; 8];
            hash.finalize_variable(&mut out)
                .expect("the output is 8 bytes");
            (u64::from_be_bytes(out), node)
        })
        .collect();
    ranked.sort_unstable_by(|a, b| b.cmp(a));
    ranked.into_iter().map(|(_, node)| node).collect()
}

/// One pass of upstream's `KubernetesCleaner`: deletes build pods that
/// succeeded, failed (evicted ones included) or are older than `max_age`.
pub async fn clean(pods: &Api<Pod>, max_age: Duration) -> Result<usize, kube::Error> {
    let list = pods
        .list(&ListParams::default().labels(&format!("component={COMPONENT}")))
        .await?;
    let oldest_ms = now_ms().saturating_sub(max_age.as_millis() as u64);
    let mut deleted = 0;
    for pod in list.items {
        let Some(name) = pod.metadata.name.clone() else {
            continue;
        };
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or_default();
        let created_ms = pod
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_millisecond().max(0) as u64);
        let why = match (phase, created_ms) {
            ("Succeeded" | "Failed", _) => phase.to_lowercase(),
            (_, Some(created)) if created < oldest_ms => {
                format!("older than {} s", max_age.as_secs())
            }
            _ => continue,
        };
        match pods.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {
                tracing::info!(pod = %name, "deleted the build pod: {why}");
                deleted += 1;
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => tracing::warn!(pod = %name, "cannot delete the build pod: {e}"),
        }
    }
    Ok(deleted)
}

/// Relays the builder's log; whether it said the build failed. `tail`: only
/// the last lines, for a pod that was already running.
async fn follow_log(pods: Api<Pod>, name: String, tail: Option<i64>, log: BuildLogSender) -> bool {
    let params = LogParams {
        container: Some("builder".into()),
        follow: true,
        tail_lines: tail,
        ..LogParams::default()
    };
    let stream = match pods.log_stream(&name, &params).await {
        Ok(stream) => stream,
        Err(e) => {
            say(
                &log,
                "building",
                format!("Cannot follow the build pod's log: {e}\n"),
            )
            .await;
            return false;
        }
    };
    // kube's reader is a futures one; the line reader is tokio's.
    let mut stream = tokio::io::BufReader::new(
        tokio_util::compat::FuturesAsyncReadCompatExt::compat(stream),
    );
    let (mut line, mut cut, mut failed) = (Vec::new(), false, false);
    loop {
        match read_log_line(&mut stream, &mut line, &mut cut).await {
            Ok(0) => {
                if !line.is_empty() {
                    failed |= relay_line(&String::from_utf8_lossy(&line), cut, &log).await
                        == Said::Failed;
                }
                return failed;
            }
            Ok(_) if line.ends_with(b"\n") => {
                let text = String::from_utf8_lossy(&line);
                failed |= relay_line(text.trim_end_matches('\n'), cut, &log).await == Said::Failed;
                line.clear();
                cut = false;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(pod = %name, "the build pod's log stream broke: {e}");
                return failed;
            }
        }
    }
}

/// Why the builder container is not running yet (e.g. `ErrImagePull: …`).
fn waiting_reason(statuses: &[k8s_openapi::api::core::v1::ContainerStatus]) -> String {
    statuses
        .iter()
        .filter_map(|s| s.state.as_ref()?.waiting.as_ref())
        .map(|w| {
            [w.reason.clone(), w.message.clone()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": ")
        })
        .find(|why| !why.is_empty() && why != "ContainerCreating")
        .unwrap_or_default()
}

/// How the builder container ended (e.g. `exit code 1: Error`).
fn terminated_reason(statuses: &[k8s_openapi::api::core::v1::ContainerStatus]) -> String {
    statuses
        .iter()
        .filter_map(|s| s.state.as_ref()?.terminated.as_ref())
        .map(|t| {
            format!(
                "exit code {}{}",
                t.exit_code,
                t.reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            )
        })
        .next()
        .unwrap_or_else(|| "no reason given".into())
}

/// A task that ends when its handle is dropped: a build stopped by its
/// timeout or its last watcher must not leave its log follower behind.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    async fn join(mut self) -> T
    where
        T: Default,
    {
        (&mut self.0).await.unwrap_or_default()
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_rank_matches_upstream() {
        // Expected orders computed with upstream's `binderhub.utils.rendezvous_rank` (Python's hashlib).
        let nodes = ["node-a", "node-b", "node-c", "node-d"];
        assert_eq!(
            rendezvous_rank(nodes, "https://github.com/binder-examples/requirements"),
            ["node-a", "node-d", "node-b", "node-c"]
        );
        assert_eq!(
            rendezvous_rank(nodes, "https://github.com/binder-examples/conda"),
            ["node-d", "node-c", "node-a", "node-b"]
        );
        assert_eq!(
            rendezvous_rank(nodes, "https://gitlab.com/x/y.git"),
            ["node-d", "node-b", "node-c", "node-a"]
        );
        assert!(rendezvous_rank([], "k").is_empty());
    }
}
