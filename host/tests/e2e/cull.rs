//! Culling: the bundled `idle` policy on a real JupyterHub whose servers run
//! in the real Docker engine, hostile policies that cannot stop the culler,
//! a pass over many paginated users, and leader election over a Lease (on the
//! Kubernetes API server test double: no API server can be installed here).

use crate::support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bindery::config::{Config, CullConfig, LeaderConfig, PluginConfig, SecretSource};
use bindery::cull::leader::Leader;
use bindery::cull::{CullScope, Culler};
use bindery::jupyterhub::Hub;
use bindery::launch::hub::HubLauncher;
use bindery::launch::{LaunchRequest, Launched, Launcher};
use bindery::metrics::Metrics;
use bindery_runtime::PluginHost;
use support::hub::{JupyterHub, PaginatedHub, built_repo, every_third_idle};
use support::kube::KubeApi;
use support::registry::OciRegistry;

fn hub_config(c: &mut Config, url: &str, token: &str, data: &std::path::Path) {
    c.hub.url = Some(url.parse().unwrap());
    std::fs::write(data.join("hub-token"), token).unwrap();
    c.hub.api_token = Some(SecretSource::File(data.join("hub-token")));
    c.hub.retries = 1;
    c.hub.retry_delay_ms = 100;
}

/// A bundled plugin under another name with its own config.
fn bundled(name: &str, config: &[(&str, toml::Value)]) -> PluginConfig {
    PluginConfig {
        bundled: Some(name.into()),
        enabled: true,
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        ..Default::default()
    }
}

fn hostile(mode: &str) -> PluginConfig {
    PluginConfig {
        config: [("mode".to_string(), toml::Value::String(mode.into()))].into(),
        call_timeout_ms: Some(1000),
        memory_limit_mib: Some(32),
        ..support::plugin_at(&support::fixture("bindery-test-hostile-cull"))
    }
}

fn culler(
    hub: &Arc<Hub>,
    plugins: &Arc<PluginHost>,
    metrics: &Arc<Metrics>,
    policies: &[&str],
) -> Culler {
    let config = CullConfig {
        policies: policies
            .iter()
            .map(std::string::ToString::to_string)
            .collect(),
        ..CullConfig::default()
    };
    Culler::new(
        hub.clone(),
        plugins.clone(),
        &config,
        CullScope::of(&bindery::config::HubConfig::default()),
        metrics.clone(),
    )
}

/// A registry holding a built repository's image, a real hub that runs
/// it, and Bindery's configuration for both.
struct HubWithImage {
    jupyterhub: JupyterHub,
    repo: support::engine::TestRepo,
    sha: String,
    image: String,
    config: Config,
    _registry: OciRegistry,
    _data: tempfile::TempDir,
}

impl HubWithImage {
    async fn start() -> HubWithImage {
        let registry = OciRegistry::start(None);
        let jupyterhub = JupyterHub::start().await;
        let (repo, sha, image) = built_repo(&registry);
        let data = tempfile::tempdir().unwrap();
        let mut config = support::service::config(data.path(), Some(&registry));
        hub_config(&mut config, &jupyterhub.url, &jupyterhub.token, data.path());
        HubWithImage {
            jupyterhub,
            repo,
            sha,
            image,
            config,
            _registry: registry,
            _data: data,
        }
    }
}

/// Launches `image` for the request `v2/{request}`, e.g. `git/<sha>`.
async fn launch(launcher: &HubLauncher, image: &str, repo_url: &str, request: &str) -> Launched {
    let request = LaunchRequest {
        image: image.into(),
        repo_url: repo_url.into(),
        ref_url: repo_url.into(),
        launch_host: "http://bindery.test/".into(),
        binder_request: format!("v2/{request}"),
        persistent_request: format!("v2/{request}"),
        client_ip: "127.0.0.1".into(),
        repo_config: Default::default(),
        user: None,
    };
    let (progress, mut messages) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move { while messages.recv().await.is_some() {} });
    launcher.launch(&request, progress).await.unwrap()
}

/// The names of the users with a server running.
async fn running(hub: &JupyterHub) -> Vec<String> {
    hub.users()
        .await
        .iter()
        .filter(|u| u["servers"].as_object().is_some_and(|s| !s.is_empty()))
        .map(|u| u["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_servers_are_culled_active_ones_kept_old_ones_stopped_and_hostile_policies_keep_everything()
 {
    let h = HubWithImage::start().await;
    let (jupyterhub, repo, sha, image) = (&h.jupyterhub, &h.repo, &h.sha, &h.image);
    let mut c = h.config.clone();
    c.plugins.insert(
        "idle-short".into(),
        bundled(
            "idle",
            &[("timeout_secs", 15.into()), ("cull_users", true.into())],
        ),
    );
    c.plugins.insert(
        "idle-max-age".into(),
        bundled(
            "idle",
            &[("timeout_secs", 0.into()), ("max_age_secs", 1.into())],
        ),
    );
    for mode in ["loop", "bomb", "panic", "short"] {
        c.plugins.insert(format!("hostile-{mode}"), hostile(mode));
    }
    let plugins = PluginHost::start(&c).await.unwrap();
    let hub = Arc::new(Hub::new(&c.hub).unwrap().unwrap());
    let metrics = Arc::new(Metrics::default());
    let launcher = HubLauncher::new(hub.clone(), &c).unwrap();

    let idle = launch(&launcher, image, &repo.url, &format!("git/{sha}")).await;
    let active = launch(&launcher, image, &repo.url, &format!("git/{sha}")).await;
    let (idle_user, active_user) = (idle.user.clone(), active.user.clone());
    // One user works through the proxy all along; the other never comes back.
    let keep_busy = tokio::spawn({
        let url = format!("{}api/contents?token={}", active.url, active.token);
        async move {
            loop {
                let _ = reqwest::get(&url).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    });
    let started = Instant::now();

    // Hostile policies: each keeps every server, and the culler carries on.
    for mode in ["loop", "bomb", "panic", "short"] {
        let policy = format!("hostile-{mode}");
        let report = culler(&hub, &plugins, &metrics, &[&policy, "idle-max-age"])
            .pass()
            .await
            .unwrap();
        assert_eq!(
            (report.servers, report.stopped, report.policy_failures),
            (2, 0, 1),
            "{mode}: {report:?}"
        );
        assert!(
            metrics.encode().contains(&format!(
                "bindery_cull_policy_failures_total{{policy=\"{policy}\"}} 1"
            )),
            "{mode}"
        );
    }
    let mut both = running(jupyterhub).await;
    both.sort();
    let mut expected = vec![idle_user.clone(), active_user.clone()];
    expected.sort();
    assert_eq!(both, expected, "nothing was stopped by a failing policy");

    // Past the timeout (and the hub's 5 s activity interval), the idle one goes with its user.
    tokio::time::sleep(Duration::from_secs(22).saturating_sub(started.elapsed())).await;
    let report = culler(&hub, &plugins, &metrics, &["idle-short"])
        .pass()
        .await
        .unwrap();
    assert_eq!(
        (report.servers, report.stopped, report.users_deleted),
        (2, 1, 1),
        "{report:?}\n{}",
        jupyterhub.log()
    );
    assert_eq!(
        running(jupyterhub).await,
        std::slice::from_ref(&active_user)
    );
    assert!(
        !jupyterhub
            .users()
            .await
            .iter()
            .any(|u| u["name"] == idle_user.as_str()),
        "the idle user is deleted"
    );

    // Max age stops the active one anyway; its user stays (cull_users is off there).
    let report = culler(&hub, &plugins, &metrics, &["idle-max-age"])
        .pass()
        .await
        .unwrap();
    assert_eq!(
        (report.servers, report.stopped, report.users_deleted),
        (1, 1, 0),
        "{report:?}"
    );
    keep_busy.abort();
    assert!(running(jupyterhub).await.is_empty());
    assert!(
        jupyterhub
            .users()
            .await
            .iter()
            .any(|u| u["name"] == active_user.as_str())
    );
    let text = metrics.encode();
    assert!(
        text.contains(r#"bindery_cull_servers_total{action="stopped"} 2"#),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_culler_touches_only_what_bindery_started_and_never_an_admin() {
    let h = HubWithImage::start().await;
    let (jupyterhub, repo, sha, image) = (&h.jupyterhub, &h.repo, &h.sha, &h.image);
    let mut c = h.config.clone();
    // Every server is past its age, and the policy asks to delete users.
    c.plugins.insert(
        "cull-all".into(),
        bundled(
            "idle",
            &[
                ("timeout_secs", 0.into()),
                ("max_age_secs", 1.into()),
                ("cull_users", true.into()),
            ],
        ),
    );
    let plugins = PluginHost::start(&c).await.unwrap();
    let hub = Arc::new(Hub::new(&c.hub).unwrap().unwrap());
    let metrics = Arc::new(Metrics::default());
    let launcher = HubLauncher::new(hub.clone(), &c).unwrap();
    let ours = launch(&launcher, image, &repo.url, &format!("git/{sha}"))
        .await
        .user;
    // An ordinary user's own server, and a server of the hub's admin
    // (scripts/jupyterhub_config.py) that even carries Bindery's fields.
    let post = |path: String, body: serde_json::Value| {
        let hub = hub.clone();
        async move {
            hub.request(reqwest::Method::POST, &path, Some(&body))
                .await
                .unwrap()
        }
    };
    post("users/alice".into(), serde_json::json!({})).await;
    post(
        "users/alice/server".into(),
        serde_json::json!({ "image": image, "token": "t" }),
    )
    .await;
    post(
        "users/hub-admin/server".into(),
        serde_json::json!({ "image": image, "token": "t", "binder_request": format!("v2/git/{sha}") }),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while running(jupyterhub).await.len() < 3 {
        assert!(Instant::now() < deadline, "{}", jupyterhub.log());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let pass = |scope: CullScope| {
        let config = CullConfig {
            policies: vec!["cull-all".into()],
            ..CullConfig::default()
        };
        Culler::new(
            hub.clone(),
            plugins.clone(),
            &config,
            scope,
            metrics.clone(),
        )
    };
    let report = pass(CullScope::of(&c.hub)).pass().await.unwrap();
    assert_eq!(
        (report.servers, report.stopped, report.users_deleted),
        (1, 1, 1),
        "{report:?}"
    );
    let mut left = running(jupyterhub).await;
    left.sort();
    assert_eq!(left, ["alice", "hub-admin"]);
    let names: Vec<_> = jupyterhub
        .users()
        .await
        .iter()
        .map(|u| u["name"].clone())
        .collect();
    assert!(!names.contains(&ours.as_str().into()), "{names:?}");

    // Authenticated mode: Bindery's server is stopped, its user kept.
    let second = launch(&launcher, image, &repo.url, &format!("git/{sha}"))
        .await
        .user;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut authenticated = c.hub.clone();
    authenticated.auth_enabled = true;
    let report = pass(CullScope::of(&authenticated)).pass().await.unwrap();
    assert_eq!(
        (report.servers, report.stopped, report.users_deleted),
        (1, 1, 0),
        "{report:?}"
    );
    let names: Vec<_> = jupyterhub
        .users()
        .await
        .iter()
        .map(|u| u["name"].clone())
        .collect();
    assert!(names.contains(&second.as_str().into()), "{names:?}");
    for user in ["alice", "hub-admin"] {
        let _ = hub.stop(user, "").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_pages_through_many_users_and_counts_slow_stops() {
    // 450 users: every third idle for two hours, some of those slow to stop.
    let users = every_third_idle(450, |i| {
        if i % 30 == 0 {
            format!("slow-{i}")
        } else {
            format!("user-{i}")
        }
    });
    let fake = PaginatedHub::start(users).await;
    let data = tempfile::tempdir().unwrap();
    let mut c = support::service::config(data.path(), None);
    hub_config(&mut c, &fake.url, "t", data.path());
    c.hub.page_size = 100;
    c.plugins.get_mut("idle").unwrap().enabled = true;
    let plugins = PluginHost::start(&c).await.unwrap();
    let hub = Arc::new(Hub::new(&c.hub).unwrap().unwrap());
    let report = culler(&hub, &plugins, &Arc::new(Metrics::default()), &["idle"])
        .pass()
        .await
        .unwrap();
    assert_eq!(report.servers, 450, "all five pages were read");
    assert_eq!(
        (report.stopped, report.slow, report.users_deleted),
        (135, 15, 135),
        "{report:?}"
    );
    // 5 pages + 150 stops + 135 user deletions.
    assert_eq!(
        fake.requests.load(std::sync::atomic::Ordering::SeqCst),
        5 + 150 + 135
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_culler_among_replicas_holds_the_lease() {
    let api = KubeApi::start().await;
    let contender = |identity: &str| {
        Leader::new(&LeaderConfig {
            api_url: Some(api.url.parse().unwrap()),
            namespace: Some("binder".into()),
            identity: Some(identity.into()),
            lease_secs: 2,
            ..LeaderConfig::default()
        })
        .unwrap()
    };
    let (a, b) = (contender("bindery-a"), contender("bindery-b"));
    assert!(
        a.try_lead().await.unwrap(),
        "the first takes the free lease"
    );
    assert!(!b.try_lead().await.unwrap(), "the second waits");
    assert!(a.try_lead().await.unwrap(), "the holder renews");
    assert!(!b.try_lead().await.unwrap());
    // The holder stops renewing (it died): once the lease expires, the other takes over.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(b.try_lead().await.unwrap(), "the lease expired");
    assert!(!a.try_lead().await.unwrap(), "the old holder stands down");

    // Run as the service does: the watch follows leadership.
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let c = contender("bindery-c");
    let runner = tokio::spawn(c.run(tx));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!*rx.borrow_and_update(), "b holds it");
    tokio::time::timeout(Duration::from_secs(10), rx.changed())
        .await
        .expect("c takes over once b stops renewing")
        .unwrap();
    assert!(*rx.borrow());
    runner.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_culls_every_interval_only_while_it_leads() {
    let old = (chrono::Utc::now() - chrono::Duration::hours(2)).to_rfc3339();
    let api = KubeApi::start().await;
    // Another replica holds the Lease, and keeps renewing it for now.
    let other = Leader::new(&LeaderConfig {
        api_url: Some(api.url.parse().unwrap()),
        namespace: Some("binder".into()),
        identity: Some("other".into()),
        lease_secs: 2,
        ..LeaderConfig::default()
    })
    .unwrap();
    assert!(other.try_lead().await.unwrap());
    let renewing = tokio::spawn(async move {
        loop {
            other.try_lead().await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });

    let fake = PaginatedHub::start(vec![("idle-user".into(), old)]).await;
    let data = tempfile::tempdir().unwrap();
    let mut c = support::service::config(data.path(), None);
    hub_config(&mut c, &fake.url, "t", data.path());
    c.plugins.get_mut("idle").unwrap().enabled = true;
    c.cull.every_secs = 1;
    c.cull.leader = Some(LeaderConfig {
        api_url: Some(api.url.parse().unwrap()),
        namespace: Some("binder".into()),
        identity: Some("this".into()),
        lease_secs: 2,
        ..LeaderConfig::default()
    });
    let plugins = PluginHost::start(&c).await.unwrap();
    let _app = bindery::app::App::new(c, plugins).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        fake.deleted.lock().unwrap().is_empty(),
        "a replica that does not lead does not cull"
    );

    // The other replica dies: this one takes the Lease over and culls.
    renewing.abort();
    let deadline = Instant::now() + Duration::from_secs(15);
    while fake.deleted.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the new leader never culled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        *fake.deleted.lock().unwrap(),
        ["idle-user/server", "idle-user"]
    );
}

/// One scenario, two worlds: a chain of bundled policies culls three
/// servers on a real JupyterHub, and `bindery simulate` replays the same
/// launches against the same configuration. The same servers go, in the
/// same order, each as long after it was ready (within a pass and the
/// spread of the hub's spawns), and the replay names the policy of each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_chain_culls_the_same_in_service_and_in_simulate() {
    let h = HubWithImage::start().await;
    let (jupyterhub, repo, image) = (&h.jupyterhub, &h.repo, &h.image);
    let mut c = h.config.clone();
    c.plugins.insert(
        "idle-short".into(),
        bundled(
            "idle",
            &[("timeout_secs", 12.into()), ("cull_users", true.into())],
        ),
    );
    let rules: toml::Table =
        toml::from_str(r#"rules = [{ spec = "gh/org/workshop*", timeout_secs = 30 }]"#).unwrap();
    c.plugins.insert(
        "workshop".into(),
        bundled("per-repo", &[("rules", rules["rules"].clone())]),
    );
    c.cull.policies = vec!["workshop".into(), "idle-short".into()];
    c.cull.every_secs = 2;
    let plugins = PluginHost::start(&c).await.unwrap();
    let hub = Arc::new(Hub::new(&c.hub).unwrap().unwrap());
    let metrics = Arc::new(Metrics::default());
    let launcher = HubLauncher::new(hub.clone(), &c).unwrap();

    // Idle from the start; working for 10 s; idle, but a workshop's.
    let scenario = [
        ("org/other/HEAD", 0),
        ("org/other/HEAD", 10),
        ("org/workshop/HEAD", 0),
    ];
    let mut launched = Vec::new();
    for (spec, _) in scenario {
        let asked = bindery::now_ms();
        let server = launch(&launcher, image, &repo.url, &format!("gh/{spec}")).await;
        launched.push((asked, bindery::now_ms(), server));
    }
    let busy = {
        let (_, ready, server) = &launched[1];
        let url = format!("{}api/contents?token={}", server.url, server.token);
        let until = *ready + 10_000;
        tokio::spawn(async move {
            while bindery::now_ms() < until {
                let _ = reqwest::get(&url).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };

    // In service: a pass every 2 s, each server's culling noted at the pass that stopped it.
    let culler = culler(&hub, &plugins, &metrics, &["workshop", "idle-short"]);
    let mut stopped: Vec<Option<u64>> = vec![None; 3];
    let deadline = Instant::now() + Duration::from_secs(120);
    while stopped.iter().any(Option::is_none) {
        assert!(
            Instant::now() < deadline,
            "{stopped:?}\n{}",
            jupyterhub.log()
        );
        let at = bindery::now_ms();
        culler.pass().await.unwrap();
        let running = running(jupyterhub).await;
        for (n, (_, _, server)) in launched.iter().enumerate() {
            if stopped[n].is_none() && !running.contains(&server.user) {
                stopped[n] = Some(at);
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    busy.abort();

    // In simulate: the same launches, at the same moments, as events of
    // upstream's schema; the hub's spawn time and activity interval.
    let mut spawns: Vec<u64> = launched.iter().map(|(a, r, _)| r - a).collect();
    spawns.sort_unstable();
    let spawn = spawns[1] as f64 / 1000.0;
    c.simulate.prebuilt = true;
    c.simulate.spawn = bindery::config::Spread {
        median_secs: spawn,
        p90_secs: spawn,
    };
    c.simulate.activity_interval_secs = 5;
    let lines: Vec<String> = launched
        .iter()
        .zip(scenario)
        .map(|((asked, ..), (spec, session))| {
            let at = chrono::DateTime::from_timestamp_millis(*asked as i64).unwrap();
            serde_json::json!({
                "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "schema": "binderhub.jupyter.org/launch", "version": 5,
                "provider": "GitHub", "spec": spec, "status": "success",
                "session_secs": session,
            })
            .to_string()
        })
        .collect();
    let launches = bindery::simulate::trace::parse(lines.join("\n").as_bytes()).unwrap();
    let replay = bindery::simulate::run(&c, &launches).await.unwrap();

    let policies: Vec<&str> = replay
        .launches
        .iter()
        .map(|l| l.culled_by.as_ref().map_or("", |(p, _)| p.as_str()))
        .collect();
    assert_eq!(policies, ["idle-short", "idle-short", "workshop"]);
    let order = |times: &[u64]| {
        let mut order: Vec<usize> = (0..times.len()).collect();
        order.sort_by_key(|&n| times[n]);
        order
    };
    let in_service: Vec<u64> = stopped.iter().map(|s| s.unwrap()).collect();
    let simulated: Vec<u64> = replay
        .launches
        .iter()
        .map(|l| l.stopped_ms.unwrap())
        .collect();
    assert_eq!(
        order(&in_service),
        order(&simulated),
        "{in_service:?} {simulated:?}"
    );
    for (n, ((_, ready, _), l)) in launched.iter().zip(&replay.launches).enumerate() {
        let service = in_service[n] as i64 - *ready as i64;
        let simulate = l.stopped_ms.unwrap() as i64 - l.ready_ms.unwrap() as i64;
        assert!(
            (service - simulate).abs() <= 6_000,
            "server {n}: culled {service} ms after it was ready in service, {simulate} ms in simulate"
        );
    }
}
