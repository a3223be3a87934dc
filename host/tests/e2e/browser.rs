//! The launch page in a real headless Chromium: it opens `/build` with its
//! build token, shows the log as it arrives, and on `ready` sends the browser
//! to the server with `?token=` and the path the link asked for. A screenshot
//! of the page mid-build is kept as a test artifact.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::GitDaemon;
use support::browser::Browser;
use support::registry::OciRegistry;
use support::service::{Service, TestBuilder, TestLauncher, config, git_spec};

/// Where the launcher's "server" lives: records the path and query the browser lands on.
async fn landing() -> (String, Arc<Mutex<Vec<String>>>) {
    let hits = Arc::new(Mutex::new(Vec::new()));
    let seen = hits.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push(uri.to_string());
            axum::response::Html(
                "<html><body><h1 id=landed>Landed on the server</h1></body></html>",
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_launch_page_shows_the_log_and_lands_on_the_server() {
    let (daemon, _) = GitDaemon::with_repo("repo.git");
    let registry = OciRegistry::start(None);
    let data = tempfile::tempdir().unwrap();
    let (hub, hits) = landing().await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let builder = Arc::new(TestBuilder {
        gate: Some(gate.clone()),
        ..TestBuilder::new(&registry, 6)
    });
    let mut c = config(data.path(), Some(&registry));
    c.web.rate_limit.limit = 0;
    let s = Service::start(c, Some(builder), Some(Arc::new(TestLauncher::new(&hub)))).await;
    let spec = git_spec(&format!("git://127.0.0.1:{}/repo.git", daemon.port), "main");
    let page = format!(
        "{}/v2/git/{spec}?labpath=notebooks/intro%20one.ipynb",
        s.base
    );
    let artifacts = support::test_target_dir()
        .parent()
        .unwrap()
        .join("test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();

    let browser = tokio::task::spawn_blocking(move || {
        let mut b = Browser::start();
        b.navigate(&page);
        // Mid-build: the log lines arrive on the page while the build waits.
        let log = b.wait_for(
            "document.getElementById('log')?.textContent",
            Duration::from_secs(20),
            |v| v.as_str().is_some_and(|t| t.contains("plain line 5")),
        );
        assert!(
            log.as_str()
                .unwrap()
                .starts_with("Waiting for build to start...\nStep 0\nplain line 1\n"),
            "{log}"
        );
        std::fs::write(artifacts.join("launch-page.png"), b.screenshot()).unwrap();
        b
    })
    .await
    .unwrap();
    gate.add_permits(1);
    tokio::task::spawn_blocking(move || {
        let mut b = browser;
        b.wait_for(
            "document.getElementById('landed')?.textContent",
            Duration::from_secs(20),
            |v| v == "Landed on the server",
        );
        let href = b.eval("location.href");
        assert!(
            href.as_str()
                .unwrap()
                .ends_with("/doc/tree/notebooks/intro%20one.ipynb?token=token-0"),
            "{href}"
        );
    })
    .await
    .unwrap();
    let hits = hits.lock().unwrap().clone();
    assert_eq!(
        hits[0],
        "/user/test-0/doc/tree/notebooks/intro%20one.ipynb?token=token-0"
    );
}
