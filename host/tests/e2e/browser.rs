//! The launch page in a real headless Chromium: it opens `/build` with its
//! build token, shows the log as it arrives, and on `ready` sends the browser
//! to the server with `?token=` and the path the link asked for. A screenshot
//! of the page mid-build is kept as a test artifact.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
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
        coloured: true,
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
        // repo2docker's colours are rendered, never shown as escape codes;
        // the phases and the tab's icon say where the launch is.
        b.wait_for(
            "document.querySelector('#log span.ansi-bold.ansi-fg-2')?.textContent",
            Duration::from_secs(20),
            |v| v == "coloured line",
        );
        assert_eq!(
            b.eval("document.getElementById('log').textContent.includes('\\u001b')"),
            false
        );
        assert_eq!(
            b.eval("document.querySelector('#phases [aria-current]')?.dataset.phase"),
            "building"
        );
        let icon = b.eval("document.getElementById('favicon').href");
        assert!(
            icon.as_str().unwrap().starts_with("data:image/svg+xml"),
            "{icon}"
        );
        std::fs::write(support::artifacts().join("launch-page.png"), b.screenshot()).unwrap();
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

/// The form: a pasted URL picks its provider (and the ref and file of a
/// forge's page); the share box gives the launch link and the Markdown and
/// reStructuredText badges, each copied by a button; everything is reached
/// and used from the keyboard; and the footer leads to the About page with
/// the operator's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_form_detects_urls_copies_badges_from_the_keyboard_and_links_the_about_page() {
    let data = tempfile::tempdir().unwrap();
    let mut c = config(data.path(), None);
    for name in ["gh", "gl"] {
        c.plugins.get_mut(name).unwrap().enabled = true;
    }
    c.web.about_message =
        "<p id=who>Run by the Example Lab.</p><p>Questions go to <a href=\"mailto:binder@example.org\">binder@example.org</a>.</p><img hidden src=x onerror=\"window.ran = 1\">".into();
    let s = Service::start(c, None, None).await;
    let base = s.base.clone();
    let (detected, focus, copied, about) = tokio::task::spawn_blocking(move || {
        let mut b = Browser::start();
        b.grant_clipboard(&base);
        b.navigate(&format!("{base}/"));
        b.wait_for(
            "document.getElementById('provider')?.options.length",
            Duration::from_secs(20),
            |v| v.as_u64().is_some_and(|n| n > 0),
        );
        let mut detected = Vec::new();
        for pasted in [
            "https://github.com/binder-examples/requirements/blob/main/index.ipynb",
            "https://gitlab.com/group/sub/project/-/tree/dev",
            "https://git.example.org/lab/notes.git",
        ] {
            detected.push(b.eval(&format!(
                "(() => {{
                   const repo = document.getElementById('repo');
                   repo.value = '{pasted}';
                   repo.dispatchEvent(new Event('input'));
                   return document.getElementById('link').textContent;
                 }})()"
            )));
        }
        // From the top of the page, Tab goes through the form in order;
        // Enter and Space press the copy buttons.
        b.eval("document.activeElement.blur(); true");
        let mut focus = Vec::new();
        for _ in 0..10 {
            b.press("Tab");
            focus.push(b.eval(
                "(e => e.dataset.copy ? 'copy ' + e.dataset.copy : (e.id || e.type || e.tagName))(document.activeElement)",
            ));
        }
        while b.eval("document.activeElement.dataset.copy") != "badge-rst" {
            b.press("Tab");
        }
        b.press("Enter");
        b.wait_for(
            "document.querySelector('[data-copy=badge-rst]').textContent",
            Duration::from_secs(10),
            |v| v == "Copied",
        );
        std::fs::write(support::artifacts().join("form.png"), b.screenshot()).unwrap();
        b.eval("window.clip = null; navigator.clipboard.readText().then((t) => { window.clip = t; }); true");
        let clip = b.wait_for("window.clip", Duration::from_secs(10), Value::is_string);
        b.eval("document.querySelector('#footer a').click(); true");
        let about = b.wait_for(
            "document.getElementById('who')?.textContent",
            Duration::from_secs(20),
            Value::is_string,
        );
        std::fs::write(support::artifacts().join("about.png"), b.screenshot()).unwrap();
        let about = (
            about,
            b.eval("window.ran === undefined"),
            b.eval("document.getElementById('version').textContent"),
        );
        (detected, focus, clip, about)
    })
    .await
    .unwrap();
    assert_eq!(
        detected,
        [
            format!(
                "{}/v2/gh/binder-examples/requirements/main?labpath=index.ipynb",
                s.base
            ),
            format!("{}/v2/gl/group%2Fsub%2Fproject/dev", s.base),
            format!(
                "{}/v2/git/https%3A%2F%2Fgit.example.org%2Flab%2Fnotes.git/HEAD",
                s.base
            ),
        ]
    );
    let order: Vec<&str> = focus.iter().filter_map(Value::as_str).collect();
    assert_eq!(
        order[..9],
        [
            "provider",
            "repo",
            "ref",
            "path",
            "pathtype",
            "copy link",
            "copy badge",
            "copy badge-rst",
            "submit"
        ],
        "{order:?}"
    );
    let link = format!(
        "{}/v2/git/https%3A%2F%2Fgit.example.org%2Flab%2Fnotes.git/HEAD",
        s.base
    );
    assert_eq!(
        copied,
        format!(".. image:: {}/badge_logo.svg\n :target: {link}", s.base)
    );
    assert_eq!(
        about,
        (
            Value::from("Run by the Example Lab."),
            Value::from(true),
            Value::from(bindery::VERSION)
        ),
        "the operator's message shows, and no script in it runs"
    );
}
