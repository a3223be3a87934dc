//! A test double of the Kubernetes API server, because no API server can be
//! installed where these tests run. It speaks the pod endpoints kube-rs calls
//! (create, get, list and watch with label and field selectors and resource
//! versions, log with follow and tailLines, delete) and the Lease endpoints
//! (create, get, replace with the resource version checked) and the Secret
//! endpoints (create, get, merge patch, delete; `stringData` stored as
//! base64 `data`, as the API server stores it) over real HTTP,
//! with the API server's status bodies (`409 AlreadyExists`, `409 Conflict`,
//! `404 NotFound`). Its
//! "kubelet" runs a pod's container as a local process: the command the test
//! maps the container's image to, then the container's args after the first
//! (the image's entrypoint), with the container's env (`secretKeyRef`s read
//! from the stored Secrets; a missing one leaves the pod Pending in
//! `CreateContainerConfigError`, as the kubelet does), and `DOCKER_HOST`
//! pointing at a socket mounted from the host at `/var/run/docker.sock`.
//! Phases go Pending → Running → Succeeded/Failed as the process does; an
//! image with no mapping stays Pending in `ErrImagePull`.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

/// A change, as a watch sends it.
#[derive(Clone)]
struct Change {
    rv: u64,
    namespace: String,
    kind: &'static str,
    pod: Value,
}

/// A container's output so far; `done` when it can grow no more.
#[derive(Default)]
struct Output {
    lines: Vec<String>,
    done: bool,
}

struct PodLog {
    output: Mutex<Output>,
    changed: watch::Sender<()>,
}

impl PodLog {
    fn new() -> Arc<PodLog> {
        Arc::new(PodLog {
            output: Mutex::default(),
            changed: watch::channel(()).0,
        })
    }
    fn push(&self, line: String) {
        self.output.lock().unwrap().lines.push(line);
        self.changed.send_replace(());
    }
    fn close(&self) {
        self.output.lock().unwrap().done = true;
        self.changed.send_replace(());
    }
}

#[derive(Default)]
struct Inner {
    rv: u64,
    uid: u64,
    /// By `namespace/name`.
    pods: BTreeMap<String, Value>,
    history: Vec<Change>,
    logs: HashMap<String, Arc<PodLog>>,
    kubelets: HashMap<String, JoinHandle<()>>,
    /// Each pod as created, spec and all.
    created: Vec<Value>,
    /// Leases by `namespace/name`.
    leases: BTreeMap<String, Value>,
    /// Secrets by `namespace/name`, as stored (`data` in base64).
    secrets: BTreeMap<String, Value>,
}

struct Shared {
    inner: Mutex<Inner>,
    changes: broadcast::Sender<Change>,
    /// Image → the command its entrypoint stands for.
    images: Mutex<HashMap<String, Vec<String>>>,
}

/// The API server double. Stops (and kills its pods' processes) on drop.
pub struct KubeApi {
    pub url: String,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        self.server.abort();
        for (_, kubelet) in self.shared.inner.lock().unwrap().kubelets.drain() {
            kubelet.abort();
        }
    }
}

fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

fn status(code: u16, reason: &str, message: String) -> Response {
    let body = json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code });
    (StatusCode::from_u16(code).unwrap(), axum::Json(body)).into_response()
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl KubeApi {
    pub async fn start() -> KubeApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            inner: Mutex::default(),
            changes: broadcast::channel(1024).0,
            images: Mutex::default(),
        });
        let app = axum::Router::new()
            .route(
                "/api/v1/namespaces/{ns}/pods",
                get(list_or_watch).post(create),
            )
            .route(
                "/api/v1/namespaces/{ns}/pods/{name}",
                get(read).delete(delete),
            )
            .route("/api/v1/namespaces/{ns}/pods/{name}/log", get(logs))
            .route(
                "/api/v1/namespaces/{ns}/secrets",
                axum::routing::post(create_secret),
            )
            .route(
                "/api/v1/namespaces/{ns}/secrets/{name}",
                get(read_secret).patch(patch_secret).delete(delete_secret),
            )
            .route(
                "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases",
                axum::routing::post(create_lease),
            )
            .route(
                "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}",
                get(read_lease).put(replace_lease),
            )
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        KubeApi {
            url,
            shared,
            server,
        }
    }

    /// The Secrets in `namespace` now, as stored.
    pub fn secrets(&self, namespace: &str) -> Vec<Value> {
        let prefix = format!("{namespace}/");
        self.shared
            .inner
            .lock()
            .unwrap()
            .secrets
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Pods of `image` run `command` followed by the container's args after the first.
    pub fn run_image(&self, image: &str, command: &[&str]) {
        self.shared.images.lock().unwrap().insert(
            image.into(),
            command
                .iter()
                .map(std::string::ToString::to_string)
                .collect(),
        );
    }

    /// The pods created through the API, as created, in order (a `409` is not a creation).
    pub fn created(&self) -> Vec<Pod> {
        self.shared
            .inner
            .lock()
            .unwrap()
            .created
            .iter()
            .map(|p| serde_json::from_value(p.clone()).unwrap())
            .collect()
    }

    /// A pod as the server holds it.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Pod> {
        let pod = self
            .shared
            .inner
            .lock()
            .unwrap()
            .pods
            .get(&key(namespace, name))
            .cloned()?;
        Some(serde_json::from_value(pod).unwrap())
    }

    /// Names of the pods in `namespace`.
    pub fn pods(&self, namespace: &str) -> Vec<String> {
        let prefix = format!("{namespace}/");
        self.shared
            .inner
            .lock()
            .unwrap()
            .pods
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix).map(String::from))
            .collect()
    }

    /// Puts a pod as it is (status and timestamps included), with no kubelet behind it.
    pub fn insert(&self, namespace: &str, pod: Value) {
        let name = pod["metadata"]["name"].as_str().unwrap().to_string();
        store(&self.shared, namespace, &name, "ADDED", pod);
    }

    /// What the kubelet does when the node runs out of disk: the pod fails, evicted.
    pub fn evict(&self, namespace: &str, name: &str) {
        if let Some(kubelet) = self
            .shared
            .inner
            .lock()
            .unwrap()
            .kubelets
            .remove(&key(namespace, name))
        {
            kubelet.abort();
        }
        update(&self.shared, namespace, name, |pod| {
            pod["status"] = json!({ "phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: ephemeral-storage." });
        });
        if let Some(log) = self
            .shared
            .inner
            .lock()
            .unwrap()
            .logs
            .get(&key(namespace, name))
        {
            log.close();
        }
    }

    /// Waits until the container of `name` has written a line containing `text`.
    pub async fn wait_for_log(&self, namespace: &str, name: &str, text: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let log = self
                .shared
                .inner
                .lock()
                .unwrap()
                .logs
                .get(&key(namespace, name))
                .cloned();
            if log.is_some_and(|l| {
                l.output
                    .lock()
                    .unwrap()
                    .lines
                    .iter()
                    .any(|line| line.contains(text))
            }) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "pod {name} never logged {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `name` in `namespace` has `phase`.
    pub async fn wait_for_phase(&self, namespace: &str, name: &str, phase: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let now = self
                .shared
                .inner
                .lock()
                .unwrap()
                .pods
                .get(&key(namespace, name))
                .map(|p| p["status"]["phase"].clone());
            if now.as_ref().and_then(Value::as_str) == Some(phase) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "pod {name} never reached {phase}: {now:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Stores `pod` with a new resource version and tells the watches.
fn store(shared: &Shared, namespace: &str, name: &str, kind: &'static str, pod: Value) -> Value {
    store_in(
        &mut shared.inner.lock().unwrap(),
        &shared.changes,
        namespace,
        name,
        kind,
        pod,
    )
}

fn store_in(
    inner: &mut Inner,
    changes: &broadcast::Sender<Change>,
    namespace: &str,
    name: &str,
    kind: &'static str,
    mut pod: Value,
) -> Value {
    inner.rv += 1;
    pod["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
    pod["metadata"]["namespace"] = json!(namespace);
    let change = Change {
        rv: inner.rv,
        namespace: namespace.into(),
        kind,
        pod: pod.clone(),
    };
    if kind == "DELETED" {
        inner.pods.remove(&key(namespace, name));
    } else {
        inner.pods.insert(key(namespace, name), pod.clone());
    }
    inner.history.push(change.clone());
    // Sent under the lock, so a watch that takes the history under it misses nothing.
    let _ = changes.send(change);
    pod
}

fn update(shared: &Shared, namespace: &str, name: &str, change: impl FnOnce(&mut Value)) {
    let Some(mut pod) = shared
        .inner
        .lock()
        .unwrap()
        .pods
        .get(&key(namespace, name))
        .cloned()
    else {
        return;
    };
    change(&mut pod);
    store(shared, namespace, name, "MODIFIED", pod);
}

/// `k=v,k2=v2` (and `!=`) against `fields`.
fn selected(
    selector: Option<&str>,
    value: impl Fn(&str) -> Option<String>,
) -> Result<bool, String> {
    for term in selector
        .unwrap_or_default()
        .split(',')
        .filter(|t| !t.is_empty())
    {
        let (k, want, equal) = if let Some((k, v)) = term.split_once("!=") {
            (k, v, false)
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            (k, v, true)
        } else {
            return Err(format!(
                "unable to parse requirement: {term:?}: found '', expected: '=', '!=' or '=='"
            ));
        };
        if (value(k).as_deref() == Some(want)) != equal {
            return Ok(false);
        }
    }
    Ok(true)
}

fn matches(pod: &Value, q: &HashMap<String, String>) -> Result<bool, String> {
    let labels = selected(q.get("labelSelector").map(String::as_str), |k| {
        pod["metadata"]["labels"][k].as_str().map(String::from)
    })?;
    let fields = selected(q.get("fieldSelector").map(String::as_str), |k| match k {
        "metadata.name" => pod["metadata"]["name"].as_str().map(String::from),
        "metadata.namespace" => pod["metadata"]["namespace"].as_str().map(String::from),
        "status.phase" => pod["status"]["phase"].as_str().map(String::from),
        "spec.nodeName" => pod["spec"]["nodeName"].as_str().map(String::from),
        _ => None,
    })?;
    Ok(labels && fields)
}

async fn list_or_watch(
    State(shared): State<Arc<Shared>>,
    Path(ns): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(field) = q
        .get("fieldSelector")
        .into_iter()
        .flat_map(|s| s.split(','))
        .find(|t| {
            let k = t.split(['=', '!']).next().unwrap_or_default();
            ![
                "metadata.name",
                "metadata.namespace",
                "status.phase",
                "spec.nodeName",
            ]
            .contains(&k)
        })
    {
        return status(
            400,
            "BadRequest",
            format!("field label not supported: {field}"),
        );
    }
    if q.get("watch").map(String::as_str) == Some("true") {
        return watch_pods(shared, ns, q);
    }
    let inner = shared.inner.lock().unwrap();
    let mut items = Vec::new();
    for pod in inner
        .pods
        .values()
        .filter(|p| p["metadata"]["namespace"] == ns.as_str())
    {
        match matches(pod, &q) {
            Ok(true) => items.push(pod.clone()),
            Ok(false) => {}
            Err(e) => return status(400, "BadRequest", e),
        }
    }
    axum::Json(json!({ "kind": "PodList", "apiVersion": "v1", "metadata": { "resourceVersion": inner.rv.to_string() }, "items": items })).into_response()
}

/// Changes after `resourceVersion`, as newline-separated watch events, until
/// `timeoutSeconds` or the client leaves.
fn watch_pods(shared: Arc<Shared>, ns: String, q: HashMap<String, String>) -> Response {
    let since: u64 = q
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let timeout = Duration::from_secs(
        q.get("timeoutSeconds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1800),
    );
    let (past, mut live) = {
        let inner = shared.inner.lock().unwrap();
        (
            inner
                .history
                .iter()
                .filter(|c| c.rv > since)
                .cloned()
                .collect::<Vec<_>>(),
            shared.changes.subscribe(),
        )
    };
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let send = |change: &Change| {
            let wanted = change.namespace == ns && matches(&change.pod, &q).unwrap_or(false);
            wanted.then(|| {
                Bytes::from(format!(
                    "{}\n",
                    json!({ "type": change.kind, "object": change.pod })
                ))
            })
        };
        let mut last = since;
        for change in &past {
            last = change.rv;
            if let Some(line) = send(change)
                && tx.send(line).await.is_err()
            {
                return;
            }
        }
        let _ = tokio::time::timeout(timeout, async {
            while let Ok(change) = live.recv().await {
                if change.rv <= last {
                    continue;
                }
                if let Some(line) = send(&change)
                    && tx.send(line).await.is_err()
                {
                    return;
                }
            }
        })
        .await;
    });
    streamed(rx, "application/json")
}

async fn create(
    State(shared): State<Arc<Shared>>,
    Path(ns): Path<String>,
    body: Bytes,
) -> Response {
    let pod: Pod = match decode(&body) {
        Ok(v) => v,
        Err(refused) => return *refused,
    };
    let Some(name) = pod.metadata.name.clone() else {
        return status(
            422,
            "Invalid",
            "Pod \"\" is invalid: metadata.name: Required value".into(),
        );
    };
    let dns_label = name.len() <= 63
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !dns_label {
        return status(
            422,
            "Invalid",
            format!(
                "Pod {name:?} is invalid: metadata.name: Invalid value: a lowercase RFC 1123 label must be at most 63 characters"
            ),
        );
    }
    let spec = pod.spec.clone().unwrap_or_default();
    if spec.containers.is_empty()
        || spec
            .containers
            .iter()
            .any(|c| c.image.as_deref().unwrap_or_default().is_empty())
    {
        return status(
            422,
            "Invalid",
            format!("Pod {name:?} is invalid: spec.containers: Required value"),
        );
    }
    let mut value = serde_json::to_value(&pod).unwrap();
    let mut inner = shared.inner.lock().unwrap();
    if inner.pods.contains_key(&key(&ns, &name)) {
        return status(
            409,
            "AlreadyExists",
            format!("pods {name:?} already exists"),
        );
    }
    inner.uid += 1;
    value["metadata"]["uid"] = json!(format!("00000000-0000-0000-0000-{:012}", inner.uid));
    value["metadata"]["creationTimestamp"] = json!(now());
    value["status"] = json!({ "phase": "Pending", "containerStatuses": [{ "name": spec.containers[0].name, "image": spec.containers[0].image, "imageID": "", "ready": false, "restartCount": 0, "state": { "waiting": { "reason": "ContainerCreating" } } }] });
    inner.logs.insert(key(&ns, &name), PodLog::new());
    let stored = store_in(&mut inner, &shared.changes, &ns, &name, "ADDED", value);
    inner.created.push(stored.clone());
    let kubelet = tokio::spawn(kubelet(shared.clone(), ns.clone(), name.clone(), pod));
    inner.kubelets.insert(key(&ns, &name), kubelet);
    (StatusCode::CREATED, axum::Json(stored)).into_response()
}

async fn read(
    State(shared): State<Arc<Shared>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    match shared.inner.lock().unwrap().pods.get(&key(&ns, &name)) {
        Some(pod) => axum::Json(pod.clone()).into_response(),
        None => status(404, "NotFound", format!("pods {name:?} not found")),
    }
}

async fn delete(
    State(shared): State<Arc<Shared>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    let (pod, kubelet, log) = {
        let mut inner = shared.inner.lock().unwrap();
        let k = key(&ns, &name);
        (
            inner.pods.get(&k).cloned(),
            inner.kubelets.remove(&k),
            inner.logs.get(&k).cloned(),
        )
    };
    let Some(mut pod) = pod else {
        return status(404, "NotFound", format!("pods {name:?} not found"));
    };
    if let Some(kubelet) = kubelet {
        kubelet.abort();
    }
    if let Some(log) = log {
        log.close();
    }
    // Removed at once, as with a grace period of 0.
    pod["metadata"]["deletionTimestamp"] = json!(now());
    store(&shared, &ns, &name, "DELETED", pod.clone());
    axum::Json(pod).into_response()
}

async fn logs(
    State(shared): State<Arc<Shared>>,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (pod, log) = {
        let inner = shared.inner.lock().unwrap();
        (
            inner.pods.get(&key(&ns, &name)).cloned(),
            inner.logs.get(&key(&ns, &name)).cloned(),
        )
    };
    let Some(pod) = pod else {
        return status(404, "NotFound", format!("pods {name:?} not found"));
    };
    let container = pod["spec"]["containers"][0]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if let Some(asked) = q.get("container").filter(|c| **c != container) {
        return status(
            400,
            "BadRequest",
            format!("container {asked} is not valid for pod {name}"),
        );
    }
    if pod["status"]["phase"] == "Pending" {
        return status(
            400,
            "BadRequest",
            format!(
                "container {container:?} in pod {name:?} is waiting to start: ContainerCreating"
            ),
        );
    }
    let log = log.unwrap_or_else(PodLog::new);
    let follow = q.get("follow").map(String::as_str) == Some("true");
    let tail: Option<usize> = q.get("tailLines").and_then(|t| t.parse().ok());
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let mut changed = log.changed.subscribe();
        let mut next = {
            let out = log.output.lock().unwrap();
            tail.map_or(0, |t| out.lines.len().saturating_sub(t))
        };
        loop {
            changed.borrow_and_update();
            let (lines, done) = {
                let out = log.output.lock().unwrap();
                (out.lines[next..].to_vec(), out.done)
            };
            next += lines.len();
            for line in lines {
                if tx.send(Bytes::from(format!("{line}\n"))).await.is_err() {
                    return;
                }
            }
            if done || !follow || changed.changed().await.is_err() {
                return;
            }
        }
    });
    streamed(rx, "text/plain")
}

async fn create_lease(
    State(shared): State<Arc<Shared>>,
    Path(ns): Path<String>,
    body: Bytes,
) -> Response {
    let lease: k8s_openapi::api::coordination::v1::Lease = match decode(&body) {
        Ok(v) => v,
        Err(refused) => return *refused,
    };
    let name = lease.metadata.name.clone().unwrap_or_default();
    let mut inner = shared.inner.lock().unwrap();
    if inner.leases.contains_key(&key(&ns, &name)) {
        return status(
            409,
            "AlreadyExists",
            format!("leases.coordination.k8s.io {name:?} already exists"),
        );
    }
    (
        StatusCode::CREATED,
        axum::Json(put_lease(&mut inner, &ns, &name, &lease)),
    )
        .into_response()
}

/// Stores `lease` with a new resource version.
fn put_lease(
    inner: &mut Inner,
    ns: &str,
    name: &str,
    lease: &k8s_openapi::api::coordination::v1::Lease,
) -> Value {
    inner.rv += 1;
    let mut value = serde_json::to_value(lease).unwrap();
    value["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
    value["metadata"]["namespace"] = json!(ns);
    inner.leases.insert(key(ns, name), value.clone());
    value
}

async fn read_lease(
    State(shared): State<Arc<Shared>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    match shared.inner.lock().unwrap().leases.get(&key(&ns, &name)) {
        Some(lease) => axum::Json(lease.clone()).into_response(),
        None => status(
            404,
            "NotFound",
            format!("leases.coordination.k8s.io {name:?} not found"),
        ),
    }
}

/// An update must carry the stored resource version (optimistic concurrency), as the API server's.
async fn replace_lease(
    State(shared): State<Arc<Shared>>,
    Path((ns, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let lease: k8s_openapi::api::coordination::v1::Lease = match decode(&body) {
        Ok(v) => v,
        Err(refused) => return *refused,
    };
    let mut inner = shared.inner.lock().unwrap();
    let Some(stored) = inner.leases.get(&key(&ns, &name)) else {
        return status(
            404,
            "NotFound",
            format!("leases.coordination.k8s.io {name:?} not found"),
        );
    };
    if lease.metadata.resource_version.as_deref() != stored["metadata"]["resourceVersion"].as_str()
    {
        return status(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on leases.coordination.k8s.io {name:?}: the object has been modified; please apply your changes to the latest version and try again"
            ),
        );
    }
    axum::Json(put_lease(&mut inner, &ns, &name, &lease)).into_response()
}

/// Runs the pod's one container as a process, moving the pod through its phases.
async fn kubelet(shared: Arc<Shared>, ns: String, name: String, pod: Pod) {
    tokio::time::sleep(Duration::from_millis(50)).await;
    let spec = pod.spec.unwrap_or_default();
    let container = &spec.containers[0];
    let image = container.image.clone().unwrap_or_default();
    let Some(command) = shared.images.lock().unwrap().get(&image).cloned() else {
        update(&shared, &ns, &name, |pod| {
            pod["status"]["containerStatuses"][0]["state"] = json!({ "waiting": { "reason": "ErrImagePull", "message": format!("failed to pull image {image:?}: pull access denied") } });
        });
        return;
    };
    let mut process = tokio::process::Command::new(&command[0]);
    process
        .args(&command[1..])
        .args(container.args.iter().flatten().skip(1));
    let mut env = Vec::new();
    for e in container.env.iter().flatten() {
        let value = match e
            .value_from
            .as_ref()
            .and_then(|f| f.secret_key_ref.as_ref())
        {
            None => e.value.clone().unwrap_or_default(),
            Some(r) => match secret_value(&shared, &ns, &r.name, &r.key) {
                Some(v) => v,
                None => {
                    let message = format!("secret {:?} not found", r.name);
                    return update(&shared, &ns, &name, |pod| {
                        pod["status"]["containerStatuses"][0]["state"] = json!({ "waiting": { "reason": "CreateContainerConfigError", "message": message } });
                    });
                }
            },
        };
        env.push((e.name.clone(), value));
    }
    process.envs(env);
    let socket = container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == "/var/run/docker.sock")
        .and_then(|m| {
            spec.volumes
                .iter()
                .flatten()
                .find(|v| v.name == m.name)?
                .host_path
                .as_ref()
                .map(|h| h.path.clone())
        });
    if let Some(socket) = socket {
        process.env("DOCKER_HOST", format!("unix://{socket}"));
    }
    process
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let log = shared
        .inner
        .lock()
        .unwrap()
        .logs
        .get(&key(&ns, &name))
        .cloned()
        .unwrap_or_else(PodLog::new);
    let mut child = match process.spawn() {
        Ok(child) => child,
        Err(e) => {
            log.close();
            return update(&shared, &ns, &name, |pod| {
                pod["status"]["phase"] = json!("Failed");
                pod["status"]["containerStatuses"][0]["state"] = json!({ "terminated": { "exitCode": 128, "reason": "StartError", "message": e.to_string() } });
            });
        }
    };
    update(&shared, &ns, &name, |pod| {
        pod["spec"]["nodeName"] = json!("node-1");
        pod["status"]["phase"] = json!("Running");
        pod["status"]["containerStatuses"][0]["state"] =
            json!({ "running": { "startedAt": now() } });
    });
    let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    tokio::join!(collect(stdout, &log), collect(stderr, &log));
    let code = child
        .wait()
        .await
        .ok()
        .and_then(|s| s.code())
        .unwrap_or(137);
    log.close();
    update(&shared, &ns, &name, |pod| {
        pod["status"]["phase"] = json!(if code == 0 { "Succeeded" } else { "Failed" });
        pod["status"]["containerStatuses"][0]["state"] = json!({ "terminated": { "exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" }, "finishedAt": now() } });
    });
}

async fn collect(stream: impl AsyncRead + Unpin, log: &PodLog) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        log.push(line);
    }
}

/// A response whose body is what arrives on `rx`, until it closes (a watch,
/// a followed log).
fn streamed(rx: tokio::sync::mpsc::Receiver<Bytes>, content_type: &str) -> Response {
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Response::builder()
        .header("content-type", content_type)
        .body(Body::from_stream(body))
        .unwrap()
}

fn secret_value(shared: &Shared, ns: &str, name: &str, data_key: &str) -> Option<String> {
    use base64::Engine;
    let inner = shared.inner.lock().unwrap();
    let encoded = inner.secrets.get(&key(ns, name))?["data"][data_key]
        .as_str()?
        .to_string();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// `stringData` folded into base64 `data`, as the API server stores a Secret.
fn fold_string_data(secret: &mut Value) {
    use base64::Engine;
    if let Some(Value::Object(plain)) = secret.as_object_mut().and_then(|o| o.remove("stringData"))
    {
        for (k, v) in plain {
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or_default());
            secret["data"][k] = json!(encoded);
        }
    }
}

async fn create_secret(
    State(shared): State<Arc<Shared>>,
    Path(ns): Path<String>,
    body: Bytes,
) -> Response {
    let mut secret: Value = match decode(&body) {
        Ok(v) => v,
        Err(refused) => return *refused,
    };
    let Some(name) = secret["metadata"]["name"].as_str().map(str::to_string) else {
        return status(
            422,
            "Invalid",
            "Secret \"\" is invalid: metadata.name: Required value".into(),
        );
    };
    let mut inner = shared.inner.lock().unwrap();
    if inner.secrets.contains_key(&key(&ns, &name)) {
        return status(
            409,
            "AlreadyExists",
            format!("secrets {name:?} already exists"),
        );
    }
    fold_string_data(&mut secret);
    inner.uid += 1;
    secret["metadata"]["uid"] = json!(format!("00000000-0000-0000-0001-{:012}", inner.uid));
    inner.secrets.insert(key(&ns, &name), secret.clone());
    (StatusCode::CREATED, axum::Json(secret)).into_response()
}

async fn read_secret(
    State(shared): State<Arc<Shared>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    match shared.inner.lock().unwrap().secrets.get(&key(&ns, &name)) {
        Some(secret) => axum::Json(secret.clone()).into_response(),
        None => status(404, "NotFound", format!("secrets {name:?} not found")),
    }
}

/// A JSON merge patch (RFC 7386), as `kubectl patch --type merge` sends.
async fn patch_secret(
    State(shared): State<Arc<Shared>>,
    Path((ns, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    fn merge(target: &mut Value, patch: &Value) {
        match (target, patch) {
            (Value::Object(t), Value::Object(p)) => {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
            (t, p) => *t = p.clone(),
        }
    }
    let patch: Value = match decode(&body) {
        Ok(v) => v,
        Err(refused) => return *refused,
    };
    let mut inner = shared.inner.lock().unwrap();
    let Some(secret) = inner.secrets.get_mut(&key(&ns, &name)) else {
        return status(404, "NotFound", format!("secrets {name:?} not found"));
    };
    merge(secret, &patch);
    fold_string_data(secret);
    axum::Json(secret.clone()).into_response()
}

async fn delete_secret(
    State(shared): State<Arc<Shared>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    match shared
        .inner
        .lock()
        .unwrap()
        .secrets
        .remove(&key(&ns, &name))
    {
        Some(_) => axum::Json(json!({ "kind": "Status", "apiVersion": "v1", "status": "Success" }))
            .into_response(),
        None => status(404, "NotFound", format!("secrets {name:?} not found")),
    }
}

/// A request body as the API server decodes it; a 400 `BadRequest` status
/// in the API server's words when it does not decode.
fn decode<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Box<Response>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(status(
            400,
            "BadRequest",
            format!("the body of the request was in an unknown format: {e}"),
        ))
    })
}
