//! What monitors, clients and federations written against a real BinderHub
//! read, held to upstream's behaviour. Each promise cites where upstream
//! states it (jupyterhub/binderhub, at the commit named; mybinder.org's
//! federation as `../shared/reference/z2jh-and-chart.md` §8 describes it).
//! Against a real registry, a real JupyterHub and the real repo2docker.

use crate::support;

use std::sync::Arc;

use serde_json::{Value, json};
use support::engine::build_config;
use support::hub::{JupyterHub, launch_config, launch_service};
use support::registry::OciRegistry;
use support::service::{Service, TEST_BUILDER_IMAGE, TestBuilder, TestLauncher, config};

/// mybinder.org's federation-redirect `health_check`, as a monitor written
/// for upstream runs it: `/versions` must equal the prime's as a whole
/// object; every check must be `ok` (the "Pod quota" too), and at the "Pod
/// quota", with a quota set, `total_pods + pod_headroom` must stay below it.
/// Checks after the "Pod quota" are not looked at. `Err` says why a member
/// leaves the rotation.
fn federation_admits(
    versions: &Value,
    prime_versions: &Value,
    health: &Value,
    pod_headroom: u64,
) -> Result<(), String> {
    if versions != prime_versions {
        return Err("versions".into());
    }
    for check in health["checks"].as_array().ok_or("no checks")? {
        let service = check["service"]
            .as_str()
            .ok_or("a check without a service")?;
        if check["ok"] != true {
            return Err(service.into());
        }
        if service == "Pod quota" {
            if let Some(quota) = check["quota"].as_u64() {
                let total = check["total_pods"].as_u64().ok_or("no total_pods")?;
                if pod_headroom > 0 && total + pod_headroom >= quota {
                    return Err("approaching pod quota".into());
                }
            }
            break;
        }
    }
    Ok(())
}

async fn get_json(url: &str) -> (u16, Value) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_lists_upstreams_checks_in_upstreams_shape() {
    let registry = OciRegistry::start(None);
    let hub = JupyterHub::start().await;
    let data = tempfile::tempdir().unwrap();
    let s = launch_service(launch_config(data.path(), &registry, &hub.url, &hub.token)).await;

    let (status, health) = get_json(&format!("{}/health", s.base)).await;
    // binderhub/tests/test_health.py:9-28 (82cc5a8): 200, `ok`, the hub's
    // check exactly `{"service", "ok"}`, and a "Pod quota" check with a null
    // quota when none is set, whose total is its build and user pods.
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["ok"], true);
    let checks = health["checks"].as_array().unwrap();
    assert!(
        checks.contains(&json!({ "service": "JupyterHub API", "ok": true })),
        "{health}"
    );
    // binderhub/health.py:165-171 (17ffb13): the registry, the hub, then
    // the pod quota, each `{"service", "ok"}` before the quota's counts
    // (health.py:145-151) are added.
    assert_eq!(
        checks[0],
        json!({ "service": "Docker registry", "ok": true })
    );
    assert_eq!(checks.len(), 3, "{health}");
    let quota = &checks[2];
    assert_eq!(quota["service"], "Pod quota");
    assert_eq!(quota["quota"], Value::Null);
    assert_eq!(
        quota["total_pods"].as_u64().unwrap(),
        quota["build_pods"].as_u64().unwrap() + quota["user_pods"].as_u64().unwrap()
    );
    assert_eq!(quota["ok"], true);
    let mut keys: Vec<&str> = quota
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "_ignore_failure",
            "build_pods",
            "ok",
            "quota",
            "service",
            "total_pods",
            "user_pods"
        ],
        "upstream's keys and no others: {quota}"
    );

    // HEAD answers the same status, without a body (health.py `head`).
    let head = reqwest::Client::new()
        .head(format!("{}/health", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);

    // A federation member that is healthy stays in the rotation, and one
    // near its quota leaves it, as with upstream.
    let (_, versions) = get_json(&format!("{}/versions", s.base)).await;
    assert_eq!(federation_admits(&versions, &versions, &health, 0), Ok(()));
    let mut near = health.clone();
    near["checks"][2]["quota"] = json!(1);
    assert_eq!(
        federation_admits(&versions, &versions, &near, 1),
        Err("approaching pod quota".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_reports_upstreams_builder_info() {
    // binderhub/tests/test_version.py:18-27 (6560cc3): `builder_info` is
    // `{"build_image": …}` for pod builds, `{"repo2docker-version": …}` for
    // local ones; upstream's handler adds `builder` beside a `build_image`.
    let registry = OciRegistry::start(None);
    let data = tempfile::tempdir().unwrap();
    let mut c = config(data.path(), Some(&registry));
    c.web.api_only = true;
    let pods = Service::start(c, Some(Arc::new(TestBuilder::new(&registry, 0))), None).await;
    let (status, versions) = get_json(&format!("{}/versions", pods.base)).await;
    assert_eq!(status, 200);
    assert_eq!(
        versions,
        json!({
            "builder_info": { "build_image": TEST_BUILDER_IMAGE },
            "builder": TEST_BUILDER_IMAGE,
            "binderhub": bindery::VERSION,
            "bindery": bindery::VERSION,
        })
    );

    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let local = Service::planned(build_config(one.path(), &registry).await).await;
    let (_, versions) = get_json(&format!("{}/versions", local.base)).await;
    // The version scripts/engine.sh installs.
    assert_eq!(
        versions["builder_info"],
        json!({ "repo2docker-version": "2024.07.0" }),
        "{versions}"
    );
    assert_eq!(versions.get("builder"), None, "{versions}");

    // Federation members compare `/versions` whole: two replicas of one
    // configuration agree, and a member on another builder does not.
    let twin = Service::planned(build_config(two.path(), &registry).await).await;
    let (_, twins) = get_json(&format!("{}/versions", twin.base)).await;
    let healthy = json!({ "ok": true, "checks": [] });
    assert_eq!(federation_admits(&twins, &versions, &healthy, 0), Ok(()));
    let (_, other) = get_json(&format!("{}/versions", pods.base)).await;
    assert_eq!(
        federation_admits(&other, &versions, &healthy, 0),
        Err("versions".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_repo_links_redirect_as_upstreams() {
    let registry = OciRegistry::start(None);
    let data = tempfile::tempdir().unwrap();
    let mut c = config(data.path(), Some(&registry));
    // Upstream's redirect leaves `base_url` out (binderhub/main.py,
    // `LegacyRedirectHandler`), so Bindery's does too.
    c.web.base_url = "/binder/".into();
    let s = Service::start(
        c,
        Some(Arc::new(TestBuilder::new(&registry, 0))),
        Some(Arc::new(TestLauncher::new("http://hub.test"))),
    )
    .await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = "binderhub-ci-repos/requirements";
    // binderhub/tests/test_legacy.py:11-22 (6560cc3), then Python's
    // `urlencode` (tornado's `url_concat`) for what else a path may hold:
    // decoded first, spaces as `+`, `~` kept, `*` encoded.
    for (old, new) in [
        (format!("/repo/{r}"), format!("/v2/gh/{r}/master")),
        (format!("/repo/{r}/"), format!("/v2/gh/{r}/master")),
        (
            format!("/repo/{r}/notebooks/index.ipynb"),
            format!("/v2/gh/{r}/master?urlpath=%2Fnotebooks%2Findex.ipynb"),
        ),
        (
            format!("/repo/{r}/tree/my%20notes/~a*b.ipynb"),
            format!("/v2/gh/{r}/master?urlpath=%2Ftree%2Fmy+notes%2F~a%2Ab.ipynb"),
        ),
    ] {
        let answer = client
            .get(format!("{}/binder{old}", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 302, "{old}");
        assert_eq!(answer.headers()["location"], new.as_str(), "{old}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_configuration_is_its_own_script_in_head() {
    let registry = OciRegistry::start(None);
    let data = tempfile::tempdir().unwrap();
    let s = Service::start(
        config(data.path(), Some(&registry)),
        Some(Arc::new(TestBuilder::new(&registry, 0))),
        Some(Arc::new(TestLauncher::new("http://hub.test"))),
    )
    .await;
    let page = reqwest::get(format!("{}/v2/git/a%2Fb/main", s.base))
        .await
        .unwrap();
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    let html = page.text().await.unwrap();
    // Upstream's templates/page.html sets `window.pageConfig` in a
    // `<script>` of its own in `<head>`, build token included on `/v2`
    // (`binderhub-interface.md`, "Page config").
    let head = html.split("</head>").next().unwrap();
    let script = head
        .split("<script>window.pageConfig = ")
        .nth(1)
        .and_then(|s| s.split(";</script>").next())
        .unwrap_or_else(|| panic!("no configuration script in <head>: {head}"));
    let config: Value = serde_json::from_str(script).unwrap();
    for key in [
        "baseUrl",
        "badgeBaseUrl",
        "logoUrl",
        "logoWidth",
        "repoProviders",
        "aboutMessage",
        "bannerHtml",
        "binderVersion",
        "buildToken",
    ] {
        assert!(config.get(key).is_some(), "{key} in {config}");
    }
    assert_eq!(config["baseUrl"], "/");
    // Each of the page's two scripts runs by its own hash, and nothing else.
    let allowed = policy
        .split("; ")
        .find_map(|d| d.strip_prefix("script-src "))
        .unwrap();
    let hash = |script: &str| {
        use base64::Engine as _;
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(script);
        format!(
            "'sha256-{}'",
            base64::engine::general_purpose::STANDARD.encode(digest)
        )
    };
    let configuration = hash(&format!("window.pageConfig = {script};"));
    assert!(allowed.starts_with(&configuration), "{policy}");
    assert_eq!(allowed.matches("'sha256-").count(), 2, "{policy}");
    assert!(!allowed.contains("unsafe"), "{policy}");
}
