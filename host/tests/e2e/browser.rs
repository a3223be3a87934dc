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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_in_a_link_cannot_send_the_token_elsewhere_or_run_script() {
    let (daemon, _) = GitDaemon::with_repo("repo.git");
    let registry = OciRegistry::start(None);
    let data = tempfile::tempdir().unwrap();
    let (hub, hits) = landing().await;
    let (evil, evil_hits) = landing().await;
    let mut c = config(data.path(), Some(&registry));
    c.web.rate_limit.limit = 0;
    let builder = Arc::new(TestBuilder::new(&registry, 1));
    let s = Service::start(c, Some(builder), Some(Arc::new(TestLauncher::new(&hub)))).await;
    let spec = git_spec(&format!("git://127.0.0.1:{}/repo.git", daemon.port), "main");
    let evil_host = evil.trim_start_matches("http://").to_string();
    let hostile = [
        format!("urlpath={evil}/steal"),
        format!("urlpath=//{evil_host}/steal"),
        format!("urlpath=%5C%5C{evil_host}/steal"),
        format!("urlpath=/%5C{evil_host}/steal"),
        "urlpath=javascript:document.title='pwned'".to_string(),
        "urlpath=../../hub/admin".to_string(),
        format!("labpath=../../../{evil_host}/steal"),
        format!("filepath=//{evil_host}/steal"),
    ];
    let pages: Vec<String> = hostile
        .iter()
        .map(|q| format!("{}/v2/git/{spec}?{q}", s.base))
        .collect();
    let landed = tokio::task::spawn_blocking(move || {
        let mut b = Browser::start();
        let mut landed = Vec::new();
        for page in pages {
            b.navigate(&page);
            b.wait_for(
                "document.getElementById('landed')?.textContent",
                Duration::from_secs(20),
                |v| v == "Landed on the server",
            );
            assert_ne!(b.eval("document.title"), "pwned", "{page}");
            landed.push(b.eval("location.href").as_str().unwrap().to_string());
        }
        landed
    })
    .await
    .unwrap();
    for (i, (query, href)) in hostile.iter().zip(&landed).enumerate() {
        let user = format!("{hub}/user/test-{i}/");
        assert!(href.starts_with(&user), "{query} landed on {href}");
    }
    assert!(
        evil_hits.lock().unwrap().is_empty(),
        "{:?}",
        evil_hits.lock().unwrap()
    );
    // Each landing with the token (Chromium also asks for the favicon).
    let with_token = hits
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h.contains("token="))
        .count();
    assert_eq!(with_token, hostile.len());
}
