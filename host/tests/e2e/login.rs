//! Authenticated Binder from a browser: a real Chromium logs in through a
//! real JupyterHub (Bindery is its OAuth client), launches from the page and
//! lands in the user's own server; another user's session can neither use
//! the first one's XSRF token nor open their server.

use crate::support;

use std::time::Duration;

use serde_json::Value;
use support::browser::Browser;
use support::hub::{JupyterHub, built_repo, launch_config, launch_service_on};
use support::registry::OciRegistry;
use support::service::git_spec;

pub(crate) const PASSWORD: &str = "correct horse";

/// Logs in on the hub's login page the browser was sent to.
pub(crate) fn log_in(b: &mut Browser, hub: &str, user: &str) {
    b.wait_for("location.href", Duration::from_secs(30), |v| {
        v.as_str()
            .is_some_and(|h| h.starts_with(&format!("{hub}hub/login")))
    });
    b.wait_for(
        "!!document.querySelector('input[name=password]')",
        Duration::from_secs(10),
        |v| v == true,
    );
    b.eval(&format!(
        "document.querySelector('input[name=username]').value = '{user}';
         document.querySelector('input[name=password]').value = '{PASSWORD}';
         document.querySelector('input[name=password]').form.submit(); true"
    ));
}

/// The session's XSRF token in the page's config.
pub(crate) fn page_xsrf(b: &mut Browser) -> String {
    let xsrf = b.wait_for(
        "window.pageConfig?.xsrf",
        Duration::from_secs(20),
        Value::is_string,
    );
    xsrf.as_str().unwrap().to_string()
}

/// Runs `script`, which sets `window.done`, and waits up to `wait` for that value.
fn run_for(b: &mut Browser, script: &str, wait: Duration) -> Value {
    // A block, so that each run's `const`s are its own.
    let started = b.eval(&format!("window.done = undefined; {{ {script} }}; true"));
    assert_eq!(started, true, "{script}");
    b.wait_for("window.done", wait, |v| !v.is_null())
}

fn run(b: &mut Browser, script: &str) -> Value {
    run_for(b, script, Duration::from_secs(120))
}

/// Opens `/build` from the page with the session cookie (and `query`),
/// as EventSource does, for up to `wait`; every event, the last one
/// `ready` or `failed` (or the string `closed`).
pub(crate) fn events_from_page(
    b: &mut Browser,
    path: &str,
    query: &str,
    wait: Duration,
) -> Vec<Value> {
    let done = run_for(
        b,
        &format!(
            "const s = new EventSource('{path}?{query}'); const seen = [];
             s.onmessage = (e) => {{ const d = JSON.parse(e.data); seen.push(d);
               if (d.phase === 'ready' || d.phase === 'failed') {{ s.close(); window.done = JSON.stringify(seen); }} }};
             s.onerror = () => {{ if (s.readyState === EventSource.CLOSED) {{ seen.push('closed'); window.done = JSON.stringify(seen); }} }}"
        ),
        wait,
    );
    serde_json::from_str(done.as_str().unwrap()).unwrap()
}

/// The last event of [`events_from_page`].
fn build_from_page(b: &mut Browser, path: &str, query: &str) -> Value {
    events_from_page(b, path, query, Duration::from_secs(120))
        .pop()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_logs_in_through_the_hub_launches_from_the_page_and_only_they_reach_the_server() {
    let registry = OciRegistry::start(None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bindery = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let hub = JupyterHub::with_login(&format!("{bindery}/oauth_callback"), PASSWORD).await;
    let (repo, sha, _) = built_repo(&registry);
    let data = tempfile::tempdir().unwrap();
    let mut c = launch_config(data.path(), &registry, &hub.url, &hub.token);
    c.hub.auth_enabled = true;
    c.hub.named_server_limit_per_user = 1;
    let _s = launch_service_on(c, listener).await;
    let spec = git_spec(&repo.url, &sha);
    let build_path = format!("/build/git/{spec}");

    // Alice opens a launch link: the hub's login, then back to the page,
    // which launches her server and sends her there.
    let (hub_url, page, home) = (
        hub.url.clone(),
        format!("{bindery}/v2/git/{spec}"),
        bindery.clone(),
    );
    let (mut alice, landed, alice_xsrf) = tokio::task::spawn_blocking(move || {
        let mut b = Browser::start();
        b.navigate(&page);
        log_in(&mut b, &hub_url, "alice");
        let landed = b.wait_for("location.href", Duration::from_secs(180), |v| {
            v.as_str()
                .is_some_and(|h| h.starts_with(&format!("{hub_url}user/alice/")))
        });
        // Her session's XSRF token, as the page has it. (Its `_xsrf` cookie
        // may be the hub's here: cookies ignore ports, and both are on
        // 127.0.0.1.)
        b.navigate(&format!("{home}/"));
        let xsrf = page_xsrf(&mut b);
        (b, landed.as_str().unwrap().to_string(), xsrf)
    })
    .await
    .unwrap();
    let server = landed.split('?').next().unwrap().to_string();
    let token = landed
        .split("token=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_string();
    let with_token = reqwest::get(format!("{server}api/contents?token={token}"))
        .await
        .unwrap();
    assert_eq!(with_token.status(), 200, "{}", hub.log());
    let without = reqwest::get(format!("{server}api/contents")).await.unwrap();
    assert_eq!(
        without.status(),
        403,
        "the server opens only with its token"
    );

    // Her page's own requests need the XSRF token: a request the cookie
    // alone carries (another site's link) is refused, and so is her second
    // launch, past the limit of one named server.
    let (path, xsrf) = (build_path.clone(), alice_xsrf.clone());
    let (alice_refused, second) = tokio::task::spawn_blocking(move || {
        let refused = build_from_page(&mut alice, &path, "");
        let second = build_from_page(&mut alice, &path, &format!("_xsrf={xsrf}"));
        (refused, second)
    })
    .await
    .unwrap();
    assert_eq!(alice_refused["status_code"], 403, "{alice_refused}");
    assert!(
        alice_refused["message"]
            .as_str()
            .unwrap()
            .contains("'_xsrf' argument missing"),
        "{alice_refused}"
    );
    assert_eq!(
        second["message"],
        "User alice already has the maximum of 1 named servers.  One must be deleted before a new server can be created\n",
        "{second}"
    );

    // Bob logs in too: alice's XSRF token is no use with his session, his
    // launch is his own server, and her server does not open for him.
    let (hub_url, path) = (hub.url.clone(), build_path.clone());
    let (bob_with_hers, bob_own, bob_at_hers) = tokio::task::spawn_blocking(move || {
        let mut b = Browser::start();
        b.navigate(&format!("{bindery}/"));
        log_in(&mut b, &hub_url, "bob");
        b.wait_for("location.href", Duration::from_secs(60), |v| {
            v.as_str() == Some(&format!("{bindery}/"))
        });
        let with_hers = build_from_page(&mut b, &path, &format!("_xsrf={alice_xsrf}"));
        let own_xsrf = page_xsrf(&mut b);
        let own = build_from_page(&mut b, &path, &format!("_xsrf={own_xsrf}"));
        // Alice's server, from a page of the hub's, with bob's hub cookies.
        b.navigate(&format!("{hub_url}hub/home"));
        b.wait_for("location.href", Duration::from_secs(20), |v| {
            v.as_str().is_some_and(|h| h.starts_with(&hub_url))
        });
        let at_hers = run(
            &mut b,
            &format!("fetch('{server}api/contents').then(r => window.done = r.status)"),
        );
        (with_hers, own, at_hers)
    })
    .await
    .unwrap();
    assert_eq!(bob_with_hers["status_code"], 403, "{bob_with_hers}");
    assert_eq!(bob_own["phase"], "ready", "{bob_own}\n{}", hub.log());
    assert!(
        bob_own["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}user/bob/", hub.url)),
        "{bob_own}"
    );
    assert_eq!(bob_at_hers, 403);

    // Each has one server, their own.
    let servers: Vec<(String, usize)> = hub
        .users()
        .await
        .iter()
        .filter(|u| u["name"] == "alice" || u["name"] == "bob")
        .map(|u| {
            (
                u["name"].as_str().unwrap().to_string(),
                u["servers"].as_object().map_or(0, serde_json::Map::len),
            )
        })
        .collect();
    assert_eq!(
        servers,
        vec![("alice".to_string(), 1), ("bob".to_string(), 1)]
    );
}
