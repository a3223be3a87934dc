//! Launches on a real JupyterHub: DockerSpawner runs the image Bindery found
//! in the real registry, in the real Docker engine, behind the hub's real
//! proxy (`support/hub.rs`).

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bindery::config::KubernetesQuotaConfig;
use serde_json::{Value, json};

use bindery::app::Builds;
use bindery::jupyterhub::Hub;
use bindery::launch::hub::HubLauncher;
use support::engine::{DOCKERFILE, TestRepo, build_config, engine};
use support::faults::CutProxy;
use support::hub::{JupyterHub, built_repo, launch_config, launch_service, with_pool};
use support::kube::KubeApi;
use support::registry::OciRegistry;
use support::service::{OpenStream, Service, Stream, git_spec, sse};

async fn launch(s: &Service, repo: &TestRepo, sha: &str) -> Stream {
    sse(&format!(
        "{}/build/git/{}",
        s.base,
        git_spec(&repo.url, sha)
    ))
    .await
}

/// The first line of the launch event log at `path` (written a moment
/// after the launch), checked against upstream's schema as
/// `docs/launch-event.schema.json` states it: the envelope, and every field
/// of the schema's type or in its enum.
async fn launch_event(path: &std::path::Path) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        if let Some(line) = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.lines().next().map(str::to_string))
        {
            break line;
        }
        assert!(
            Instant::now() < deadline,
            "no launch event in {}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let event: Value = serde_json::from_str(&line).unwrap();
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(support::workspace().join("docs/launch-event.schema.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(event["schema"], schema["$id"], "{event}");
    assert_eq!(event["version"], schema["version"], "{event}");
    assert!(
        chrono::DateTime::parse_from_rfc3339(event["timestamp"].as_str().unwrap()).is_ok(),
        "{event}"
    );
    for (field, rule) in schema["properties"].as_object().unwrap() {
        let value = &event[field];
        match (rule.get("enum"), rule["type"].as_str()) {
            (Some(allowed), _) => assert!(
                allowed.as_array().unwrap().contains(value),
                "{field}: {value} is not one of {allowed}"
            ),
            (None, Some("string")) => assert!(value.is_string(), "{field}: {value}"),
            (None, Some("boolean")) => assert!(value.is_boolean(), "{field}: {value}"),
            other => panic!("{field}: a rule this check does not know: {other:?}"),
        }
    }
    event
}

/// `/health`'s "Pod quota" check.
async fn pod_quota_check(s: &Service) -> Value {
    let health = s.health().await;
    health["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["service"] == "Pod quota")
        .cloned()
        .expect("the quota in /health")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_runs_the_image_on_the_hub_and_quotas_refuse_with_upstreams_words() {
    let registry = OciRegistry::start(None);
    let hub = JupyterHub::start().await;
    let (repo, sha, image) = built_repo(&registry);
    let data = tempfile::tempdir().unwrap();
    let mut c = launch_config(data.path(), &registry, &hub.url, &hub.token);
    let events = data.path().join("events.jsonl");
    c.event_log.sink = Some(bindery::config::EventSink::File(events.clone()));
    let s = launch_service(c).await;

    let got = launch(&s, &repo, &sha).await;
    let ready = got.last();
    assert_eq!(ready["phase"], "ready", "{}\n{}", got.raw, hub.log());
    // Upstream's launch event, in its schema, for mybinder.org-style analytics.
    let event = launch_event(&events).await;
    assert_eq!(event["provider"], "Git", "{event}");
    assert_eq!(event["spec"], git_spec(&repo.url, &sha).as_str());
    assert_eq!(event["ref"], sha.as_str());
    assert_eq!(event["origin"], s.base.trim_start_matches("http://"));
    assert!(
        got.raw.contains("Found built image, launching..."),
        "{}",
        got.raw
    );
    assert!(
        got.events.iter().any(|e| e["phase"] == "launching"
            && e["message"].as_str().unwrap().contains("Server ready at")),
        "the hub's progress is relayed: {}",
        got.raw
    );
    let url = ready["url"].as_str().unwrap();
    let token = ready["token"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}user/", hub.url)), "{url}");
    assert_eq!(token.len(), 22);

    // The server answers through the hub's proxy with the token, and not without it.
    let with_token = reqwest::get(format!("{url}api/contents?token={token}"))
        .await
        .unwrap();
    assert_eq!(with_token.status(), 200);
    assert!(
        with_token
            .text()
            .await
            .unwrap()
            .contains("\"type\": \"directory\"")
    );
    let without = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{url}api/contents"))
        .send()
        .await
        .unwrap();
    assert_eq!(without.status(), 403);

    // The hub runs the image Bindery asked for, with upstream's user_options.
    let users = hub.users().await;
    let user = users
        .iter()
        .find(|u| url.contains(&format!("/user/{}/", u["name"].as_str().unwrap())))
        .expect("the launch's user");
    let name = user["name"].as_str().unwrap();
    assert!(
        name.starts_with("repo-") && name.len() == "repo-".len() + 8,
        "upstream's name for git://…/repo.git: {name}"
    );
    let running = engine().docker(&["ps", "--format", "{{.Image}}"]);
    assert!(
        String::from_utf8_lossy(&running.stdout)
            .lines()
            .any(|l| l == image),
        "the container runs {image}"
    );
    let health = s.health().await;
    assert!(
        health["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["service"] == "JupyterHub API" && c["ok"] == true),
        "{health}"
    );

    // A client that leaves mid-launch leaves no user or server behind.
    let mut stream = reqwest::Client::new()
        .get(format!(
            "{}/build/git/{}",
            s.base,
            git_spec(&repo.url, &sha)
        ))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let mut seen = String::new();
    while !seen.contains("Launching server...") {
        let chunk = tokio::time::timeout(Duration::from_secs(60), stream.chunk())
            .await
            .expect("the launch goes quiet")
            .unwrap()
            .unwrap_or_else(|| panic!("the stream ended: {seen}"));
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    // Left once the temporary user exists, while the hub spawns its server.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while hub.users().await.len() == users.len() {
        assert!(std::time::Instant::now() < deadline, "no temporary user");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(stream);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now: Vec<Value> = hub.users().await;
        if now.len() == users.len() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "left behind by a launch nobody waits for: {now:?}\n{}",
            hub.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Quotas count the hub's running servers.
    drop(s);
    let mut c = launch_config(data.path(), &registry, &hub.url, &hub.token);
    c.quota.per_repo = Some(1);
    let s = launch_service(c).await;
    let refused = launch(&s, &repo, &sha).await;
    assert_eq!(refused.last()["phase"], "failed");
    assert_eq!(
        refused.last()["message"],
        format!("Too many users running {}! Try again soon.\n", repo.url)
    );
    drop(s);
    let mut c = launch_config(data.path(), &registry, &hub.url, &hub.token);
    c.quota.total = Some(1);
    let s = launch_service(c).await;
    let refused = launch(&s, &repo, &sha).await;
    assert_eq!(
        refused.last()["message"],
        "Too many users on this BinderHub! Try again soon.\n"
    );
    let quota = pod_quota_check(&s).await;
    // Full, not over: upstream's `total <= quota`; and soft, so a full
    // site stays in its Service and keeps serving its pages.
    assert_eq!(
        (
            quota["total_pods"].as_u64(),
            quota["quota"].as_u64(),
            quota["ok"].as_bool(),
            quota["_ignore_failure"].as_bool()
        ),
        (Some(1), Some(1), Some(true), Some(true)),
        "{health}"
    );
    assert_eq!(health["ok"], true, "{health}");
    let launch_page = format!("v2/git/{}", git_spec(&repo.url, &sha));
    for page in ["versions", "health", "", &launch_page] {
        let answer = reqwest::get(format!("{}/{page}", s.base)).await.unwrap();
        assert_eq!(answer.status(), 200, "/{page} at quota");
    }

    // Or pods counted in Kubernetes, as upstream's KubernetesLaunchQuota:
    // user pods by z2jh's labels in any phase, each once whatever its
    // containers; build pods only beside them in /health.
    drop(s);
    let api = KubeApi::start().await;
    let pod = |name: &str, labels: Value, images: &[&str], phase: &str| {
        let containers: Vec<Value> = images
            .iter()
            .enumerate()
            .map(|(i, image)| json!({ "name": format!("c{i}"), "image": image }))
            .collect();
        json!({ "apiVersion": "v1", "kind": "Pod",
                "metadata": { "name": name, "namespace": "binder", "labels": labels },
                "spec": { "containers": containers }, "status": { "phase": phase } })
    };
    let user = json!({ "app": "jupyterhub", "component": "singleuser-server" });
    let (name, _) = image.rsplit_once(':').unwrap();
    api.insert(
        "binder",
        pod(
            "jupyter-a",
            user.clone(),
            &[&format!("{name}:older"), &format!("{name}:older")],
            "Pending",
        ),
    );
    api.insert(
        "binder",
        pod("jupyter-b", user, &["quay.io/other/image:1"], "Running"),
    );
    api.insert(
        "binder",
        pod(
            "build-x",
            json!({ "component": "binderhub-build" }),
            &[&image],
            "Running",
        ),
    );
    api.insert(
        "binder",
        pod(
            "hub-0",
            json!({ "app": "jupyterhub", "component": "hub" }),
            &[&image],
            "Running",
        ),
    );
    let counted = |per_repo: Option<u32>, total: Option<u32>| {
        let mut c = launch_config(data.path(), &registry, &hub.url, &hub.token);
        c.quota.per_repo = per_repo;
        c.quota.total = total;
        c.quota.kubernetes = Some(KubernetesQuotaConfig {
            api_url: Some(api.url.parse().unwrap()),
            namespace: Some("binder".into()),
            ..Default::default()
        });
        launch_service(c)
    };
    let s = counted(Some(1), None).await;
    let refused = launch(&s, &repo, &sha).await;
    assert_eq!(
        refused.last()["message"],
        format!("Too many users running {}! Try again soon.\n", repo.url),
        "one user pod runs the image (twice), the build and hub pods do not count"
    );
    drop(s);
    let s = counted(Some(2), Some(2)).await;
    let refused = launch(&s, &repo, &sha).await;
    assert_eq!(
        refused.last()["message"],
        "Too many users on this BinderHub! Try again soon.\n"
    );
    let quota = pod_quota_check(&s).await;
    assert_eq!(
        (
            &quota["user_pods"],
            &quota["build_pods"],
            &quota["total_pods"],
            &quota["ok"]
        ),
        (&json!(2), &json!(1), &json!(3), &json!(false)),
        "{health}"
    );
    assert_eq!(health["ok"], true, "over quota is soft: {health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_mode_launches_a_named_server_for_the_tokens_user() {
    let registry = OciRegistry::start(None);
    let hub = JupyterHub::start().await;
    let (repo, sha, _) = built_repo(&registry);
    assert_eq!(hub.api(reqwest::Method::POST, "users/alice").await.0, 201);
    let (status, token) = hub
        .api_with(
            reqwest::Method::POST,
            "users/alice/tokens",
            Some(serde_json::json!({ "note": "bindery test" })),
        )
        .await;
    assert_eq!(status, 201, "{token}");
    let alice = token["token"].as_str().unwrap().to_string();
    let data = tempfile::tempdir().unwrap();
    let mut c = launch_config(data.path(), &registry, &hub.url, &hub.token);
    c.hub.auth_enabled = true;
    let s = launch_service(c).await;
    let url = format!("{}/build/git/{}", s.base, git_spec(&repo.url, &sha));

    let anonymous = sse(&url).await;
    assert_eq!(anonymous.last()["status_code"], 403, "{}", anonymous.raw);
    assert!(
        anonymous.last()["message"]
            .as_str()
            .unwrap()
            .starts_with("Authentication is required")
    );
    let forged = support::service::sse_with(
        &url,
        &[
            ("accept", "text/event-stream"),
            ("authorization", "token not-a-token"),
        ],
    )
    .await;
    assert_eq!(
        forged.last()["message"],
        "The hub does not accept this token\n",
        "{}",
        forged.raw
    );

    let got = support::service::sse_with(
        &url,
        &[
            ("accept", "text/event-stream"),
            ("authorization", &format!("Bearer {alice}")),
        ],
    )
    .await;
    let ready = got.last();
    assert_eq!(ready["phase"], "ready", "{}\n{}", got.raw, hub.log());
    let server_url = ready["url"].as_str().unwrap();
    assert!(
        server_url.starts_with(&format!("{}user/alice/repo-", hub.url)),
        "alice's named server, named from the repository: {server_url}"
    );
    let answer = reqwest::get(format!(
        "{server_url}api/contents?token={}",
        ready["token"].as_str().unwrap()
    ))
    .await
    .unwrap();
    assert_eq!(answer.status(), 200);
    // Besides the hub's admin (scripts/jupyterhub_config.py).
    let users: Vec<_> = hub
        .users()
        .await
        .into_iter()
        .filter(|u| u["admin"] != true)
        .collect();
    assert_eq!(users.len(), 1, "no temporary user: {users:?}");
    assert_eq!(users[0]["servers"].as_object().unwrap().len(), 1);
}

/// A hub that answers every request with a 500; counts those about a user
/// (not `/health`'s listing of them all).
async fn broken_hub() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        if uri.path().starts_with("/hub/api/users/") {
            seen.fetch_add(1, Ordering::SeqCst);
        }
        async {
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"status": 500, "message": "Unhandled error in the hub"}"#,
            )
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_that_is_down_or_failing_gets_retries_then_a_clear_failure() {
    let registry = OciRegistry::start(None);
    let (repo, sha, image) = built_repo(&registry);

    // Nothing listens there.
    let data = tempfile::tempdir().unwrap();
    let down = format!("http://127.0.0.1:{}/", support::free_port());
    let s = launch_service(launch_config(data.path(), &registry, &down, "t")).await;
    let got = launch(&s, &repo, &sha).await;
    assert_eq!(got.last()["phase"], "failed", "{}", got.raw);
    let message = got.last()["message"].as_str().unwrap();
    assert!(message.starts_with(&format!("Failed to create temporary user for {image}: the JupyterHub API at {down}hub/api/ cannot be reached")), "{message}");
    assert!(
        got.raw.contains("Launch attempt 1 failed, retrying...\\n"),
        "{}",
        got.raw
    );
    assert!(
        s.state
            .metrics
            .encode()
            .lines()
            .any(|l| l.starts_with("binderhub_launch_count_total{status=\"failure\""))
    );
    let health = s.health().await;
    assert_eq!(health["ok"], false, "{health}");
    drop(s);

    // It answers, with 500s: each request is retried, then each launch attempt.
    let (broken, requests) = broken_hub().await;
    let s = launch_service(launch_config(data.path(), &registry, &broken, "t")).await;
    let got = launch(&s, &repo, &sha).await;
    let message = got.last()["message"].as_str().unwrap();
    assert!(
        message.contains("the JupyterHub API answered 500 to POST users/")
            && message.contains("Unhandled error in the hub"),
        "{message}"
    );
    // 2 launch attempts × (create user, then, in the background, ask whether
    // its spawn is pending and delete it: each request 1 + 2 retries).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while requests.load(Ordering::SeqCst) < 18 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(requests.load(Ordering::SeqCst), 18);
}

/// The warm pool: after a launch, a server of its image is started ahead of
/// the next one, which is handed it at once; a server goes to one launch
/// only, and the pool starts another. Last, a click through the launch page
/// in a real browser lands on a pool server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launched_image_gets_a_started_server_handed_to_one_launch() {
    let registry = OciRegistry::start(None);
    let hub = JupyterHub::start().await;
    let (repo, sha, image) = built_repo(&registry);
    let data = tempfile::tempdir().unwrap();
    let mut c = launch_config(data.path(), &registry, &hub.url, &hub.token);
    with_pool(&mut c, 2);
    let s = launch_service(c.clone()).await;

    let first = launch(&s, &repo, &sha).await;
    assert_eq!(
        first.last()["phase"],
        "ready",
        "{}\n{}",
        first.raw,
        hub.log()
    );
    let pooled = hub.ready_pool_servers(1).await;
    assert_eq!(pooled.len(), 1, "max_per_image is 1: {pooled:?}");
    // The pool polls its new servers every 250 ms: give it time to see this one up.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (a, b) = tokio::join!(launch(&s, &repo, &sha), launch(&s, &repo, &sha));
    let urls: Vec<String> = [&a, &b]
        .iter()
        .map(|got| {
            assert_eq!(got.last()["phase"], "ready", "{}\n{}", got.raw, hub.log());
            got.last()["url"].as_str().unwrap().to_string()
        })
        .collect();
    assert_ne!(urls[0], urls[1]);
    let handed: Vec<&Stream> = [&a, &b]
        .into_iter()
        .filter(|got| {
            got.last()["url"]
                .as_str()
                .unwrap()
                .contains(&format!("/user/{}/", pooled[0]))
        })
        .collect();
    assert_eq!(
        handed.len(),
        1,
        "exactly one launch gets the pool's server: {urls:?}"
    );
    let handed = handed[0];
    let phases: Vec<&str> = handed
        .events
        .iter()
        .filter_map(|e| e["phase"].as_str())
        .collect();
    assert_eq!(
        phases.iter().rev().take(2).collect::<Vec<_>>(),
        [&"ready", &"launching"],
        "the events of a launch: {}",
        handed.raw
    );
    assert!(
        !handed.raw.contains("Server ready at"),
        "no spawn on the way: {}",
        handed.raw
    );
    let (url, token) = (
        handed.last()["url"].as_str().unwrap(),
        handed.last()["token"].as_str().unwrap(),
    );
    let answer = reqwest::get(format!("{url}api/contents?token={token}"))
        .await
        .unwrap();
    assert_eq!(
        answer.status(),
        200,
        "the handed server opens with the launch's token"
    );

    let metrics = s.metrics().await;
    let name = bindery::registry::naming::split_tag(&image).0;
    for line in [
        format!(r#"bindery_warm_pool_handouts_total{{image="{name}",outcome="hit"}} 1"#),
        format!(r#"bindery_warm_pool_handouts_total{{image="{name}",outcome="miss"}} 2"#),
        format!(r#"bindery_warm_pool_refill_seconds_count{{image="{name}"}} "#),
    ] {
        assert!(metrics.contains(&line), "{line}\n{metrics}");
    }
    // The pool's state is in the metrics; `/health` keeps upstream's checks.
    let health = s.health().await;
    let services: Vec<&str> = health["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["service"].as_str())
        .collect();
    assert_eq!(
        services,
        ["Docker registry", "JupyterHub API", "Pod quota"],
        "{health}"
    );

    // The claimed server is a launch like any other now, and the pool starts
    // another in its place.
    let refilled = hub.ready_pool_servers(1).await;
    assert!(!refilled.contains(&pooled[0]), "{refilled:?}");
    let (_, user) = hub
        .api(reqwest::Method::GET, &format!("users/{}", pooled[0]))
        .await;
    assert!(
        user["groups"]
            .as_array()
            .unwrap()
            .contains(&json!("binder-users")),
        "{user}"
    );

    // A culler told to stop everything stops the three launches' servers,
    // the claimed pool server with them, and not the unclaimed one.
    let mut cull = c.clone();
    cull.plugins.insert(
        "cull-all".into(),
        bindery::config::PluginConfig {
            bundled: Some("idle".into()),
            enabled: true,
            config: toml::from_str("timeout_secs = 0\nmax_age_secs = 1\ncull_users = true")
                .unwrap(),
            ..Default::default()
        },
    );
    let culler = bindery::cull::Culler::new(
        Arc::new(bindery::jupyterhub::Hub::new(&c.hub).unwrap().unwrap()),
        bindery_runtime::PluginHost::start(&cull).await.unwrap(),
        &bindery::config::CullConfig {
            policies: vec!["cull-all".into()],
            ..Default::default()
        },
        bindery::cull::CullScope {
            pool_group: Some(c.warm_pool.group.clone()),
            ..bindery::cull::CullScope::of(&c.hub)
        },
        Arc::new(bindery::metrics::Metrics::default()),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = culler.pass().await.unwrap();
    assert_eq!((report.servers, report.stopped), (3, 3), "{report:?}");
    assert_eq!(hub.ready_pool_servers(1).await, refilled);

    // A pool server that stops (it crashed, or an admin stopped it) is
    // removed with its user, and replaced: the pool leaks none.
    let (status, _) = hub
        .api(
            reqwest::Method::DELETE,
            &format!("users/{}/server", refilled[0]),
        )
        .await;
    assert!(matches!(status, 202 | 204), "{status}");
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let names: Vec<Value> = hub
            .users()
            .await
            .iter()
            .map(|u| u["name"].clone())
            .collect();
        let ready = hub.ready_pool_servers(1).await;
        if !names.contains(&json!(refilled[0])) && !ready.contains(&refilled[0]) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{names:?} {ready:?}\n{}",
            hub.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // A click on the launch link, in a real browser: the page is handed the
    // pool's server and lands on it; no server is started on the way.
    let fresh = hub.ready_pool_servers(1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // A repository's quota counts its users' servers, not the pool's: with
    // none running now (the culler took them) and a quota of one, the
    // unclaimed pool server of the image leaves the launch its room.
    let request = bindery::launch::LaunchRequest {
        image: image.clone(),
        repo_url: repo.url.clone(),
        ref_url: String::new(),
        launch_host: String::new(),
        binder_request: String::new(),
        persistent_request: String::new(),
        client_ip: String::new(),
        repo_config: json!({ "quota": 1 }).as_object().unwrap().clone(),
        user: None,
    };
    let hub_client = Arc::new(bindery::jupyterhub::Hub::new(&c.hub).unwrap().unwrap());
    let quotas = |c: &bindery::config::Config| {
        bindery::launch::quota::Quotas::new(c, hub_client.clone()).unwrap()
    };
    assert_eq!(quotas(&c).check(&request).await, Ok(()));
    let mut unpooled = c.clone();
    unpooled.warm_pool.max_servers = 0;
    assert!(
        matches!(
            quotas(&unpooled).check(&request).await,
            Err(bindery::launch::LaunchError::Quota { .. })
        ),
        "counted as a server of the repository when it is no pool's"
    );
    let launched_users = |users: Vec<Value>| -> Vec<String> {
        let mut names: Vec<String> = users
            .iter()
            .filter_map(|u| u["name"].as_str())
            .filter(|n| !n.starts_with("pool-"))
            .map(String::from)
            .collect();
        names.sort();
        names
    };
    let before = launched_users(hub.users().await);
    let page = format!("{}/v2/git/{}", s.base, git_spec(&repo.url, &sha));
    let server = format!("{}user/{}/", hub.url, fresh[0]);
    let landed = tokio::task::spawn_blocking(move || {
        let mut b = support::browser::Browser::start();
        b.navigate(&page);
        b.wait_for("location.href", Duration::from_secs(60), |v| {
            v.as_str().is_some_and(|h| h.starts_with(&server))
        });
        b.wait_for("document.readyState", Duration::from_secs(30), |v| {
            v == "complete"
        });
        // The server let the browser in with the launch's token: its API
        // answers the browser's own session now.
        b.eval(
            "(() => { const x = new XMLHttpRequest(); x.open('GET', 'api/status', false); \
             x.send(); return [location.href, x.status]; })()",
        )
    })
    .await
    .unwrap();
    assert_eq!(landed[1], 200, "the page opens the server: {landed}");
    assert_eq!(
        launched_users(hub.users().await),
        before,
        "no launch user was made on the way"
    );
}

/// Sets the Lease both replicas contend for as an admin would: held by
/// `holder` for an hour, or (`None`) expired, for the next replica to take.
async fn set_lease(api: &KubeApi, holder: Option<&str>) {
    use k8s_openapi::api::coordination::v1::Lease;
    let (client, _) =
        bindery::cluster::client(Some(&api.url.parse().unwrap()), Some("binder"), "test").unwrap();
    let leases: kube::Api<Lease> = kube::Api::namespaced(client, "binder");
    let mut lease = leases.get("bindery-culler").await.unwrap();
    let spec = lease.spec.as_mut().unwrap();
    use k8s_openapi::jiff::Timestamp;
    let renewed = match holder {
        Some(_) => Timestamp::now(),
        None => Timestamp::UNIX_EPOCH,
    };
    spec.holder_identity = Some(holder.unwrap_or("gone").into());
    spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        renewed,
    ));
    spec.lease_duration_seconds = Some(3600);
    leases
        .replace("bindery-culler", &Default::default(), &lease)
        .await
        .unwrap();
}

/// Servers on the hub now (ready or starting), and unclaimed pool servers;
/// `None` when the hub does not answer.
async fn try_servers(hub: &(String, String)) -> Option<(usize, usize)> {
    let users: Vec<Value> = reqwest::Client::new()
        .get(format!("{}users", hub.0))
        .header("authorization", format!("token {}", hub.1))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let running = |u: &&Value| u["servers"].as_object().is_some_and(|s| !s.is_empty());
    let pooled = |u: &&Value| {
        u["groups"].as_array().is_some_and(|g| {
            g.contains(&json!("binder-pool")) && !g.contains(&json!("binder-users"))
        })
    };
    Some((
        users.iter().filter(running).count(),
        users.iter().filter(running).filter(pooled).count(),
    ))
}

async fn servers(hub: &(String, String)) -> (usize, usize) {
    try_servers(hub).await.expect("the hub answers")
}

/// Hits of the warm pool a service counted, over all images.
fn pool_hits(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("bindery_warm_pool_handouts_total{") && l.contains(r#"outcome="hit""#)
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// Fifty launches at once, spread over two replicas, against a pool of five
/// that the replica holding the Lease started: five are handed a pool
/// server and forty-five launch as usual, no server goes to two launches,
/// and the total quota holds throughout. The pool refills only into room
/// the quota leaves, and gives a server's room to a launch that needs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_launches_at_once_share_a_pool_of_five_within_the_quota() {
    const TOTAL: u32 = 52;
    let registry = OciRegistry::start(None);
    let hub = JupyterHub::start().await;
    let api = KubeApi::start().await;
    let (repo, sha, _) = built_repo(&registry);
    let data = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut replicas = Vec::new();
    for (i, identity) in ["a", "b"].into_iter().enumerate() {
        let mut c = launch_config(data[i].path(), &registry, &hub.url, &hub.token);
        with_pool(&mut c, 5);
        c.plugins.get_mut("popular").unwrap().config =
            toml::from_str("min_launches = 0.5\nlaunches_per_server = 0.2\nmax_per_image = 5")
                .unwrap();
        c.quota.total = Some(TOTAL);
        // Fifty Jupyter servers starting at once on two cores take a while.
        c.hub.launch_timeout_secs = 300;
        c.cull.leader = Some(bindery::config::LeaderConfig {
            api_url: Some(api.url.parse().unwrap()),
            namespace: Some("binder".into()),
            identity: Some(identity.into()),
            lease_secs: 2,
            ..Default::default()
        });
        replicas.push(launch_service(c).await);
    }
    // The peak of servers on the hub, sampled all along.
    let api_of = (hub.api.clone(), hub.token.clone());
    let peak = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (peak, api_of) = (peak.clone(), api_of.clone());
        tokio::spawn(async move {
            loop {
                if let Some((n, _)) = try_servers(&api_of).await {
                    peak.fetch_max(n, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // One launch through each replica (each counts its own launches), and
    // whichever leads fills the pool.
    for s in &replicas {
        let first = launch(s, &repo, &sha).await;
        assert_eq!(first.last()["phase"], "ready", "{}", first.raw);
    }
    let pooled = hub.ready_pool_servers(5).await;
    assert_eq!(pooled.len(), 5, "{pooled:?}");
    // An admin holds the Lease now: neither replica starts or removes pool
    // servers during the burst, so exactly five can be handed out; both
    // still see the pool and hand it out.
    set_lease(&api, Some("admin")).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(hub.ready_pool_servers(5).await.len(), 5);

    // Hits before the burst: a replica's first launch may already have been
    // handed a pool server, when the leader's first one was up in time.
    let hits_before =
        pool_hits(&replicas[0].metrics().await) + pool_hits(&replicas[1].metrics().await);
    let burst = (0..50).map(|i| launch(&replicas[i % 2], &repo, &sha));
    let burst = futures_util::future::join_all(burst).await;
    let mut urls: Vec<String> = burst
        .iter()
        .map(|got| {
            assert_eq!(got.last()["phase"], "ready", "{}\n{}", got.raw, hub.log());
            got.last()["url"].as_str().unwrap().to_string()
        })
        .collect();
    let handed: Vec<&String> = urls
        .iter()
        .filter(|u| pooled.iter().any(|p| u.contains(&format!("/user/{p}/"))))
        .collect();
    assert_eq!(handed.len(), 5, "{urls:?}");
    urls.sort();
    urls.dedup();
    assert_eq!(urls.len(), 50, "every server goes to one launch");
    let hits = pool_hits(&replicas[0].metrics().await) + pool_hits(&replicas[1].metrics().await);
    assert_eq!(hits - hits_before, 5);
    assert_eq!(servers(&api_of).await, (TOTAL as usize, 0));

    // The Lease expires: a replica leads again, and wants five pool
    // servers, but the quota is full, so it starts none.
    set_lease(&api, None).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(servers(&api_of).await, (TOTAL as usize, 0));
    let refused = launch(&replicas[0], &repo, &sha).await;
    assert_eq!(
        refused.last()["message"],
        "Too many users on this BinderHub! Try again soon.\n",
        "{}",
        refused.raw
    );

    // Four launches end: the pool refills into their room, four of five.
    for url in &burst
        .iter()
        .map(|b| b.last()["url"].as_str().unwrap())
        .collect::<Vec<_>>()[..4]
    {
        let user = url
            .split("/user/")
            .nth(1)
            .unwrap()
            .split('/')
            .next()
            .unwrap();
        let (status, body) = hub
            .api(reqwest::Method::DELETE, &format!("users/{user}"))
            .await;
        assert!(matches!(status, 202 | 204), "{status} {body}");
    }
    let refilled = hub.ready_pool_servers(4).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(servers(&api_of).await, (TOTAL as usize, 4), "{refilled:?}");

    // A launch of another image finds the quota full of pool servers: the
    // pool gives one up for it.
    let (other, other_sha, _) = built_repo(&registry);
    let given = launch(&replicas[1], &other, &other_sha).await;
    assert_eq!(
        given.last()["phase"],
        "ready",
        "{}\n{}",
        given.raw,
        hub.log()
    );
    // The server the pool gave up may still be listed while the hub
    // removes it; the peak sampler checks the quota meanwhile.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut now = servers(&api_of).await;
    while now != (TOTAL as usize, 3) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        now = servers(&api_of).await;
    }
    assert_eq!(now, (TOTAL as usize, 3));
    sampler.abort();
    assert!(
        peak.load(Ordering::SeqCst) <= TOTAL as usize,
        "{} servers at the peak, over the quota of {TOTAL}",
        peak.load(Ordering::SeqCst)
    );
}

/// The temporary users whose default server the hub reports ready.
async fn ready_users(hub: &JupyterHub) -> Vec<String> {
    hub.users()
        .await
        .iter()
        .filter(|u| u["servers"][""]["ready"] == true)
        .map(|u| u["name"].as_str().unwrap().to_string())
        .collect()
}

/// Waits up to `within` for `done` to hold of the hub's ready users.
async fn until_users(
    hub: &JupyterHub,
    within: Duration,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let users = ready_users(hub).await;
        if done(&users) || tokio::time::Instant::now() > deadline {
            return users;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_launch_runs_during_the_push_and_a_failed_push_removes_its_server() {
    // Real repo2docker builds into the engine DockerSpawner runs from, and
    // pushes through a proxy that holds the manifest until the test says.
    let registry = OciRegistry::start(None);
    let proxy = CutProxy::start(registry.port).await;
    let hub = JupyterHub::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut c = build_config(data.path(), &registry).await;
    c.hub = launch_config(data.path(), &registry, &hub.url, &hub.token).hub;
    c.registry.image_prefix = format!("127.0.0.1:{}/binder-", proxy.port);
    c.registry.url = Some(format!("http://127.0.0.1:{}", proxy.port).parse().unwrap());
    c.build.local.spawner_shares_engine = true;
    let launcher: Arc<dyn bindery::launch::Launcher> =
        Arc::new(HubLauncher::new(Arc::new(Hub::new(&c.hub).unwrap().unwrap()), &c).unwrap());
    let s = Service::start_with(c, Builds::Planned, Some(launcher)).await;
    let repo = TestRepo::new();
    let sha = repo.commit(
        &[("Dockerfile", DOCKERFILE), ("notes.md", b"# early\n")],
        &[],
    );
    let url = format!("{}/build/git/{}", s.base, git_spec(&repo.url, &sha));
    let sse_headers = [("accept", "text/event-stream")];

    proxy.hold_at("PUT /manifests/");
    let mut stream = OpenStream::open(&url, &sse_headers).await;
    stream
        .until("Successfully tagged", Duration::from_secs(300))
        .await;
    let early = until_users(&hub, Duration::from_secs(120), |u| !u.is_empty()).await;
    assert_eq!(
        early.len(),
        1,
        "a server runs while the push waits: {}",
        hub.log()
    );
    let so_far = stream.read_for(Duration::from_millis(300)).await;
    assert!(
        !so_far.contains("\"launching\"") && !so_far.contains("\"built\""),
        "the client hears of the launch only after the push: {so_far}"
    );
    // The registry dies before the manifest is in.
    proxy.cut();
    let got = stream.end().await;
    assert_eq!(got.last()["phase"], "failed", "{}", got.raw);
    assert!(!got.phases().contains(&"launching"), "{}", got.raw);
    proxy.restore();
    let image = got
        .raw
        .split("Successfully tagged ")
        .nth(1)
        .and_then(|rest| rest.split(['\\', '"']).next())
        .unwrap()
        .to_string();
    assert_eq!(s.image_digest(&image).await, None, "not recorded as built");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while hub
        .users()
        .await
        .iter()
        .any(|u| u["name"] == early[0].as_str())
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the early server and its temporary user are removed: {:?}",
            hub.users().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Again, and the push succeeds: the server that started during it is the client's.
    proxy.hold_at("PUT /manifests/");
    let mut stream = OpenStream::open(&url, &sse_headers).await;
    stream
        .until("Successfully tagged", Duration::from_secs(300))
        .await;
    let early = until_users(&hub, Duration::from_secs(120), |u| !u.is_empty()).await;
    assert_eq!(early.len(), 1, "{}", hub.log());
    proxy.restore();
    let got = stream.end().await;
    let ready = got.last();
    assert_eq!(ready["phase"], "ready", "{}\n{}", got.raw, hub.log());
    let phases = got.phases();
    let built = phases.iter().position(|p| *p == "built").unwrap();
    assert!(
        phases[..built].contains(&"pushing") && phases[built + 1] == "launching",
        "{phases:?}"
    );
    assert!(
        ready["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/user/{}/", early[0])),
        "{ready}"
    );
    let answer = reqwest::get(format!(
        "{}api/contents?token={}",
        ready["url"].as_str().unwrap(),
        ready["token"].as_str().unwrap()
    ))
    .await
    .unwrap();
    assert_eq!(answer.status(), 200);
    assert!(
        s.image_digest(&image).await.is_some(),
        "recorded once pushed"
    );
}
