//! The Helm chart (`charts/bindery`), rendered by Helm's own library
//! (`helm-python-sdk`, from `scripts/helm.sh`) for the default values and
//! each executor and hub mode. Every manifest is checked against the
//! Kubernetes 1.33 OpenAPI schemas (strict), the pieces that matter are
//! asserted, and the `bindery.toml` the chart writes is loaded by Bindery's
//! own config loader. No cluster can run here, so nothing is installed. The
//! zero-to-jupyterhub subchart cannot be fetched here either: with
//! `jupyterhub.enabled` the chart renders with `charts/bindery/tests/z2jh`, a
//! test double of what z2jh documents (name helpers, the hub Secret and its
//! keys, Services, labels, NetworkPolicies), and the wiring is checked
//! against it. The release is named `bindery`, in namespace `binder`.

use crate::support;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use base64::Engine;
use bindery::config::{Config, PluginSource, SecretSource};
use serde_json::{Value, json};
use support::kube::KubeApi;
use support::service::Process;

fn python() -> &'static PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        PathBuf::from(
            support::run_script("helm.sh")
                .remove("PYTHON")
                .expect("PYTHON="),
        )
    })
}

/// The chart rendered with `values`: its manifests, or why the values were refused.
fn render(values: Value) -> Result<Vec<Value>, String> {
    rendered(values).map(|answer| answer["manifests"].as_array().unwrap().clone())
}

/// The chart's NOTES.txt for `values`.
fn notes(values: Value) -> String {
    rendered(values).unwrap()["notes"]
        .as_str()
        .unwrap()
        .to_string()
}

/// render.py's answer: manifests and notes.
fn rendered(values: Value) -> Result<Value, String> {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), values.to_string()).unwrap();
    let chart = support::workspace().join("charts/bindery");
    let out = Command::new(python())
        .arg(chart.join("tests/render.py"))
        .arg(&chart)
        .arg(file.path())
        .arg("1.33")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "render.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    if let Some(e) = answer["values_error"].as_str() {
        return Err(e.to_string());
    }
    assert_eq!(
        answer["errors"],
        json!([]),
        "manifests that the Kubernetes schemas refuse"
    );
    Ok(answer)
}

fn named<'a>(manifests: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    manifests
        .iter()
        .find(|m| m["kind"] == kind && m["metadata"]["name"] == name)
}

fn env_names(container: &Value) -> Vec<&str> {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect()
}

fn kind<'a>(manifests: &'a [Value], kind: &str) -> Option<&'a Value> {
    manifests.iter().find(|m| m["kind"] == kind)
}

/// The `bindery.toml` of the ConfigMap, through Bindery's own loader.
fn config(manifests: &[Value]) -> Config {
    let text = named(manifests, "ConfigMap", "bindery").unwrap()["data"]["bindery.toml"]
        .as_str()
        .unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    Config::load(Some(file.path()))
        .unwrap_or_else(|e| panic!("Bindery refuses the chart's config: {e}\n{text}"))
}

fn container(manifests: &[Value]) -> &Value {
    &named(manifests, "Deployment", "bindery").unwrap()["spec"]["template"]["spec"]["containers"][0]
}

/// The labels of a Deployment's pods.
fn pod_labels<'a>(manifests: &'a [Value], deployment: &str) -> &'a Value {
    &named(manifests, "Deployment", deployment).unwrap()["spec"]["template"]["metadata"]["labels"]
}

/// What a Secret in the release holds under `key` (`data` decoded, or `stringData`).
fn secret_value(manifests: &[Value], name: &str, key: &str) -> Option<String> {
    let secret = named(manifests, "Secret", name)?;
    if let Some(v) = secret["stringData"][key].as_str() {
        return Some(v.to_string());
    }
    let encoded = secret["data"][key].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    Some(String::from_utf8(bytes).unwrap())
}

/// An address in the pod network: every pod is taken to have one in 10.0.0.0/8.
const POD_IP: &str = "10.1.2.3";

fn selects(selector: &Value, labels: &Value) -> bool {
    assert!(
        selector.get("matchExpressions").is_none(),
        "not evaluated here: {selector}"
    );
    selector["matchLabels"]
        .as_object()
        .is_none_or(|m| m.iter().all(|(k, v)| &labels[k] == v))
}

/// Whether a NetworkPolicy peer list admits a pod of `labels` in the same namespace.
fn peers_admit(peers: &Value, labels: &Value) -> bool {
    let Some(peers) = peers.as_array().filter(|p| !p.is_empty()) else {
        return true;
    };
    peers.iter().any(|peer| {
        if let Some(block) = peer.get("ipBlock") {
            let ip: std::net::IpAddr = POD_IP.parse().unwrap();
            let within = |cidr: &Value| {
                cidr.as_str()
                    .unwrap()
                    .parse::<ipnet::IpNet>()
                    .unwrap()
                    .contains(&ip)
            };
            return within(&block["cidr"])
                && !block["except"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(within));
        }
        let same_namespace = peer
            .get("namespaceSelector")
            .is_none_or(|n| n.as_object().is_some_and(serde_json::Map::is_empty));
        same_namespace && peer.get("podSelector").is_none_or(|s| selects(s, labels))
    })
}

fn ports_admit(ports: &Value, (name, number): (&str, u16)) -> bool {
    ports
        .as_array()
        .filter(|p| !p.is_empty())
        .is_none_or(|ports| {
            ports
                .iter()
                .any(|p| p["port"] == name || p["port"] == number)
        })
}

/// Whether the release's NetworkPolicies let a pod labelled `from` connect
/// to a pod labelled `to` on its container port `port` (name, number), both
/// in the release's namespace: the source's egress and the target's ingress.
fn admits(manifests: &[Value], from: &Value, to: &Value, port: (&str, u16)) -> bool {
    let policies: Vec<&Value> = manifests
        .iter()
        .filter(|m| m["kind"] == "NetworkPolicy")
        .collect();
    let direction = |pod: &Value, kind: &str, rules: &str, peers: &str, other: &Value| {
        let applying: Vec<&&Value> = policies
            .iter()
            .filter(|p| selects(&p["spec"]["podSelector"], pod))
            .filter(|p| {
                p["spec"]["policyTypes"]
                    .as_array()
                    .unwrap()
                    .contains(&json!(kind))
            })
            .collect();
        applying.is_empty()
            || applying.iter().any(|p| {
                p["spec"][rules].as_array().unwrap().iter().any(|rule| {
                    peers_admit(&rule[peers], other) && ports_admit(&rule["ports"], port)
                })
            })
    };
    direction(from, "Egress", "egress", "to", to)
        && direction(to, "Ingress", "ingress", "from", from)
}

fn rules(manifests: &[Value]) -> Vec<(String, Vec<String>)> {
    let Some(role) = kind(manifests, "Role") else {
        return Vec::new();
    };
    role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let resource = r["resources"][0].as_str().unwrap().to_string();
            (
                resource,
                r["verbs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn default_values_build_pods_with_only_the_rights_they_use() {
    let m = render(json!({})).unwrap();
    // RBAC: build pods and their logs; no Lease with one replica.
    assert_eq!(
        rules(&m),
        [
            (
                "pods".into(),
                vec![
                    "get".into(),
                    "list".into(),
                    "watch".into(),
                    "create".into(),
                    "delete".into()
                ]
            ),
            ("pods/log".into(), vec!["get".into()]),
            (
                "secrets".into(),
                vec!["create".into(), "patch".into(), "delete".into()]
            )
        ]
    );
    let binding = kind(&m, "RoleBinding").unwrap();
    assert_eq!(binding["subjects"][0]["name"], "bindery");
    assert!(named(&m, "ServiceAccount", "bindery").is_some());
    // Probes on /versions, as upstream's: no hub, registry or quota can
    // take every replica out of the Service.
    let c = container(&m);
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/versions");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/versions");
    assert_eq!(c["resources"]["limits"]["memory"], "512Mi");
    assert_eq!(
        c["args"],
        json!(["serve", "--config", "/etc/bindery/bindery.toml"])
    );
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    let pod = &named(&m, "Deployment", "bindery").unwrap()["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["enableServiceLinks"], false);
    let annotations =
        &named(&m, "Deployment", "bindery").unwrap()["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    assert_eq!(
        kind(&m, "PodDisruptionBudget").unwrap()["spec"]["maxUnavailable"],
        1
    );
    let mounts: Vec<&str> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["mountPath"].as_str().unwrap())
        .collect();
    assert_eq!(
        mounts,
        ["/etc/bindery", "/var/lib/bindery", "/tmp"],
        "no engine socket in Bindery's own pod"
    );
    assert_eq!(pod["volumes"][1]["emptyDir"], json!({}));
    assert_eq!(
        named(&m, "Deployment", "bindery").unwrap()["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
        0,
        "upgrades without downtime"
    );
    assert!(kind(&m, "Ingress").is_none() && kind(&m, "PersistentVolumeClaim").is_none());
    // One build-token key for every replica, generated into the chart's Secret.
    let secret = kind(&m, "Secret").unwrap();
    let key = secret["stringData"]["build-token-secret"].as_str().unwrap();
    assert!(
        key.len() == 64 && key.chars().all(|c| c.is_ascii_hexdigit()),
        "{key}"
    );
    assert_eq!(
        secret["stringData"].as_object().unwrap().len(),
        1,
        "{secret}"
    );
    assert_eq!(
        env_names(container(&m)),
        [
            "BINDERY_LOG",
            "BINDERY_LOG_FORMAT",
            "BINDERHUB_BUILD_TOKEN_SECRET"
        ]
    );
    // The node's Docker, pruned by the image cleaner, which may cordon its node.
    let cleaner = named(&m, "DaemonSet", "bindery-image-cleaner").unwrap();
    let cleaner_pod = &cleaner["spec"]["template"]["spec"];
    assert_eq!(
        cleaner_pod["volumes"],
        json!([{ "name": "storage", "hostPath": { "path": "/var/lib/docker" } },
               { "name": "socket-dir", "hostPath": { "path": "/var/run", "type": "Directory" } }])
    );
    let cleaner_env = &cleaner_pod["containers"][0]["env"];
    assert_eq!(
        cleaner_env[0],
        json!({ "name": "DOCKER_HOST", "value": "unix:///var/run/docker.sock" })
    );
    assert_eq!(
        named(&m, "ClusterRole", "bindery-image-cleaner").unwrap()["rules"],
        json!([{ "apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "patch"] }])
    );
    assert!(
        kind(&m, "DaemonSet").unwrap()["metadata"]["name"] == "bindery-image-cleaner",
        "no builder DaemonSet with the host's engine"
    );
    // Build pods take no connections and reach DNS and the Internet only.
    let builds = named(&m, "NetworkPolicy", "bindery-build-pods").unwrap();
    assert_eq!(
        builds["spec"]["podSelector"]["matchLabels"]["component"],
        "binderhub-build"
    );
    assert_eq!(builds["spec"]["ingress"], json!([]));
    let egress = builds["spec"]["egress"].as_array().unwrap();
    assert_eq!(egress[0]["ports"][0]["port"], 53);
    let except = &egress[1]["to"][0]["ipBlock"]["except"];
    for private in [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
    ] {
        assert!(
            except.as_array().unwrap().contains(&json!(private)),
            "{except}"
        );
    }
    let own = named(&m, "NetworkPolicy", "bindery").unwrap();
    assert_eq!(
        own["spec"]["ingress"],
        json!([{ "ports": [{ "port": "http" }] }])
    );
    assert_eq!(
        own["spec"]["egress"][0]["to"][0]["ipBlock"]["except"],
        json!(["169.254.169.254/32"])
    );
    // The config Bindery reads.
    let c = config(&m);
    let k = c
        .build
        .kubernetes
        .as_ref()
        .expect("the kubernetes executor");
    assert_eq!(
        (k.namespace.as_deref(), k.docker_host.as_str()),
        (Some("binder"), "/var/run/docker.sock")
    );
    assert_eq!(
        c.plugins["layer-first"].config_strings()["executor"],
        "kubernetes"
    );
    assert_eq!(c.plugins["idle"].config_strings()["timeout_secs"], "600");
    assert!(c.cull.leader.is_none());
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/bindery"));
    assert!(
        matches!(&c.web.build_token_secret, Some(SecretSource::Env(v)) if v == "BINDERHUB_BUILD_TOKEN_SECRET")
    );
    assert_eq!(
        (c.web.max_connections, c.web.header_read_timeout_secs),
        (1500, 10),
        "sized to the 512Mi limit"
    );
}

#[test]
fn behind_an_ingress_the_proxies_and_the_build_token_key_are_the_operators() {
    let values = json!({
        "ingress": { "enabled": true, "className": "nginx", "hosts": ["binder.example.org"] },
        "web": { "trustedProxies": ["10.42.0.0/16"] },
        "buildToken": { "existingSecret": "binder-build-token" },
        "networkPolicy": { "enabled": false },
    });
    let m = render(values.clone()).unwrap();
    let c = config(&m);
    assert_eq!(
        c.web.trusted_proxies,
        ["10.42.0.0/16".parse::<ipnet::IpNet>().unwrap()]
    );
    let token = container(&m)["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "BINDERHUB_BUILD_TOKEN_SECRET")
        .unwrap()
        .clone();
    assert_eq!(
        token["valueFrom"]["secretKeyRef"],
        json!({ "name": "binder-build-token", "key": "build-token-secret" })
    );
    assert!(
        kind(&m, "Secret").is_none(),
        "nothing left for the chart's Secret"
    );
    assert!(kind(&m, "NetworkPolicy").is_none());
    assert!(!notes(values).contains("trustedProxies is empty"));
    // Without the proxies, the notes say what goes wrong.
    let warned = notes(json!({ "ingress": { "enabled": true, "hosts": ["binder.example.org"] } }));
    assert!(warned.contains("web.trustedProxies is empty"), "{warned}");
}

#[test]
fn build_pods_on_dind_with_replicas_elect_a_culler_and_find_their_nodes() {
    let m = render(json!({
        "replicas": 2,
        "build": { "imageBuilderType": "dind", "kubernetes": { "stickyBuilds": true, "nodeSelector": { "pool": "builds" } } },
        "hub": { "url": "https://hub.example.org/", "apiToken": "hub-secret" },
        "registry": { "url": "https://registry.example.org", "imagePrefix": "registry.example.org/binder/i-", "username": "builder", "password": "pw" },
        "secretEnv": { "CAMPUS_TOKEN": "campus-secret" },
        "ingress": { "enabled": true, "className": "nginx", "hosts": ["binder.example.org"] },
        "plugins": { "campus": { "oci": format!("oci://registry.example.org/plugins/campus@sha256:{}", "a".repeat(64)), "secrets": { "token": { "env": "CAMPUS_TOKEN" } } } },
    }))
    .unwrap();
    assert_eq!(
        rules(&m).last().unwrap(),
        &(
            "leases".into(),
            vec!["get".into(), "create".into(), "update".into()]
        ),
    );
    // dind on the build nodes: the socket build pods mount, and the labels
    // sticky builds rank nodes by.
    let dind = named(&m, "DaemonSet", "bindery-dind").unwrap();
    let pod = &dind["spec"]["template"];
    assert_eq!(
        pod["metadata"]["labels"],
        json!({ "app": "binder", "component": "image-builder", "release": "bindery" })
    );
    assert_eq!(pod["spec"]["nodeSelector"], json!({ "pool": "builds" }));
    let args = pod["spec"]["containers"][0]["args"].as_array().unwrap();
    assert!(
        args.contains(&json!("unix:///var/run/dind/docker.sock")),
        "{args:?}"
    );
    assert_eq!(
        pod["spec"]["containers"][0]["securityContext"]["privileged"],
        true
    );
    let cleaner = named(&m, "DaemonSet", "bindery-image-cleaner").unwrap();
    assert_eq!(
        cleaner["spec"]["template"]["spec"]["volumes"][0]["hostPath"]["path"], "/var/lib/dind",
        "the cleaner watches dind's storage"
    );
    assert_eq!(
        env_names(container(&m)),
        [
            "BINDERY_LOG",
            "BINDERY_LOG_FORMAT",
            "JUPYTERHUB_API_TOKEN",
            "BINDERHUB_BUILD_TOKEN_SECRET",
            "REGISTRY_PASSWORD",
            "CAMPUS_TOKEN"
        ]
    );
    let mut secret = named(&m, "Secret", "bindery").unwrap()["stringData"].clone();
    secret.as_object_mut().unwrap().remove("build-token-secret");
    assert_eq!(
        secret,
        json!({ "hub-token": "hub-secret", "registry-password": "pw", "env-CAMPUS_TOKEN": "campus-secret" })
    );
    assert_eq!(
        kind(&m, "Ingress").unwrap()["spec"]["rules"][0]["host"],
        "binder.example.org"
    );

    let c = config(&m);
    let k = c.build.kubernetes.as_ref().unwrap();
    assert_eq!(k.docker_host, "/var/run/dind/docker.sock");
    assert!(k.sticky_builds);
    let leader = c.cull.leader.as_ref().expect("a Lease with two replicas");
    assert_eq!(
        (leader.lease.as_str(), leader.namespace.as_deref()),
        ("bindery-culler", Some("binder"))
    );
    // The warm pool's passes are the leader's too, with or without the culler.
    let pooled = config(
        &render(
            json!({ "replicas": 2, "cull": { "enabled": false }, "warmPool": { "maxServers": 3 } }),
        )
        .unwrap(),
    );
    assert!(pooled.cull.leader.is_some() && pooled.warm_pool.max_servers == 3);
    assert_eq!(
        c.hub.url.as_ref().unwrap().as_str(),
        "https://hub.example.org/"
    );
    assert_eq!(c.registry.username.as_deref(), Some("builder"));
    assert!(
        matches!(c.plugins["campus"].source("campus").unwrap(), PluginSource::Oci(r) if r.starts_with("registry.example.org/plugins/campus@sha256:"))
    );

    // pink: Podman's socket instead, its storage to the cleaner.
    let m = render(json!({ "build": { "imageBuilderType": "pink" } })).unwrap();
    let pink = named(&m, "DaemonSet", "bindery-pink").unwrap();
    let args = pink["spec"]["template"]["spec"]["containers"][0]["args"].clone();
    assert_eq!(
        args,
        json!([
            "podman",
            "system",
            "service",
            "--time=0",
            "unix:///var/run/pink/podman.sock"
        ])
    );
    assert_eq!(
        config(&m).build.kubernetes.unwrap().docker_host,
        "/var/run/pink/podman.sock"
    );
    assert_eq!(
        named(&m, "DaemonSet", "bindery-image-cleaner").unwrap()["spec"]["template"]["spec"]["volumes"]
            [0]["hostPath"]["path"],
        "/var/lib/pink/storage"
    );
}

#[test]
fn an_operators_pod_settings_metrics_and_routes() {
    let values = json!({
        "log": { "level": "info,bindery::build=debug", "format": "json" },
        "extraEnv": {
            "HTTPS_PROXY": "http://proxy:3128",
            "CAMPUS_TOKEN": { "valueFrom": { "secretKeyRef": { "name": "campus", "key": "token" } } },
        },
        "extraVolumes": [{ "name": "ca", "configMap": { "name": "campus-ca" } }],
        "extraVolumeMounts": [{ "name": "ca", "mountPath": "/etc/ssl/campus", "readOnly": true }],
        "podAnnotations": { "example.org/team": "binder" },
        "podLabels": { "team": "binder" },
        "nodeSelector": { "pool": "web" },
        "tolerations": [{ "key": "web", "operator": "Exists" }],
        "affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": { "nodeSelectorTerms": [{ "matchExpressions": [{ "key": "zone", "operator": "In", "values": ["a"] }] }] } } },
        "pluginRuntime": { "memoryBudgetMiB": 256 },
        "pdb": { "minAvailable": 1 },
        "metrics": { "annotations": false, "serviceMonitor": { "enabled": true, "labels": { "release": "prometheus" } } },
        "httpRoute": { "enabled": true, "hostnames": ["binder.example.org"], "parentRefs": [{ "name": "public", "namespace": "gateway" }] },
        "web": { "baseUrl": "/binder/" },
        "build": { "executor": "layer" },
    });
    let m = render(values.clone()).unwrap();
    let c = container(&m);
    let env = c["env"].as_array().unwrap();
    assert_eq!(
        env[0],
        json!({ "name": "BINDERY_LOG", "value": "info,bindery::build=debug" })
    );
    assert_eq!(
        env[1],
        json!({ "name": "BINDERY_LOG_FORMAT", "value": "json" })
    );
    assert!(env.contains(&json!({ "name": "HTTPS_PROXY", "value": "http://proxy:3128" })));
    assert!(env.contains(&json!({ "name": "CAMPUS_TOKEN", "valueFrom": { "secretKeyRef": { "name": "campus", "key": "token" } } })));
    assert_eq!(
        c["volumeMounts"].as_array().unwrap().last().unwrap()["mountPath"],
        "/etc/ssl/campus"
    );
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/binder/versions");
    // The limit grows with the plugins' budget: 416 MiB and the budget.
    assert_eq!(c["resources"]["limits"]["memory"], "672Mi");
    assert_eq!(config(&m).plugin_runtime.memory_budget_mib, 256);
    let template = &named(&m, "Deployment", "bindery").unwrap()["spec"]["template"];
    assert_eq!(template["metadata"]["labels"]["team"], "binder");
    assert_eq!(
        template["metadata"]["annotations"]["example.org/team"],
        "binder"
    );
    assert!(
        template["metadata"]["annotations"]
            .get("prometheus.io/scrape")
            .is_none()
    );
    let pod = &template["spec"];
    assert_eq!(
        pod["volumes"].as_array().unwrap().last().unwrap()["configMap"]["name"],
        "campus-ca"
    );
    assert_eq!(pod["nodeSelector"], json!({ "pool": "web" }));
    assert_eq!(pod["tolerations"][0]["key"], "web");
    assert!(
        pod["affinity"].get("podAntiAffinity").is_none(),
        "the operator's affinity replaces the default"
    );
    assert_eq!(
        kind(&m, "PodDisruptionBudget").unwrap()["spec"],
        json!({ "minAvailable": 1, "selector": { "matchLabels": { "app.kubernetes.io/name": "bindery", "app.kubernetes.io/instance": "bindery" } } })
    );
    let monitor = kind(&m, "ServiceMonitor").unwrap();
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/binder/metrics");
    assert_eq!(
        monitor["spec"]["endpoints"][0]["port"],
        kind(&m, "Service").unwrap()["spec"]["ports"][0]["name"]
    );
    let route = kind(&m, "HTTPRoute").unwrap();
    assert_eq!(
        route["spec"]["rules"][0]["backendRefs"],
        json!([{ "name": "bindery", "port": 80 }])
    );
    assert_eq!(route["spec"]["parentRefs"][0]["namespace"], "gateway");
    assert!(
        kind(&m, "DaemonSet").is_none(),
        "layer builds use no engine"
    );

    // A values change that changes bindery.toml rolls the pods; one that does not, does not.
    let checksum = |m: &[Value]| {
        kind(m, "Deployment").unwrap()["spec"]["template"]["metadata"]["annotations"]["checksum/config"].clone()
    };
    let mut changed = values.clone();
    changed["cull"] = json!({ "timeoutSecs": 900 });
    assert_ne!(checksum(&render(changed).unwrap()), checksum(&m));
    let mut same = values;
    same["podLabels"] = json!({ "team": "other" });
    assert_eq!(checksum(&render(same).unwrap()), checksum(&m));
}

#[test]
fn layer_builds_with_a_volume() {
    let m = render(json!({ "build": { "executor": "layer" }, "persistence": { "enabled": true, "size": "5Gi" } })).unwrap();
    assert!(kind(&m, "Role").is_none(), "no rights needed");
    assert_eq!(
        kind(&m, "PersistentVolumeClaim").unwrap()["spec"]["resources"]["requests"]["storage"],
        "5Gi"
    );
    assert_eq!(
        named(&m, "Deployment", "bindery").unwrap()["spec"]["strategy"]["type"],
        "Recreate"
    );
    let c = config(&m);
    assert!(
        c.build.kubernetes.is_none() && c.build.local.docker_host.is_none(),
        "no engine at all"
    );
}

/// The bundled hub, public behind its ingress.
fn with_bundled_hub() -> Value {
    json!({ "jupyterhub": { "enabled": true, "ingress": { "enabled": true, "hosts": ["hub.example.org"], "tls": [{ "hosts": ["hub.example.org"], "secretName": "hub-tls" }] } } })
}

#[test]
fn the_bundled_hub_is_wired_by_z2jhs_names_secret_and_labels() {
    let answer = rendered(with_bundled_hub()).unwrap();
    let m: Vec<Value> = answer["manifests"].as_array().unwrap().clone();
    // Every Secret, ConfigMap and claim a Bindery pod refers to is in the
    // release, with the key it reads.
    let pod = &named(&m, "Deployment", "bindery").unwrap()["spec"]["template"]["spec"];
    for env in container(&m)["env"].as_array().unwrap() {
        if let Some(r) = env["valueFrom"].get("secretKeyRef") {
            let (name, key) = (r["name"].as_str().unwrap(), r["key"].as_str().unwrap());
            assert!(
                secret_value(&m, name, key).is_some(),
                "{env}: no Secret {name} with key {key}"
            );
        }
        assert!(env["valueFrom"].get("configMapKeyRef").is_none(), "{env}");
    }
    for volume in pod["volumes"].as_array().unwrap() {
        if let Some(name) = volume["configMap"]["name"].as_str() {
            assert!(named(&m, "ConfigMap", name).is_some(), "{volume}");
        }
        assert!(
            volume.get("secret").is_none() && volume.get("persistentVolumeClaim").is_none(),
            "{volume}"
        );
    }
    // The token is the one z2jh generates for `hub.services.binder`, once,
    // in its hub Secret: the hub and Bindery read the same key.
    let token = container(&m)["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "JUPYTERHUB_API_TOKEN")
        .unwrap()["valueFrom"]["secretKeyRef"]
        .clone();
    assert_eq!(
        token,
        json!({ "name": "hub", "key": "hub.services.binder.apiToken" })
    );
    let value = secret_value(&m, "hub", "hub.services.binder.apiToken").unwrap();
    assert!(
        value.len() == 64 && value.chars().all(|c| c.is_ascii_hexdigit()),
        "{value}"
    );
    assert!(
        named(&m, "Secret", "bindery").unwrap()["stringData"]
            .get("hub-token")
            .is_none()
    );
    // Browsers go to the public URL; Bindery calls the hub's own Service.
    let c = config(&m);
    assert_eq!(
        c.hub.url.as_ref().unwrap().as_str(),
        "https://hub.example.org/"
    );
    let api = c.hub.api_url.as_ref().unwrap();
    assert_eq!(api.as_str(), "http://hub:8081/hub/api/");
    let service =
        named(&m, "Service", api.host_str().unwrap()).expect("the hub's Service in the release");
    assert_eq!(service["spec"]["ports"][0]["port"], api.port().unwrap());
    // z2jh's NetworkPolicies admit Bindery to the hub's API, and its proxy
    // to Bindery (a hub service route); not a pod without the label.
    let (bindery, hub, proxy) = (
        pod_labels(&m, "bindery"),
        pod_labels(&m, "hub"),
        pod_labels(&m, "proxy"),
    );
    assert!(admits(&m, bindery, hub, ("http", 8081)), "Bindery → hub");
    assert!(
        admits(&m, proxy, bindery, ("http", 8585)),
        "proxy → Bindery"
    );
    assert!(
        !admits(&m, &json!({ "app": "other" }), hub, ("http", 8081)),
        "the hub's policy is in force"
    );
    // The hub is configured for Binder: no logins, the spawner that runs
    // the launch's image with its token, no home volume, Bindery culls.
    let hub_values = &answer["yaml_in_secrets"]["hub/values.yaml"];
    let spawner = hub_values["hub"]["extraConfig"]["binder"].as_str().unwrap();
    for needed in [
        "self.image = self.user_options[\"image\"]",
        "--ServerApp.token={self.user_options['token']}",
        "BINDER_REPO_URL",
        "c.JupyterHub.spawner_class = BinderSpawner",
    ] {
        assert!(spawner.contains(needed), "{needed} in {spawner}");
    }
    assert_eq!(
        hub_values["hub"]["config"]["JupyterHub"]["authenticator_class"],
        "null"
    );
    assert_eq!(hub_values["hub"]["services"]["binder"]["display"], false);
    let role = &hub_values["hub"]["loadRoles"]["binder"];
    assert_eq!(role["services"], json!(["binder"]));
    for scope in [
        "admin:users",
        "admin:servers",
        "list:users",
        "read:users:activity",
        // The warm pool's claims.
        "tokens",
    ] {
        assert!(
            role["scopes"].as_array().unwrap().contains(&json!(scope)),
            "{scope}"
        );
    }
    assert_eq!(hub_values["singleuser"]["storage"]["type"], "none");
    assert_eq!(hub_values["cull"]["enabled"], false);
    assert_eq!(hub_values["prePuller"]["hook"]["enabled"], false);

    // z2jh's names follow its overrides, through its own helpers.
    let mut renamed = with_bundled_hub();
    renamed["jupyterhub"]["fullnameOverride"] = json!("jh");
    renamed["jupyterhub"]["hub"] = json!({ "baseUrl": "/jupyter/" });
    let m = render(renamed).unwrap();
    let c = config(&m);
    assert_eq!(
        c.hub.api_url.unwrap().as_str(),
        "http://jh-hub:8081/jupyter/hub/api/"
    );
    assert_eq!(
        c.hub.url.unwrap().as_str(),
        "https://hub.example.org/jupyter/"
    );
    assert!(secret_value(&m, "jh-hub", "hub.services.binder.apiToken").is_some());

    // An external hub works as before: its token in Bindery's Secret.
    let m =
        render(json!({ "hub": { "url": "https://hub.example.org/", "apiToken": "t" } })).unwrap();
    assert_eq!(
        secret_value(&m, "bindery", "hub-token").as_deref(),
        Some("t")
    );
    assert!(named(&m, "Secret", "hub").is_none());
}

/// The variables the kubelet gives every pod for each Service in its
/// namespace (service links), for the release's Services and the API server's.
fn service_links(manifests: &[Value]) -> Vec<(String, String)> {
    let mut env = Vec::new();
    let mut services: Vec<(String, Vec<Value>)> = manifests
        .iter()
        .filter(|m| m["kind"] == "Service")
        .map(|s| {
            (
                s["metadata"]["name"].as_str().unwrap().to_string(),
                s["spec"]["ports"].as_array().unwrap().clone(),
            )
        })
        .collect();
    services.push((
        "kubernetes".into(),
        vec![json!({ "name": "https", "port": 443 })],
    ));
    for (i, (name, ports)) in services.iter().enumerate() {
        let name = name.to_uppercase().replace('-', "_");
        let ip = format!("10.96.0.{}", i + 1);
        let first = ports[0]["port"].as_u64().unwrap();
        env.push((format!("{name}_SERVICE_HOST"), ip.clone()));
        env.push((format!("{name}_SERVICE_PORT"), first.to_string()));
        env.push((format!("{name}_PORT"), format!("tcp://{ip}:{first}")));
        for port in ports {
            let number = port["port"].as_u64().unwrap();
            if let Some(port_name) = port["name"].as_str() {
                env.push((
                    format!(
                        "{name}_SERVICE_PORT_{}",
                        port_name.to_uppercase().replace('-', "_")
                    ),
                    number.to_string(),
                ));
            }
            let link = format!("{name}_PORT_{number}_TCP");
            env.push((link.clone(), format!("tcp://{ip}:{number}")));
            env.push((format!("{link}_PROTO"), "tcp".into()));
            env.push((format!("{link}_PORT"), number.to_string()));
            env.push((format!("{link}_ADDR"), ip.clone()));
        }
    }
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_bindery_starts_with_what_kubernetes_gives_its_pods() {
    let mut values = with_bundled_hub();
    // No hub answers here; the quota counts pods, through a kubeconfig.
    values["hub"] =
        json!({ "apiUrl": format!("http://127.0.0.1:{}/hub/api/", support::free_port()) });
    values["quota"] = json!({ "total": 5, "countPods": true });
    // The pool's policy is found among the bundled plugins at start.
    values["warmPool"] = json!({ "maxServers": 2 });
    let m = render(values).unwrap();
    assert_eq!(config(&m).warm_pool.max_servers, 2);
    let api = KubeApi::start().await;
    for name in ["jupyter-a", "jupyter-b"] {
        api.insert("binder", json!({ "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": name, "namespace": "binder", "labels": { "app": "jupyterhub", "component": "singleuser-server" } },
            "spec": { "containers": [{ "name": "notebook", "image": "registry.example.org/i-x:1" }] }, "status": { "phase": "Running" } }));
    }
    let dir = tempfile::tempdir().unwrap();

    // Service links (BINDERY_PORT=tcp://…, BINDERY_SERVICE_HOST=… for the
    // Service named bindery), the pod's own env with its secretKeyRefs read
    // from the release, and a kubeconfig where the service account would be.
    let mut env = service_links(&m);
    assert!(env.iter().any(|(k, _)| k == "BINDERY_PORT"), "{env:?}");
    for e in container(&m)["env"].as_array().unwrap() {
        let value = match e["value"].as_str() {
            Some(v) => v.to_string(),
            None => {
                let r = &e["valueFrom"]["secretKeyRef"];
                secret_value(&m, r["name"].as_str().unwrap(), r["key"].as_str().unwrap()).unwrap()
            }
        };
        env.push((e["name"].as_str().unwrap().to_string(), value));
    }
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!("apiVersion: v1\nkind: Config\nclusters: [{{ name: double, cluster: {{ server: \"{}\" }} }}]\nusers: [{{ name: bindery, user: {{ token: t }} }}]\ncontexts: [{{ name: double, context: {{ cluster: double, user: bindery, namespace: binder }} }}]\ncurrent-context: double\n", api.url),
    )
    .unwrap();
    env.push(("KUBECONFIG".into(), kubeconfig.display().to_string()));
    let mut wrapper = vec!["env".to_string()];
    wrapper.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();

    // The chart's bindery.toml, with what the container's filesystem gives
    // and this machine does not: a free port and writable folders.
    let mut c = config(&m);
    c.listen = format!("127.0.0.1:{}", support::free_port())
        .parse()
        .unwrap();
    c.data_dir = dir.path().join("data");
    c.plugin_runtime.compile_cache_dir = Some(dir.path().join("plugin-cache"));
    let _bindery = Process::start_under(&wrapper, &c, dir.path()).await;
    let base = format!("http://{}", c.listen);
    assert_eq!(
        reqwest::get(format!("{base}/versions"))
            .await
            .unwrap()
            .status(),
        200
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let quota = loop {
        let health: Value = reqwest::get(format!("{base}/health"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or_default();
        if let Some(q) = health["checks"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["service"] == "Pod quota"))
        {
            break q.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no quota check: {health}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(
        (
            &quota["user_pods"],
            &quota["quota"],
            &quota["_ignore_failure"]
        ),
        (&json!(2), &json!(5), &json!(true)),
        "{quota}"
    );
}

#[test]
fn values_the_chart_refuses() {
    let refused = |values: Value, says: &str| {
        let e = render(values.clone()).expect_err(&values.to_string());
        assert!(e.contains(says), "{values}: {e}");
    };
    refused(
        json!({ "build": { "executor": "docker" } }),
        "value must be one of 'kubernetes', 'local', 'layer'",
    );
    refused(
        json!({ "plugins": { "x": { "oci": "oci://registry.example.org/x:1.0" } } }),
        "does not match pattern",
    );
    refused(
        json!({ "secretEnv": { "BINDERY_ADMIN_TOKEN": "x" } }),
        "invalid propertyName 'BINDERY_ADMIN_TOKEN'",
    );
    refused(
        json!({ "replicas": 2, "persistence": { "enabled": true } }),
        "it allows one replica",
    );
    refused(
        json!({ "build": { "executor": "local" } }),
        "Bindery's image has no repo2docker",
    );
    refused(
        json!({ "jupyterhub": { "enabled": true } }),
        "Bindery needs its public URL",
    );
    let mut token_twice = with_bundled_hub();
    token_twice["hub"] = json!({ "apiToken": "mine" });
    refused(token_twice, "set jupyterhub.hub.services.binder.apiToken");
    refused(
        json!({ "httpRoute": { "enabled": true } }),
        "name the Gateway",
    );
    refused(
        json!({ "hub": { "authEnabled": true }, "warmPool": { "maxServers": 4 } }),
        "the warm pool serves anonymous launches only",
    );
    let mut no_callback = with_bundled_hub();
    no_callback["hub"] = json!({ "authEnabled": true });
    no_callback["warmPool"] = json!({ "maxServers": 0 });
    refused(no_callback, "hub.oauthRedirectUri: with hub.authEnabled");
}

/// Runs the bundled hub's `binder-oauth` snippet as the hub would, after
/// z2jh has put the values' services and roles in `c`, with `oauth` (if
/// any) as the mounted registration; the services and roles it leaves.
fn hub_oauth_snippet(snippet: &str, oauth: Option<&str>) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("oauth.json");
    if let Some(oauth) = oauth {
        std::fs::write(&file, oauth).unwrap();
    }
    let snippet = snippet.replace("/usr/local/etc/bindery/oauth.json", file.to_str().unwrap());
    let script = format!(
        "import json, types\n\
         c = types.SimpleNamespace(JupyterHub=types.SimpleNamespace(\n\
             services=[{{'name': 'binder', 'api_token': 't'}}],\n\
             load_roles=[{{'name': 'binder', 'scopes': ['admin:users']}}],\n\
             named_server_limit_per_user=0),\n\
             Authenticator=types.SimpleNamespace(enable_auth_state=False))\n\
         {snippet}\n\
         print(json.dumps({{'services': c.JupyterHub.services, 'roles': c.JupyterHub.load_roles,\n\
             'limit': c.JupyterHub.named_server_limit_per_user,\n\
             'auth_state': c.Authenticator.enable_auth_state}}))\n"
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn with_auth_the_bundled_hub_registers_bindery_as_its_oauth_client() {
    let mut values = with_bundled_hub();
    values["hub"] = json!({
        "authEnabled": true,
        "oauthRedirectUri": "https://binder.example.org/oauth_callback",
        "namedServerLimitPerUser": 3,
    });
    values["warmPool"] = json!({ "maxServers": 0 });
    let answer = rendered(values).unwrap();
    let m: Vec<Value> = answer["manifests"].as_array().unwrap().clone();
    let c = config(&m);
    assert!(c.hub.auth_enabled);
    assert_eq!(c.hub.oauth_client_id, "service-binder");
    assert_eq!(
        c.hub.oauth_redirect_uri.as_ref().unwrap().as_str(),
        "https://binder.example.org/oauth_callback"
    );
    assert!(c.hub.use_named_servers);
    assert_eq!(c.hub.named_server_limit_per_user, 3);

    // The registration, in the ConfigMap the hub mounts where its snippet reads it.
    let oauth = named(&m, "ConfigMap", "bindery-hub-oauth").unwrap()["data"]["oauth.json"]
        .as_str()
        .unwrap()
        .to_string();
    let hub_values = &answer["yaml_in_secrets"]["hub/values.yaml"]["hub"];
    let volume = hub_values["extraVolumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["configMap"]["name"] == "bindery-hub-oauth")
        .expect("the hub mounts the registration");
    let mount = hub_values["extraVolumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume["name"])
        .unwrap();
    assert_eq!(mount["mountPath"], "/usr/local/etc/bindery");
    let snippet = hub_values["extraConfig"]["binder-oauth"].as_str().unwrap();
    let registered = hub_oauth_snippet(snippet, Some(&oauth));
    assert_eq!(
        registered["services"],
        json!([{
            "name": "binder",
            "api_token": "t",
            "oauth_client_id": "service-binder",
            "oauth_redirect_uri": "https://binder.example.org/oauth_callback",
            "oauth_no_confirm": true,
        }])
    );
    let binder = json!({ "name": "binder", "scopes": ["admin:users"] });
    assert_eq!(
        registered["roles"],
        json!([binder, { "name": "user", "scopes": ["self", "access:services"] }])
    );
    assert_eq!(registered["limit"], 3);
    assert_eq!(registered["auth_state"], false);

    // A provider that takes users' own tokens: the hub keeps auth_state,
    // and Bindery may read it.
    let mut values = with_bundled_hub();
    values["hub"] = json!({
        "authEnabled": true,
        "oauthRedirectUri": "https://binder.example.org/oauth_callback",
    });
    values["warmPool"] = json!({ "maxServers": 0 });
    values["plugins"] = json!({ "gh": {
        "user_credential": { "secret": "access_token", "auth_state_key": "/access_token" },
    } });
    let m = render(values).unwrap();
    assert_eq!(
        config(&m).plugins["gh"]
            .user_credential
            .as_ref()
            .unwrap()
            .secret,
        "access_token"
    );
    let oauth = named(&m, "ConfigMap", "bindery-hub-oauth").unwrap()["data"]["oauth.json"]
        .as_str()
        .unwrap()
        .to_string();
    let reading = hub_oauth_snippet(snippet, Some(&oauth));
    assert_eq!(reading["auth_state"], true);
    assert_eq!(
        reading["roles"][0],
        json!({ "name": "binder", "scopes": ["admin:users", "admin:auth_state"] })
    );

    // Without authEnabled there is nothing to mount, and the hub is as before.
    let m = render(with_bundled_hub()).unwrap();
    assert!(named(&m, "ConfigMap", "bindery-hub-oauth").is_none());
    let unchanged = hub_oauth_snippet(snippet, None);
    assert_eq!(
        unchanged["services"],
        json!([{ "name": "binder", "api_token": "t" }])
    );
    assert_eq!(
        unchanged["roles"],
        json!([{ "name": "binder", "scopes": ["admin:users"] }])
    );
}

/// A member of a federation, with the federation's front beside it: the
/// member's `[federation]` from the values, and the front as a Deployment
/// of two replicas with a PodDisruptionBudget, no service-account token,
/// the release's build-token key and a config Bindery loads as a front's.
#[test]
fn a_federation_member_and_its_front() {
    let members = json!({
        "gesis": { "url": "https://gesis.example.org/", "weight": 1, "prime": true },
        "ovh": { "url": "https://ovh.example.org/", "weight": 2 },
    });
    let m = render(json!({
        "web": { "corsAllowOrigin": "*" },
        "federation": { "member": "gesis", "members": members, "front": { "enabled": true } },
    }))
    .unwrap();
    let member = config(&m).federation;
    assert_eq!(member.member.as_deref(), Some("gesis"));
    assert_eq!(member.members["ovh"].weight, 2.0);
    assert!(member.members["gesis"].prime && !member.members["ovh"].prime);

    let front = named(&m, "Deployment", "bindery-front").unwrap();
    let pod = &front["spec"]["template"]["spec"];
    assert_eq!(front["spec"]["replicas"], 2);
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert!(env_names(&pod["containers"][0]).contains(&"BINDERHUB_BUILD_TOKEN_SECRET"));
    let pdb = named(&m, "PodDisruptionBudget", "bindery-front").unwrap();
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    // The release's Service does not send its traffic to the front's pods.
    let selector = named(&m, "Service", "bindery").unwrap()["spec"]["selector"].clone();
    let labels = pod_labels(&m, "bindery-front");
    assert!(
        selector
            .as_object()
            .unwrap()
            .iter()
            .any(|(k, v)| labels[k] != *v),
        "{selector} selects {labels}"
    );
    let text = named(&m, "ConfigMap", "bindery-front").unwrap()["data"]["bindery.toml"]
        .as_str()
        .unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    let front = Config::load(Some(file.path()))
        .unwrap_or_else(|e| panic!("Bindery refuses the front's config: {e}\n{text}"));
    assert_eq!(front.federation.member, None);
    assert_eq!(front.federation.members, member.members);
    assert!(front.hub.url.is_none() && front.registry.url.is_none());

    let e = render(json!({ "federation": { "front": { "enabled": true } } })).unwrap_err();
    assert!(e.contains("federation.members, which is empty"), "{e}");
}
