//! A federation on loopback: three members (each its own data directory,
//! one registry) and a front, every one of them this binary's service.
//! Repositories spread by weight and stay on one member; upstream's own
//! JavaScript client, in Chromium at the front, follows the redirect to
//! `ready`; a member that dies loses its repositories to the next in
//! rendezvous order and gets them back when it returns. Fake members show
//! that the redirector's known faults are not Bindery's.

use crate::support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bindery::app::Builds;
use bindery::config::{CheckConfig, Config, FederationConfig, MemberConfig, SecretSource};
use bindery::federation::placement;
use serde_json::{Value, json};
use support::GitDaemon;
use support::browser::Browser;
use support::registry::OciRegistry;
use support::service::{
    Service, TestBuilder, TestLauncher, config, git_spec, page_build_token, sse,
};

const WEIGHTS: [(&str, f64); 3] = [("a", 1.0), ("b", 1.0), ("c", 2.0)];
const SECRET: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// `[federation]` for `me` (none: a front) among members at `ports`, `b` the prime.
fn federate(c: &mut Config, me: Option<&str>, ports: &BTreeMap<&str, u16>) {
    c.federation = FederationConfig {
        member: me.map(String::from),
        members: WEIGHTS
            .iter()
            .map(|(name, weight)| {
                let member = MemberConfig {
                    url: format!("http://127.0.0.1:{}/", ports[name])
                        .parse()
                        .unwrap(),
                    weight: *weight,
                    prime: *name == "b",
                };
                (name.to_string(), member)
            })
            .collect(),
        check: fast_checks(),
        ..FederationConfig::default()
    };
    shared_secret(c);
    c.web.cors_allow_origin = Some("*".into());
    c.web.rate_limit.limit = 0;
    c.plugins.get_mut("gh").unwrap().enabled = true;
}

/// The build-token key every member and the front share, as a mounted Secret gives it.
fn shared_secret(c: &mut Config) {
    let file = c.data_dir.join("build-token-secret");
    std::fs::write(&file, SECRET).unwrap();
    c.web.build_token_secret = Some(SecretSource::File(file));
}

fn fast_checks() -> CheckConfig {
    CheckConfig {
        period_secs: 0.5,
        failed_period_secs: 3.0,
        timeout_secs: 1.0,
        retries: 1,
        jitter: 0.1,
    }
}

struct Member {
    service: Option<Service>,
    launcher: Arc<TestLauncher>,
    data: tempfile::TempDir,
}

async fn start_member(
    name: &str,
    ports: &BTreeMap<&str, u16>,
    registry: &OciRegistry,
    data: &tempfile::TempDir,
    launcher: &Arc<TestLauncher>,
) -> Service {
    let mut c = config(data.path(), Some(registry));
    federate(&mut c, Some(name), ports);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", ports[name]))
        .await
        .unwrap();
    let builder: Arc<dyn bindery::build::BuildExecutor> = Arc::new(TestBuilder::new(registry, 1));
    let launcher: Arc<dyn bindery::launch::Launcher> = launcher.clone();
    Service::start_on(listener, c, Builds::With(builder), Some(launcher)).await
}

/// Where the front sends `/build/<path>`: the member's name, by its port.
async fn sent_to(
    client: &reqwest::Client,
    front: &str,
    path: &str,
    ports: &BTreeMap<&str, u16>,
) -> String {
    let r = client
        .get(format!("{front}/build/{path}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 307, "{path}");
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let location = r.headers()["location"].to_str().unwrap();
    assert!(location.ends_with(&format!("/build/{path}")), "{location}");
    let port: u16 = location
        .trim_start_matches("http://127.0.0.1:")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    ports
        .iter()
        .find_map(|(name, p)| (*p == port).then(|| name.to_string()))
        .unwrap_or_else(|| panic!("{location}"))
}

/// Waits until the front's `/active_hosts` lists exactly `names`.
async fn active(front: &str, names: &[&str], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let hosts: Value = reqwest::get(format!("{front}/active_hosts"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let listed: Vec<&str> = hosts["active_hosts"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        if listed == names {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "active hosts {listed:?}, not {names:?}, after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_front_spreads_repositories_by_weight_keeps_each_on_one_member_and_fails_over() {
    let registry = OciRegistry::start(None);
    let first = support::free_ports(4);
    let ports: BTreeMap<&str, u16> = [
        ("a", first),
        ("b", first + 1),
        ("c", first + 2),
        ("front", first + 3),
    ]
    .into();
    let mut members = BTreeMap::new();
    for (name, _) in WEIGHTS {
        let data = tempfile::tempdir().unwrap();
        let launcher = Arc::new(TestLauncher::new("http://hub.test"));
        let service = start_member(name, &ports, &registry, &data, &launcher).await;
        members.insert(
            name,
            Member {
                service: Some(service),
                launcher,
                data,
            },
        );
    }
    let front_data = tempfile::tempdir().unwrap();
    let mut c = config(front_data.path(), None);
    federate(&mut c, None, &ports);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", ports["front"]))
        .await
        .unwrap();
    let front = Service::start_on(listener, c, Builds::Off, None).await;
    active(&front.base, &["a", "b", "c"], Duration::from_secs(5)).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // 300 repositories, by weight (1, 1, 2) within 10 points of their share.
    let mut placed = BTreeMap::new();
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..300 {
        let member = sent_to(
            &client,
            &front.base,
            &format!("gh/lab/repo-{i}/main"),
            &ports,
        )
        .await;
        *count.entry(member.clone()).or_default() += 1;
        placed.insert(i, member);
    }
    for (name, weight) in WEIGHTS {
        let share = count.get(name).copied().unwrap_or(0) as f64 / 300.0;
        let expected = weight / 4.0;
        assert!(
            (share - expected).abs() <= 0.10,
            "{name}: {share:.3} of the repositories, for a weight share of {expected}: {count:?}"
        );
    }
    // Every ref of a repository goes where its image is.
    for reference in ["HEAD", "v1.0", "feature/x"] {
        let member = sent_to(
            &client,
            &front.base,
            &format!("gh/lab/repo-7/{reference}"),
            &ports,
        )
        .await;
        assert_eq!(member, placed[&7], "{reference}");
    }

    // Upstream's JS client at the front follows the redirect to a member,
    // with the front's build token, and reaches `ready` there.
    let (daemon, _) = GitDaemon::with_repo("repo.git");
    let spec = git_spec(&format!("git://127.0.0.1:{}/repo.git", daemon.port), "main");
    let token = page_build_token(&front.base, &spec).await;
    let target = sent_to(&client, &front.base, &format!("git/{spec}"), &ports).await;
    let phases = js_client_launch(&front.base, &format!("git/{spec}"), &token).await;
    assert_eq!(
        phases.last().map(String::as_str),
        Some("ready"),
        "{phases:?}"
    );
    for (name, member) in &members {
        let launched = member.launcher.launches.load(Ordering::SeqCst);
        assert_eq!(launched, usize::from(*name == target.as_str()), "{name}");
    }

    // A token of another federation (another key) is refused by the member.
    let stranger_data = tempfile::tempdir().unwrap();
    let mut stranger = config(stranger_data.path(), None);
    let key = stranger_data.path().join("build-token-secret");
    std::fs::write(&key, "ff".repeat(32)).unwrap();
    stranger.web.build_token_secret = Some(SecretSource::File(key));
    let stranger = Service::start(stranger, None, None).await;
    let foreign = page_build_token(&stranger.base, &spec).await;
    let refused = sse(&format!(
        "http://127.0.0.1:{}/build/git/{spec}?build_token={foreign}",
        ports[target.as_str()]
    ))
    .await;
    assert_eq!(refused.last()["status_code"], 403, "{}", refused.raw);

    // c dies: within a check period (0.5 s) and a request's deadline (1 s),
    // with slack for a busy CI machine, its repositories go to the next
    // member in their rendezvous order, and only those move.
    let gone = members.get_mut("c").unwrap().service.take();
    drop(gone);
    active(&front.base, &["a", "b"], Duration::from_secs(3)).await;
    for (i, was) in &placed {
        let now = sent_to(
            &client,
            &front.base,
            &format!("gh/lab/repo-{i}/main"),
            &ports,
        )
        .await;
        if was == "c" {
            let key = placement::key("gh", &format!("lab/repo-{i}/main"), false, true);
            let order = placement::ranked(&key, WEIGHTS);
            let next = order.iter().find(|m| **m != "c").unwrap();
            assert_eq!(now.as_str(), *next, "repo-{i}");
        } else {
            assert_eq!(&now, was, "repo-{i} stays");
        }
    }
    // It comes back after the failed period (a new process, a new data
    // directory), and so do its repositories.
    let c = members.get_mut("c").unwrap();
    c.data = tempfile::tempdir().unwrap();
    c.service = Some(start_member("c", &ports, &registry, &c.data, &c.launcher).await);
    active(&front.base, &["a", "b", "c"], Duration::from_secs(8)).await;
    for (i, was) in placed.iter().filter(|(i, _)| *i % 10 == 0) {
        let now = sent_to(
            &client,
            &front.base,
            &format!("gh/lab/repo-{i}/main"),
            &ports,
        )
        .await;
        assert_eq!(&now, was, "repo-{i}");
    }
    let metrics = front.metrics().await;
    assert!(
        metrics.contains(r#"federation_health{member="c",reason=""} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"federation_redirect_count{member="c",reason="rendezvous"}"#),
        "{metrics}"
    );
}

/// Runs upstream's `BinderRepository` in Chromium, on a page of the front's
/// origin (as upstream's own page runs it), for `spec`; the phases it saw.
async fn js_client_launch(front: &str, spec: &str, token: &str) -> Vec<String> {
    use base64::Engine as _;
    let bundle = support::run_script("js-client.sh")["BINDERHUB_CLIENT"].clone();
    let module = base64::engine::general_purpose::STANDARD.encode(std::fs::read(bundle).unwrap());
    let (front, spec, token) = (front.to_string(), spec.to_string(), token.to_string());
    let phases = tokio::task::spawn_blocking(move || {
        let mut b = Browser::start();
        b.bypass_csp();
        b.navigate(&format!("{front}/about"));
        b.wait_for("document.readyState", Duration::from_secs(20), |v| v == "complete");
        b.eval(&format!(
            "window.phases = []; window.done = false;
             (async () => {{
               try {{
                 const {{ BinderRepository }} = await import('data:text/javascript;base64,{module}');
                 const repo = new BinderRepository('{spec}', new URL('{front}/build/'), {{ buildToken: '{token}' }});
                 for await (const line of repo.fetch()) {{
                   window.phases.push(line.phase);
                   if (line.phase === 'ready' || line.phase === 'failed') {{ repo.close(); break; }}
                 }}
               }} catch (e) {{ window.phases.push('error: ' + e); }}
               window.done = true;
             }})(); true"
        ));
        b.wait_for("window.done", Duration::from_secs(60), |v| v == true);
        b.eval("window.phases")
    })
    .await
    .unwrap();
    phases
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap_or_default().to_string())
        .collect()
}

/// A member that answers checks as told, counting them.
#[derive(Default)]
struct Fake {
    versions: AtomicUsize,
    health: AtomicUsize,
    /// 0: healthy; 1: over its quota; 2: its hub down.
    state: AtomicU64,
}

async fn fake_member(fake: Arc<Fake>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (v, h) = (fake.clone(), fake);
    let app = axum::Router::new()
        .route(
            "/versions",
            axum::routing::get(move || {
                v.versions.fetch_add(1, Ordering::SeqCst);
                async { axum::Json(json!({ "binderhub": "x", "builder_info": {} })) }
            }),
        )
        .route(
            "/health",
            axum::routing::get(move || {
                h.health.fetch_add(1, Ordering::SeqCst);
                let state = h.state.load(Ordering::SeqCst);
                async move {
                    let total = if state == 1 { 120 } else { 10 };
                    axum::Json(json!({ "ok": state != 2, "checks": [
                        { "service": "JupyterHub API", "ok": state != 2 },
                        { "service": "Pod quota", "total_pods": total, "build_pods": 0, "user_pods": total,
                          "quota": 100, "ok": total <= 100, "_ignore_failure": true },
                    ]}))
                }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

/// mybinder.org's redirector checks a healthy member five times a period,
/// takes one over its (informational) pod quota out for the whole failed
/// period, and crashes at start on a null member entry. Bindery checks
/// once a period, takes a full member out only until it has room again,
/// and refuses a member without a URL with a message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redirectors_known_faults_are_not_bindery_s() {
    let fake = Arc::new(Fake::default());
    let port = fake_member(fake.clone()).await;
    let data = tempfile::tempdir().unwrap();
    let mut c = config(data.path(), None);
    c.federation = FederationConfig {
        members: [(
            "x".to_string(),
            MemberConfig {
                url: format!("http://127.0.0.1:{port}/").parse().unwrap(),
                weight: 1.0,
                prime: true,
            },
        )]
        .into(),
        check: CheckConfig {
            failed_period_secs: 60.0,
            retries: 5,
            ..fast_checks()
        },
        ..FederationConfig::default()
    };
    shared_secret(&mut c);
    c.plugins.get_mut("gh").unwrap().enabled = true;
    let front = Service::start(c, None, None).await;

    // Once a period: about 2 s at 0.5 s ± 5% is 4 or 5 checks, each a
    // `/versions` and a `/health` (upstream: 5 of each, every period).
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let (versions, health) = (
        fake.versions.load(Ordering::SeqCst),
        fake.health.load(Ordering::SeqCst),
    );
    assert!(
        (4..=6).contains(&versions),
        "{versions} version checks in 2 s"
    );
    assert!(health.abs_diff(versions) <= 1, "{health} health checks");

    // Over its quota it leaves the set, and is back within a period of
    // having room again, not after the 60 s failed period.
    fake.state.store(1, Ordering::SeqCst);
    active(&front.base, &[], Duration::from_secs(4)).await;
    let refused = sse(&format!("{}/build/gh/lab/repo/main", front.base)).await;
    assert_eq!(refused.last()["phase"], "failed");
    assert!(
        refused.last()["message"]
            .as_str()
            .unwrap()
            .contains("No member of this Binder federation can take launches right now"),
        "{}",
        refused.raw
    );
    fake.state.store(0, Ordering::SeqCst);
    active(&front.base, &["x"], Duration::from_secs(4)).await;
    let metrics = front.metrics().await;
    assert!(
        metrics.contains(r#"federation_health{member="x",reason=""} 1"#),
        "{metrics}"
    );

    // A failing hub is a failure: out, for the failed period.
    fake.state.store(2, Ordering::SeqCst);
    active(&front.base, &[], Duration::from_secs(4)).await;
    fake.state.store(0, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    active(&front.base, &[], Duration::ZERO).await;
    let metrics = front.metrics().await;
    assert!(
        metrics.contains(r#"federation_health{member="x",reason="JupyterHub API"} 0"#),
        "{metrics}"
    );

    // A member entry without a URL (upstream: a null entry) is refused
    // with the key that is wrong.
    let file = data.path().join("bindery.toml");
    std::fs::write(&file, "[federation.members.x]\nweight = 1\n").unwrap();
    let e = Config::check(&file).unwrap_err().to_string();
    assert!(e.contains("url") && e.contains("federation"), "{e}");
}
