//! Launch and cull figures. Launch overhead that is Bindery's own: a hub
//! double that answers at once records when the spawn request arrives and
//! when it sends `ready`; the client records when the `built` and `ready`
//! frames arrive; all on one clock. A loopback round trip to the same double
//! is the baseline. Then a cull pass over 1,000 servers of a paginated hub
//! double (`PaginatedHub` of the tests), every third idle: its time and the
//! requests it made. Prints; asserts nothing.
//! Run with `cargo bench -p bindery --bench launch`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use bindery::app::Builds;
use bindery::config::SecretSource;
use bindery::cull::{CullScope, Culler};
use bindery::jupyterhub::Hub;
use bindery::launch::Launcher;
use bindery::launch::hub::HubLauncher;
use bindery::metrics::Metrics;
use bindery_runtime::PluginHost;
use support::GitDaemon;
use support::hub::{PaginatedHub, every_third_idle};
use support::registry::OciRegistry;
use support::service::{Service, git_spec, median};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LAUNCHES: usize = 200;
const CULL_RUNS: usize = 5;

#[derive(Default)]
struct Times {
    spawn: HashMap<String, Instant>,
    ready: HashMap<String, Instant>,
}

type Shared = Arc<Mutex<Times>>;

/// A hub that answers at once: user created, spawn accepted, ready.
async fn instant_hub() -> (String, Shared) {
    async fn create_user() -> axum::http::StatusCode {
        axum::http::StatusCode::CREATED
    }
    async fn spawn(State(t): State<Shared>, Path(user): Path<String>) -> axum::http::StatusCode {
        t.lock().unwrap().spawn.insert(user, Instant::now());
        axum::http::StatusCode::ACCEPTED
    }
    async fn progress(State(t): State<Shared>, Path(user): Path<String>) -> String {
        t.lock().unwrap().ready.insert(user.clone(), Instant::now());
        format!(
            "data: {{\"progress\": 50, \"message\": \"Server requested\"}}\n\ndata: {{\"progress\": 100, \"ready\": true, \"message\": \"Server ready at /user/{user}/\", \"url\": \"/user/{user}/\"}}\n\n"
        )
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let times: Shared = Arc::default();
    let app = axum::Router::new()
        .route(
            "/hub/api/",
            axum::routing::get(|| async { r#"{"version": "6.1.1"}"# }),
        )
        .route(
            "/hub/api/users/{user}",
            axum::routing::post(create_user).delete(create_user),
        )
        .route("/hub/api/users/{user}/server", axum::routing::post(spawn))
        .route(
            "/hub/api/users/{user}/server/progress",
            axum::routing::get(progress),
        )
        .with_state(times.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, times)
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * 0.99).round() as usize]
}

/// Opens the launch; when the `built` and the `ready` frames arrive, and the user.
async fn timed_launch(port: u16, path: &str) -> (Instant, Instant, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let (mut seen, mut buf, mut built) = (String::new(), [0u8; 8192], None);
    loop {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "the stream ended: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        if built.is_none() && seen.contains("\"phase\":\"built\"") {
            built = Some(Instant::now());
        }
        if seen.contains("\"phase\":\"ready\"") {
            let ready = Instant::now();
            let user = seen
                .split("/user/")
                .nth(1)
                .unwrap()
                .split('/')
                .next()
                .unwrap()
                .to_string();
            return (built.unwrap(), ready, user);
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let registry = OciRegistry::start(None);
    let (daemon, sha) = GitDaemon::with_repo("repo.git");
    let repo_url = format!("git://127.0.0.1:{}/repo.git", daemon.port);
    let slug =
        bindery::registry::naming::safe_build_slug(&repo_url, 255 - registry.host().len() - 7, 6);
    registry.push(&format!("binder-{slug}"), &sha).await;
    let (hub_url, times) = instant_hub().await;
    let data = tempfile::tempdir().unwrap();
    let mut c = support::service::config(data.path(), Some(&registry));
    c.hub.url = Some(hub_url.parse().unwrap());
    std::fs::write(data.path().join("token"), "t").unwrap();
    c.hub.api_token = Some(SecretSource::File(data.path().join("token")));
    c.web.rate_limit.limit = 0;
    c.web.keepalive_secs = 3600;
    let hub = Arc::new(Hub::new(&c.hub).unwrap().unwrap());
    let launcher: Arc<dyn Launcher> = Arc::new(HubLauncher::new(hub, &c).unwrap());
    let s = Service::start_with(c, Builds::Off, Some(launcher)).await;
    let port: u16 = s.base.rsplit(':').next().unwrap().parse().unwrap();
    let path = format!("/build/git/{}", git_spec(&repo_url, &sha));

    let (mut to_spawn, mut to_ready) = (Vec::new(), Vec::new());
    for round in 0..=LAUNCHES {
        let (built, ready, user) = timed_launch(port, &path).await;
        let t = times.lock().unwrap();
        // Round 0 warms the caches (ref, image, connections) and is not counted.
        if round > 0 {
            to_spawn.push(t.spawn[&user].saturating_duration_since(built));
            to_ready.push(ready.saturating_duration_since(t.ready[&user]));
        }
    }
    let client = reqwest::Client::new();
    let mut round_trips = Vec::new();
    for _ in 0..LAUNCHES {
        let started = Instant::now();
        client
            .post(format!("{hub_url}hub/api/users/baseline"))
            .send()
            .await
            .unwrap();
        round_trips.push(started.elapsed());
    }
    println!(
        "launch overhead, {LAUNCHES} launches of a built image, hub double answering at once:"
    );
    println!(
        "  client has `built` -> hub gets the spawn request (user created first): median {:?}, p99 {:?}",
        median(to_spawn.clone()),
        p99(to_spawn)
    );
    println!(
        "  hub sends `ready` -> client has the `ready` frame: median {:?}, p99 {:?}",
        median(to_ready.clone()),
        p99(to_ready)
    );
    println!(
        "  baseline, one loopback POST to the same hub double: median {:?}",
        median(round_trips)
    );
    drop(s);

    // A cull pass over 1,000 servers, every third idle for two hours.
    let data = tempfile::tempdir().unwrap();
    let mut c = support::service::config(data.path(), None);
    c.plugins.get_mut("idle").unwrap().enabled = true;
    let plugins = PluginHost::start(&c).await.unwrap();
    let (mut passes, mut requests) = (Vec::new(), 0);
    for _ in 0..CULL_RUNS {
        let users = every_third_idle(1000, |i| format!("user-{i}"));
        let fake = PaginatedHub::start(users).await;
        c.hub.url = Some(fake.url.parse().unwrap());
        c.hub.api_token = Some(SecretSource::File(data.path().join("token")));
        std::fs::write(data.path().join("token"), "t").unwrap();
        let hub = Arc::new(Hub::new(&c.hub).unwrap().unwrap());
        let culler = Culler::new(
            hub,
            plugins.clone(),
            &c.cull,
            CullScope::of(&c.hub),
            Arc::new(Metrics::default()),
        );
        let started = Instant::now();
        let report = culler.pass().await.unwrap();
        passes.push(started.elapsed());
        requests = fake.requests.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(report.stopped, 334);
    }
    println!(
        "cull pass over 1,000 servers (334 idle: stop + delete user), concurrency {}: median {:?} over {CULL_RUNS} runs ({passes:?}), {requests} hub requests (5 pages of 200, 334 stops, 334 user deletions)",
        c.cull.concurrency,
        median(passes.clone())
    );
}
