//! The BinderHub-compatible HTTP surface, route by route, against a real git
//! daemon (resolution) and a real OCI registry (image look-ups and pushes).
//! The build executor and launcher are test implementations of their traits
//! (see support::service); their real implementations are tested on their own.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bindery::config::{BanNetwork, Config};
use serde_json::Value;
use support::GitDaemon;
use support::registry::OciRegistry;
use support::service::{
    OpenStream, Service, TestBuilder, TestLauncher, config, git_spec, page_build_token, sse,
    sse_with,
};
use tokio::sync::Semaphore;

struct World {
    _daemon: GitDaemon,
    registry: OciRegistry,
    sha: String,
    url: String,
    data: tempfile::TempDir,
}

fn world() -> World {
    let (daemon, sha) = GitDaemon::with_repo("repo.git");
    let url = format!("git://127.0.0.1:{}/repo.git", daemon.port);
    World {
        _daemon: daemon,
        registry: OciRegistry::start(None),
        sha,
        url,
        data: tempfile::tempdir().unwrap(),
    }
}

impl World {
    fn config(&self) -> Config {
        let mut c = config(self.data.path(), Some(&self.registry));
        c.web.rate_limit.limit = 0;
        c
    }
}

async fn service(
    w: &World,
    config: Config,
    builder: Arc<TestBuilder>,
) -> (Service, Arc<TestLauncher>) {
    let launcher = Arc::new(TestLauncher::new("http://hub.test"));
    let s = Service::start(config, Some(builder), Some(launcher.clone())).await;
    let _ = w;
    (s, launcher)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_streams_from_resolution_to_ready_and_the_next_finds_the_image() {
    let w = world();
    let builder = Arc::new(TestBuilder::new(&w.registry, 4));
    let (s, launcher) = service(&w, w.config(), builder.clone()).await;
    let spec = git_spec(&w.url, "main");

    let first = sse(&format!("{}/build/git/{spec}", s.base)).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.headers["content-type"], "text/event-stream");
    assert_eq!(first.headers["cache-control"], "no-cache");
    assert!(
        first.raw.starts_with(
            "data: {\"phase\":\"waiting\",\"message\":\"Waiting for build to start...\\n\"}\n\n"
        ),
        "{}",
        first.raw
    );
    assert_eq!(
        first.phases(),
        [
            "waiting",
            "building",
            "unknown",
            "building",
            "unknown",
            "pushing",
            "built",
            "launching",
            "launching",
            "launching",
            "ready"
        ]
    );
    assert_eq!(
        first.events[1].to_string(),
        r#"{"phase":"building","message":"Step 0\n"}"#,
        "repo2docker lines pass through"
    );
    assert_eq!(first.events[2]["message"], "plain line 1\n");
    let image = first.events[6]["imageName"].as_str().unwrap().to_string();
    assert_eq!(
        image,
        format!(
            "{}/binder-{}:{}",
            w.registry.host(),
            bindery::registry::naming::safe_build_slug(&w.url, 255 - 22 - 7, 6),
            w.sha
        )
    );
    assert_eq!(first.events[6]["message"], "Built image, launching...\n");
    assert_eq!(first.events[7]["message"], "Launching server...\n");
    assert_eq!(first.events[8]["message"], "Server requested\n");
    let ready = first.last();
    let expected_keys = [
        "phase",
        "message",
        "url",
        "token",
        "image",
        "repo_url",
        "binder_ref_url",
        "binder_launch_host",
        "binder_request",
        "binder_persistent_request",
        "binder_client_ip",
    ];
    assert_eq!(
        ready.as_object().unwrap().keys().collect::<Vec<_>>(),
        expected_keys
    );
    assert_eq!(
        ready["message"],
        "server running at http://hub.test/user/test-0/\n"
    );
    assert_eq!(ready["token"], "token-0");
    assert_eq!(ready["image"], image.as_str());
    assert_eq!(ready["repo_url"], w.url.as_str());
    assert_eq!(ready["binder_request"], format!("v2/git/{spec}"));
    assert_eq!(
        ready["binder_persistent_request"],
        format!("v2/git/{}", git_spec(&w.url, &w.sha))
    );
    assert_eq!(ready["binder_client_ip"], "127.0.0.1");
    assert_eq!(ready["binder_launch_host"], format!("{}/", s.base));
    assert_eq!(launcher.last.lock().unwrap().as_ref().unwrap().image, image);
    assert_eq!(
        s.image_digest(&image)
            .await
            .map(|d| d.starts_with("sha256:")),
        Some(true),
        "pushed"
    );

    let second = sse(&format!("{}/build/git/{spec}", s.base)).await;
    assert_eq!(
        second.phases(),
        ["built", "launching", "launching", "launching", "ready"]
    );
    assert_eq!(
        second.events[0].to_string(),
        format!(
            r#"{{"phase":"built","imageName":"{image}","message":"Found built image, launching...\n"}}"#
        )
    );
    assert_eq!(builder.count(), 1);

    // Behind a trusted proxy (loopback is trusted by default) its headers are believed.
    let proxied = sse_with(
        &format!("{}/build/git/{spec}", s.base),
        &[
            ("accept", "text/event-stream"),
            ("x-forwarded-for", "198.51.100.1, 203.0.113.9"),
            ("x-forwarded-proto", "https"),
        ],
    )
    .await;
    assert_eq!(proxied.last()["binder_client_ip"], "203.0.113.9");
    assert_eq!(
        proxied.last()["binder_launch_host"],
        format!("https://{}/", s.base.trim_start_matches("http://"))
    );

    let metrics = s.metrics().await;
    assert!(
        metrics.contains(&format!(
            r#"binderhub_build_count_total{{status="success",provider="git",repo="{}"}} 1"#,
            w.url
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"binderhub_launch_count_total{status="success",provider="git""#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"bindery_cache_lookups_total{cache="refs",result="hit"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("binderhub_inprogress_builds 0"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_failed_events_with_upstream_wording() {
    let w = world();
    let mut c = w.config();
    c.plugins.get_mut("git").unwrap().banned_specs = vec!["^git%3A%2F%2F127.0.0.1%3A1%2F".into()];
    let (s, _) = service(&w, c, Arc::new(TestBuilder::new(&w.registry, 0))).await;
    let spec = git_spec(&w.url, "main");
    let failed = |status: Option<u64>, message: &str| {
        let mut v = serde_json::json!({ "phase": "failed" });
        if let Some(s) = status {
            v["status_code"] = s.into();
        }
        v["message"] = message.into();
        v
    };
    // (path, request headers, the one event answered)
    type Case<'a> = (String, &'a [(&'a str, &'a str)], Value);
    let cases: Vec<Case> = vec![
        (
            format!("/build/git/{spec}"),
            &[],
            failed(Some(400), "Missing Accept header: text/event-stream\n"),
        ),
        (
            format!("/build/git/{spec}"),
            &[("accept", "text/event-stream, */*")],
            failed(Some(400), "Missing Accept header: text/event-stream\n"),
        ),
        (
            "/build/nope/a/b".into(),
            &[("accept", "text/event-stream")],
            failed(Some(404), "No provider found for prefix nope\n"),
        ),
        (
            format!("/build/git/{spec}?build_only=true"),
            &[("accept", "text/event-stream")],
            failed(
                Some(400),
                "Building but not launching is not permitted when the API only mode was not enabled.\n",
            ),
        ),
        (
            format!("/build/git/{spec}?build_token=forged"),
            &[("accept", "text/event-stream")],
            failed(Some(403), "Invalid build token\n"),
        ),
        (
            format!("/build/git/{}", git_spec("git://127.0.0.1:1/x.git", "main")),
            &[("accept", "text/event-stream")],
            failed(
                None,
                &format!(
                    "Sorry, {} is not allowed to launch. Please contact admins for more info!",
                    git_spec("git://127.0.0.1:1/x.git", "main")
                ),
            ),
        ),
        (
            format!("/build/git/{}", git_spec(&w.url, "no-such-branch")),
            &[("accept", "text/event-stream;q=0.9")],
            failed(
                None,
                &format!(
                    "Could not resolve ref for git:{}. Double check your URL and that your repo is public. no-such-branch is not a branch or tag of {}\n",
                    git_spec(&w.url, "no-such-branch"),
                    w.url
                ),
            ),
        ),
    ];
    for (path, headers, expected) in cases {
        let got = sse_with(&format!("{}{path}", s.base), headers).await;
        assert_eq!(got.status, 200, "{path}");
        assert_eq!(got.headers["content-type"], "text/event-stream", "{path}");
        assert_eq!(got.events.len(), 1, "{path}: {}", got.raw);
        if expected["message"]
            .as_str()
            .unwrap()
            .contains("no-such-branch is not")
        {
            // The hint is the provider's; the sentence before it is upstream's.
            let m = got.last()["message"].as_str().unwrap();
            assert!(
                m.starts_with(&expected["message"].as_str().unwrap()[..100]),
                "{path}: {m}"
            );
            assert!(m.ends_with('\n'));
        } else {
            assert_eq!(got.last(), &expected, "{path}");
        }
    }
    // A malformed spec is the provider's to judge, in upstream's frame.
    let got = sse(&format!("{}/build/git/%ZZnot-a-url/main", s.base)).await;
    let m = got.last()["message"].as_str().unwrap();
    assert!(
        m.starts_with("Error resolving ref for git:%ZZnot-a-url/main: "),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_counts_per_address_and_a_build_token_skips_it() {
    let w = world();
    let mut c = w.config();
    c.web.rate_limit.limit = 3;
    let (s, _) = service(&w, c, Arc::new(TestBuilder::new(&w.registry, 0))).await;
    let url = format!("{}/build/git/{}", s.base, git_spec(&w.url, "main"));
    // Loading the /v2 page counts as a launch; the token it carries is spent below.
    let spec = git_spec(&w.url, "main");
    let token = page_build_token(&s.base, &spec).await;
    for remaining in ["1", "0"] {
        let ok = sse(&url).await;
        assert_eq!(ok.headers["x-ratelimit-remaining"], remaining);
        assert_eq!(ok.headers["x-ratelimit-limit"], "3");
        let reset: u64 = ok.headers["x-ratelimit-reset"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(reset > 1_700_000_000);
    }
    let refused = sse(&url).await;
    let m = refused.last()["message"].as_str().unwrap();
    assert_eq!(refused.last()["status_code"], 429);
    assert!(
        m.starts_with("Rate limit exceeded. Try again in ") && m.ends_with(" seconds.\n"),
        "{m}"
    );

    // The /v2 page's token lets its own request through.
    let with_token = sse(&format!("{url}?build_token={token}")).await;
    assert_eq!(with_token.last()["phase"], "ready", "{}", with_token.raw);
    assert!(with_token.headers.get("x-ratelimit-remaining").is_none());
    // A token for another spec is refused.
    let other = format!(
        "{}/build/git/{}?build_token={token}",
        s.base,
        git_spec(&w.url, "HEAD")
    );
    assert_eq!(sse(&other).await.last()["message"], "Invalid build token\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_share_one_build_and_late_joiners_get_the_whole_log() {
    let w = world();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let builder = Arc::new(TestBuilder {
        gate: Some(gate.clone()),
        ..TestBuilder::new(&w.registry, 20)
    });
    let (s, _) = service(&w, w.config(), builder.clone()).await;
    let url = format!("{}/build/git/{}", s.base, git_spec(&w.url, "main"));

    let mut clients = Vec::new();
    for _ in 0..25 {
        let u = url.clone();
        clients.push(tokio::spawn(async move { sse(&u).await }));
    }
    // A client that leaves mid-build stops nothing.
    let u = url.clone();
    let quitter = tokio::spawn(async move { sse(&u).await });
    while s.state.pipeline.flights.in_flight() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    quitter.abort();
    for _ in 0..25 {
        let u = url.clone();
        clients.push(tokio::spawn(async move { sse(&u).await }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    gate.add_permits(1);
    let mut images = std::collections::HashSet::new();
    for c in clients {
        let stream = c.await.unwrap();
        assert_eq!(stream.last()["phase"], "ready", "{}", stream.raw);
        assert_eq!(
            stream
                .events
                .iter()
                .filter(|e| e["phase"] == "building" || e["phase"] == "unknown")
                .count(),
            20,
            "every client sees every log line"
        );
        images.insert(stream.last()["image"].as_str().unwrap().to_string());
    }
    assert_eq!(builder.count(), 1, "one build for 50 clients");
    assert_eq!(images.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_build_fails_every_watcher_and_closes_the_stream() {
    let w = world();
    let builder = Arc::new(TestBuilder {
        fail: true,
        ..TestBuilder::new(&w.registry, 2)
    });
    let (s, _) = service(&w, w.config(), builder).await;
    let got = sse(&format!(
        "{}/build/git/{}",
        s.base,
        git_spec(&w.url, "main")
    ))
    .await;
    // repo2docker's own `failed` line is terminal: the stream ends there.
    assert_eq!(got.phases(), ["waiting", "building", "unknown", "failed"]);
    assert_eq!(got.last()["message"], "Step 3 failed\n");
    let metrics = s.metrics().await;
    assert!(
        metrics.contains(r#"binderhub_build_count_total{status="failure""#),
        "{metrics}"
    );
}

/// Waits until `launcher` has been asked for `n` launches.
async fn launched(launcher: &TestLauncher, n: usize) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while launcher.launches.load(Ordering::SeqCst) < n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{n} launches did not start"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_overlapped_with_the_push_shows_after_it_and_a_failed_push_discards_its_server() {
    // The executor says the image can be run as its push starts; the push
    // waits for the test, then fails.
    let w = world();
    let push = Arc::new(Semaphore::new(0));
    let builder = Arc::new(TestBuilder {
        runnable_early: true,
        push_gate: Some(push.clone()),
        push_fails: true,
        ..TestBuilder::new(&w.registry, 2)
    });
    let (s, launcher) = service(&w, w.config(), builder).await;
    let url = format!("{}/build/git/{}", s.base, git_spec(&w.url, "main"));
    let mut stream = OpenStream::open(&url, &[("accept", "text/event-stream")]).await;
    stream.until("Pushing image", Duration::from_secs(30)).await;
    launched(&launcher, 1).await;
    let so_far = stream.read_for(Duration::from_millis(300)).await;
    assert!(
        !so_far.contains("launching") && !so_far.contains("built"),
        "the launch's events wait for the push: {so_far}"
    );
    push.add_permits(1);
    let got = stream.end().await;
    assert_eq!(
        got.phases(),
        ["waiting", "building", "unknown", "pushing", "failed"]
    );
    assert_eq!(
        got.last()["message"],
        "The push failed: the registry went away\n"
    );
    assert_eq!(
        *launcher.discarded.lock().unwrap(),
        ["test-0"],
        "the server started during the push is removed"
    );
    let image = s.state.pipeline.registry.image_name(
        &bindery::registry::naming::safe_build_slug(&w.url, 255 - 22 - 7, 6),
        &w.sha,
    );
    assert_eq!(s.image_digest(&image).await, None, "no image is recorded");
    assert_ne!(
        s.state.pipeline.flights.record(&image).map(|r| r.state),
        Some(bindery::cache::BuildState::Built)
    );

    // A push that succeeds: the server started during it is the client's.
    let w = world();
    let push = Arc::new(Semaphore::new(0));
    let builder = Arc::new(TestBuilder {
        runnable_early: true,
        push_gate: Some(push.clone()),
        ..TestBuilder::new(&w.registry, 2)
    });
    let (s, launcher) = service(&w, w.config(), builder.clone()).await;
    let url = format!("{}/build/git/{}", s.base, git_spec(&w.url, "main"));
    let mut stream = OpenStream::open(&url, &[("accept", "text/event-stream")]).await;
    stream.until("Pushing image", Duration::from_secs(30)).await;
    launched(&launcher, 1).await;
    // Another client joins the build during the push, and launches too.
    let joined = tokio::spawn({
        let url = url.clone();
        async move { sse(&url).await }
    });
    launched(&launcher, 2).await;
    push.add_permits(1);
    let got = stream.end().await;
    assert_eq!(
        got.phases(),
        [
            "waiting",
            "building",
            "unknown",
            "pushing",
            "built",
            "launching",
            "launching",
            "launching",
            "ready"
        ]
    );
    assert_eq!(got.events[4]["message"], "Built image, launching...\n");
    let other = joined.await.unwrap();
    assert_eq!(other.last()["phase"], "ready", "{}", other.raw);
    assert_ne!(other.last()["url"], got.last()["url"]);
    assert!(launcher.discarded.lock().unwrap().is_empty());
    let image = got.events[4]["imageName"].as_str().unwrap();
    assert!(s.image_digest(image).await.is_some());
    assert_eq!(builder.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_is_down_fails_the_launch_clearly_and_health_says_so() {
    let mut w = world();
    w.registry.stop();
    let (s, _) = service(&w, w.config(), Arc::new(TestBuilder::new(&w.registry, 0))).await;
    let got = sse(&format!(
        "{}/build/git/{}",
        s.base,
        git_spec(&w.url, "main")
    ))
    .await;
    let m = got.last()["message"].as_str().unwrap();
    assert_eq!(got.last()["phase"], "failed");
    assert!(
        m.starts_with("Cannot check whether ")
            && m.contains(&format!(
                "the image registry at {} cannot be reached",
                w.registry.url()
            )),
        "{m}"
    );
    let health = reqwest::get(format!("{}/health", s.base)).await.unwrap();
    assert_eq!(health.status(), 503);
    let body: Value = health.json().await.unwrap();
    assert_eq!(body["ok"], false);
    assert_eq!(
        body["checks"][0],
        serde_json::json!({ "service": "Docker registry", "ok": false })
    );
    assert_eq!(
        body["checks"][1],
        serde_json::json!({ "service": "JupyterHub API", "ok": true })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_redirects_badges_cors_and_bans() {
    let w = world();
    let mut c = w.config();
    c.web.cors_allow_origin = Some("*".into());
    let (s, _) = service(&w, c, Arc::new(TestBuilder::new(&w.registry, 0))).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |path: &str| client.get(format!("{}{path}", s.base)).send();

    let home = get("/").await.unwrap();
    assert_eq!(home.status(), 200);
    assert_eq!(home.headers()["access-control-allow-origin"], "*");
    assert_eq!(
        home.headers()["access-control-allow-headers"],
        "cache-control"
    );
    let policy = home.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        policy.starts_with("default-src 'none'; script-src 'sha256-"),
        "{policy}"
    );
    let html = home.text().await.unwrap();
    assert!(
        html.contains("<script>window.pageConfig = {\"baseUrl\":\"/\""),
        "{html}"
    );
    assert!(!html.contains("\"buildToken\":"));
    assert_eq!(
        get("/about").await.unwrap().status(),
        200,
        "client-side routes"
    );

    let launch = get("/v2/git/x%3C%2Fscript%3E/main")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(launch.contains("\"buildToken\":\""));
    // Link previews, for crawlers that run no script: the launch, escaped.
    assert!(
        launch.contains(
            "<meta property=\"og:title\" content=\"Git repository: x&lt;/script&gt;/main\">"
        ),
        "{launch}"
    );
    assert!(launch.contains(&format!(
        "<meta property=\"og:image\" content=\"{}/logo_social.png\">",
        s.base
    )));
    assert_eq!(get("/v2/nope/a/b").await.unwrap().status(), 404);

    let legacy = get("/repo/binder-examples/requirements/notebooks/index.ipynb/")
        .await
        .unwrap();
    assert_eq!(legacy.status(), 302);
    assert_eq!(
        legacy.headers()["location"],
        "/v2/gh/binder-examples/requirements/master?urlpath=%2Fnotebooks%2Findex.ipynb%2F"
    );
    assert_eq!(
        get("/repo/a/b").await.unwrap().headers()["location"],
        "/v2/gh/a/b/master"
    );

    for badge in ["/badge.svg", "/badge_logo.svg", "/assets/images/badge.svg"] {
        let r = get(badge).await.unwrap();
        assert_eq!(r.headers()["content-type"], "image/svg+xml", "{badge}");
        assert!(r.text().await.unwrap().starts_with("<svg"));
    }
    let png = get("/logo_social.png").await.unwrap();
    assert_eq!(png.headers()["content-type"], "image/png");
    assert!(png.bytes().await.unwrap().starts_with(b"\x89PNG"));
    let options = client
        .request(reqwest::Method::OPTIONS, format!("{}/build/git/x", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(options.status(), 200);
    assert!(options.text().await.unwrap().is_empty());

    let versions: Value = get("/versions").await.unwrap().json().await.unwrap();
    assert_eq!(versions["binderhub"], bindery::VERSION);
    assert_eq!(
        versions["builder_info"]["build_image"],
        support::service::TEST_BUILDER_IMAGE
    );
    let providers: Value = get("/api/repoproviders")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(providers[0]["id"], "git");

    drop(s);
    let mut c = w.config();
    c.web.ban_networks = vec![BanNetwork {
        network: "127.0.0.0/8".parse().unwrap(),
        label: "the test network".into(),
    }];
    let (s, _) = service(&w, c, Arc::new(TestBuilder::new(&w.registry, 0))).await;
    let r = client.get(format!("{}/", s.base)).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.text().await.unwrap(),
        "Requests from the test network are not allowed"
    );
    let got = sse(&format!(
        "{}/build/git/{}",
        s.base,
        git_spec(&w.url, "main")
    ))
    .await;
    assert_eq!(
        got.last()["message"],
        "Requests from the test network are not allowed\n"
    );
    assert_eq!(got.last()["status_code"], 403);
    assert_eq!(
        client
            .get(format!("{}/health", s.base))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "health is never banned"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_only_mode_under_a_base_url_builds_without_launching() {
    let w = world();
    let mut c = w.config();
    c.web.api_only = true;
    c.web.base_url = "/binder/".into();
    let builder = Arc::new(TestBuilder::new(&w.registry, 1));
    let (s, launcher) = service(&w, c, builder.clone()).await;
    let url = format!(
        "{}/binder/build/git/{}?build_only=true",
        s.base,
        git_spec(&w.url, "main")
    );
    let built = sse(&url).await;
    assert_eq!(built.phases(), ["waiting", "building", "pushing", "ready"]);
    assert_eq!(built.last()["message"], "Done! Image built\n");
    let found = sse(&url).await;
    assert_eq!(found.events.len(), 1);
    assert_eq!(found.last()["message"], "Done! Found built image\n");
    assert_eq!(
        launcher.launches.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    assert_eq!(
        reqwest::get(format!("{}/binder/", s.base))
            .await
            .unwrap()
            .status(),
        404,
        "no pages in API-only mode"
    );
    assert_eq!(
        reqwest::get(format!("{}/binder/versions", s.base))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        reqwest::get(format!("{}/versions", s.base))
            .await
            .unwrap()
            .status(),
        404,
        "outside base_url"
    );
}

/// What a host that stopped mid-build leaves in its `builds` tree.
fn leave_running_build(w: &World, image: &str) {
    let builds = bindery::cache::Cache::open(w.data.path())
        .unwrap()
        .builds()
        .unwrap();
    let tail = [r#"{"phase":"building","message":"Step 1 (before the restart)\n"}"#.to_string()];
    builds
        .put(&bindery::cache::BuildRecord {
            image: image.into(),
            executor: "test".into(),
            handle: Some("build-pod".into()),
            repo_url: w.url.clone(),
            resolved_ref: w.sha.clone(),
            state: bindery::cache::BuildState::Running,
            started_at_ms: 1,
            updated_at_ms: 1,
            log_tail: tail.to_vec(),
        })
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_in_flight_at_a_restart_are_watched_again_or_rebuilt() {
    let w = world();
    let url_path = format!("/build/git/{}", git_spec(&w.url, "main"));
    let image = format!(
        "{}/binder-{}:{}",
        w.registry.host(),
        bindery::registry::naming::safe_build_slug(&w.url, 255 - 22 - 7, 6),
        w.sha
    );

    leave_running_build(&w, &image);
    let again = Arc::new(TestBuilder {
        can_reattach: true,
        ..TestBuilder::new(&w.registry, 1)
    });
    let (s, _) = service(&w, w.config(), again.clone()).await;
    let got = sse(&format!("{}{url_path}", s.base)).await;
    assert_eq!(got.last()["phase"], "ready", "{}", got.raw);
    assert_eq!(again.count(), 0, "no new build");
    drop(s);

    // An executor that cannot watch it again: the record is marked lost, and
    // the next request builds afresh.
    let w = world();
    let image = format!(
        "{}/binder-{}:{}",
        w.registry.host(),
        bindery::registry::naming::safe_build_slug(&w.url, 255 - 22 - 7, 6),
        w.sha
    );
    leave_running_build(&w, &image);
    let fresh = Arc::new(TestBuilder::new(&w.registry, 1));
    let (s, _) = service(&w, w.config(), fresh.clone()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let got = sse(&format!(
        "{}/build/git/{}",
        s.base,
        git_spec(&w.url, "main")
    ))
    .await;
    assert_eq!(got.last()["phase"], "ready", "{}", got.raw);
    assert_eq!(fresh.count(), 1, "rebuilt");
    let record = s.state.pipeline.flights.record(&image).unwrap();
    assert_eq!(record.state, bindery::cache::BuildState::Built);
    assert_eq!(record.executor, "test");
    assert_eq!(
        record.log_tail.last().unwrap(),
        r#"{"phase": "pushing", "message": "Pushing image\n"}"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_joins_a_watched_build_after_a_restart_gets_the_tail_then_the_live_log() {
    let w = world();
    let image = format!(
        "{}/binder-{}:{}",
        w.registry.host(),
        bindery::registry::naming::safe_build_slug(&w.url, 255 - 22 - 7, 6),
        w.sha
    );
    leave_running_build(&w, &image);
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let again = Arc::new(TestBuilder {
        can_reattach: true,
        gate: Some(gate.clone()),
        ..TestBuilder::new(&w.registry, 2)
    });
    let (s, _) = service(&w, w.config(), again.clone()).await;
    assert_eq!(
        s.state.pipeline.flights.in_flight(),
        1,
        "the recorded build is being watched"
    );
    let url = format!("{}/build/git/{}", s.base, git_spec(&w.url, "main"));
    let client = tokio::spawn(async move { sse(&url).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    gate.add_permits(1);
    let got = client.await.unwrap();
    assert_eq!(
        got.events[1]["message"], "Step 1 (before the restart)\n",
        "{}",
        got.raw
    );
    assert_eq!(got.events[2]["message"], "Step 0\n");
    assert_eq!(got.last()["phase"], "ready");
    assert_eq!(again.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_holds_back_only_itself_and_huge_headers_are_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let w = world();
    // More log than the kernel's socket buffers hold, so the slow reader really falls behind.
    let builder = Arc::new(TestBuilder::new(&w.registry, 200_000));
    let (s, _) = service(&w, w.config(), builder.clone()).await;
    let path = format!("/build/git/{}", git_spec(&w.url, "main"));
    let port = s.base.rsplit(':').next().unwrap().to_string();

    // A client that sends its request and then reads nothing for a while.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket
        .connect(format!("127.0.0.1:{port}").parse().unwrap())
        .await
        .unwrap();
    slow.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fast = sse(&format!("{}{path}", s.base)).await;
    assert_eq!(
        fast.last()["phase"],
        "ready",
        "the build and other clients are not held back"
    );
    assert_eq!(builder.count(), 1);

    let mut text = String::new();
    slow.read_to_string(&mut text).await.unwrap();
    assert!(
        text.contains("earlier log lines not shown]\\n"),
        "a reader that fell behind the kept log is told what it missed"
    );
    let last = text.rsplit("data: ").next().unwrap();
    assert!(
        last.starts_with(r#"{"phase":"ready""#),
        "the slow reader still gets the outcome: {last}"
    );

    let mut huge = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    let header = "x".repeat(1 << 20);
    let request = format!("GET /versions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {header}\r\n\r\n");
    let _ = huge.write_all(request.as_bytes()).await;
    let mut answer = String::new();
    let _ = huge.read_to_string(&mut answer).await;
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "{}",
        &answer[..answer.len().min(200)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_quota_refuses_before_any_build() {
    use bindery::launch::{LaunchError, Quota};
    let w = world();
    let builder = Arc::new(TestBuilder::new(&w.registry, 1));
    let message = format!("Too many users running {}! Try again soon.", w.url);
    let launcher = TestLauncher {
        refuse: Some(LaunchError::Quota {
            quota: Quota::Repo,
            message: message.clone(),
        }),
        ..TestLauncher::new("http://hub.test")
    };
    let s = Service::start(w.config(), Some(builder.clone()), Some(Arc::new(launcher))).await;
    let got = sse(&format!(
        "{}/build/git/{}",
        s.base,
        git_spec(&w.url, "main")
    ))
    .await;
    assert_eq!(got.events.len(), 1, "{}", got.raw);
    assert_eq!(got.last()["message"], format!("{message}\n"));
    assert_eq!(builder.count(), 0);
    let metrics = s.metrics().await;
    assert!(
        metrics.contains(r#"binderhub_launch_count_total{status="repo_quota",provider="git""#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_executor_or_a_hub_the_stream_says_which_is_missing() {
    let w = world();
    let spec = git_spec(&w.url, "main");
    let s = Service::start(w.config(), None, None).await;
    let got = sse(&format!("{}/build/git/{spec}", s.base)).await;
    let image = format!(
        "{}/binder-{}:{}",
        w.registry.host(),
        bindery::registry::naming::safe_build_slug(&w.url, 255 - 22 - 7, 6),
        w.sha
    );
    assert_eq!(
        got.last()["message"],
        format!(
            "Cannot build {image}: this Bindery has no build executor configured ([build] executor).\n"
        )
    );
    drop(s);

    let (repository, tag) = image.split_once('/').unwrap().1.split_once(':').unwrap();
    w.registry.push(repository, tag).await;
    let s = Service::start(w.config(), None, None).await;
    let got = sse(&format!("{}/build/git/{spec}", s.base)).await;
    assert_eq!(got.phases(), ["built", "failed"]);
    assert_eq!(
        got.last()["message"],
        format!(
            "{image} is built, but this Bindery has no JupyterHub configured to launch it ([hub] url).\n"
        )
    );
}
