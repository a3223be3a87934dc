//! The Helm chart (`charts/bindery`), rendered by Helm's own library
//! (`helm-python-sdk`, from `scripts/helm.sh`) for the default values and
//! each executor and hub mode. Every manifest is checked against the
//! Kubernetes 1.33 OpenAPI schemas (strict), the pieces that matter are
//! asserted, and the `bindery.toml` the chart writes is loaded by Bindery's
//! own config loader. No cluster can run here, so nothing is installed; the
//! zero-to-jupyterhub subchart cannot be fetched here either, so its mode
//! renders Bindery's side of it.

use crate::support;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use bindery::config::{Config, PluginSource, SecretSource};
use serde_json::{Value, json};

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
    let text = kind(manifests, "ConfigMap").unwrap()["data"]["bindery.toml"]
        .as_str()
        .unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    Config::load(Some(file.path()))
        .unwrap_or_else(|e| panic!("Bindery refuses the chart's config: {e}\n{text}"))
}

fn container(manifests: &[Value]) -> &Value {
    &kind(manifests, "Deployment").unwrap()["spec"]["template"]["spec"]["containers"][0]
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
    assert_eq!(
        binding["subjects"][0]["name"],
        kind(&m, "ServiceAccount").unwrap()["metadata"]["name"]
    );
    // Probes, the security context, the mounts.
    let c = container(&m);
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/health");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/versions");
    assert_eq!(
        c["args"],
        json!(["serve", "--config", "/etc/bindery/bindery.toml"])
    );
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    let pod = &kind(&m, "Deployment").unwrap()["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
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
        kind(&m, "Deployment").unwrap()["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
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
        ["BINDERY_LOG", "BINDERHUB_BUILD_TOKEN_SECRET"]
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
fn a_local_executor_with_dind_and_replicas_mounts_the_socket_and_elects_a_culler() {
    let m = render(json!({
        "replicas": 2,
        "build": { "executor": "local", "imageBuilderType": "dind" },
        "hub": { "url": "https://hub.example.org/", "apiToken": "hub-secret" },
        "registry": { "url": "https://registry.example.org", "imagePrefix": "registry.example.org/binder/i-", "username": "builder", "password": "pw" },
        "secretEnv": { "CAMPUS_TOKEN": "campus-secret" },
        "ingress": { "enabled": true, "className": "nginx", "hosts": ["binder.example.org"] },
        "plugins": { "campus": { "oci": format!("oci://registry.example.org/plugins/campus@sha256:{}", "a".repeat(64)), "secrets": { "token": { "env": "CAMPUS_TOKEN" } } } },
    }))
    .unwrap();
    assert_eq!(
        rules(&m),
        [(
            "leases".into(),
            vec!["get".into(), "create".into(), "update".into()]
        )],
        "no pod rights without build pods"
    );
    let c = container(&m);
    let socket = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "engine")
        .unwrap();
    assert_eq!(socket["mountPath"], "/var/run/dind/docker.sock");
    let volumes = kind(&m, "Deployment").unwrap()["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        volumes.iter().find(|v| v["name"] == "engine").unwrap()["hostPath"],
        json!({ "path": "/var/run/dind/docker.sock", "type": "Socket" })
    );
    let env: Vec<&str> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        env,
        [
            "BINDERY_LOG",
            "JUPYTERHUB_API_TOKEN",
            "BINDERHUB_BUILD_TOKEN_SECRET",
            "REGISTRY_PASSWORD",
            "CAMPUS_TOKEN"
        ]
    );
    let mut secret = kind(&m, "Secret").unwrap()["stringData"].clone();
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
    assert_eq!(
        c.build.local.docker_host.as_deref(),
        Some("unix:///var/run/dind/docker.sock")
    );
    assert!(c.build.kubernetes.is_none());
    let leader = c.cull.leader.as_ref().expect("a Lease with two replicas");
    assert_eq!(
        (leader.lease.as_str(), leader.namespace.as_deref()),
        ("bindery-culler", Some("binder"))
    );
    assert_eq!(
        c.hub.url.as_ref().unwrap().as_str(),
        "https://hub.example.org/"
    );
    assert_eq!(c.registry.username.as_deref(), Some("builder"));
    assert!(
        matches!(c.plugins["campus"].source("campus").unwrap(), PluginSource::Oci(r) if r.starts_with("registry.example.org/plugins/campus@sha256:"))
    );
}

#[test]
fn layer_builds_with_a_volume_and_the_jupyterhub_dependency() {
    let m = render(json!({ "build": { "executor": "layer" }, "persistence": { "enabled": true, "size": "5Gi" } })).unwrap();
    assert!(kind(&m, "Role").is_none(), "no rights needed");
    assert_eq!(
        kind(&m, "PersistentVolumeClaim").unwrap()["spec"]["resources"]["requests"]["storage"],
        "5Gi"
    );
    assert_eq!(
        kind(&m, "Deployment").unwrap()["spec"]["strategy"]["type"],
        "Recreate"
    );
    let c = config(&m);
    assert!(
        c.build.kubernetes.is_none() && c.build.local.docker_host.is_none(),
        "no engine at all"
    );

    let m =
        render(json!({ "jupyterhub": { "enabled": true }, "hub": { "apiToken": "t" } })).unwrap();
    let c = config(&m);
    assert_eq!(c.hub.url.as_ref().unwrap().as_str(), "http://proxy-public/");
    assert_eq!(
        c.hub.api_url.as_ref().unwrap().as_str(),
        "http://hub:8081/hub/api/"
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
}
