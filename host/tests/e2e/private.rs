//! Private repositories: a real `git http-backend` that demands basic
//! authentication, reached by the host with the credential its provider
//! names from the operator's grant. The build succeeds with the grant and
//! fails clearly without it, and the token is in no log line, event,
//! metric, argument or image.

use crate::support;

use bindery::config::{Config, SecretSource};
use support::GitHttp;
use support::engine::{DOCKERFILE, build_config, engine, run_in};
use support::registry::OciRegistry;
use support::service::{Process, Stream, build_only};

const USER: &str = "builder";

/// `config` listening on a port of its own, its git provider granted
/// `token` (when some) as the `password` secret, in a file as a mounted
/// Kubernetes Secret would be.
fn granted(mut c: Config, dir: &std::path::Path, token: Option<&str>) -> Config {
    c.listen = format!("127.0.0.1:{}", support::free_port())
        .parse()
        .unwrap();
    let git = c.plugins.get_mut("git").unwrap();
    git.config.insert("username".into(), USER.into());
    if let Some(token) = token {
        let file = dir.join("git-password");
        std::fs::write(&file, format!("{token}\n")).unwrap();
        git.secrets
            .insert("password".into(), SecretSource::File(file));
    }
    c
}

/// A random token, and a private repository on a real authenticating git
/// server that only it reads: the server, the commit and the URL.
async fn private_repo() -> (String, GitHttp, String, String) {
    let token = format!("tok-{:016x}", rand_u64());
    let (forge, _) = GitHttp::private("lab/private.git", USER, &token).await;
    let sha = forge.commit(
        "lab/private.git",
        &[("Dockerfile", DOCKERFILE), ("notes.md", b"private\n")],
    );
    let url = format!("http://127.0.0.1:{}/lab/private.git", forge.port);
    (token, forge, sha, url)
}

/// The metrics of the Bindery at `base`, then its debug log, once `server`
/// has stopped: both to search for a credential.
async fn metrics_and_log(base: &str, server: Process, dir: &std::path::Path) -> (String, String) {
    let metrics = support::service::metrics_at(base).await;
    drop(server);
    let log = std::fs::read_to_string(dir.join("bindery.log")).unwrap();
    assert!(log.len() > 1000, "the debug log is written: {log}");
    (metrics, log)
}

/// `token` is in none of `texts` (what, text), in no file of `image` and
/// not in its configuration.
fn nowhere(token: &str, texts: &[(&str, &str)], image: &str) {
    for (place, text) in texts {
        assert!(!text.contains(token), "the token is in the {place}");
    }
    let in_image = run_in(
        image,
        &format!(
            "grep -rIl --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev '{token}' / || true"
        ),
    );
    assert_eq!(in_image, "", "files holding the token");
    let inspected = engine().docker(&["inspect", image]);
    assert!(!String::from_utf8_lossy(&inspected.stdout).contains(token));
}

async fn launch(c: &Config, url: &str, sha: &str) -> Stream {
    build_only(&format!("http://{}", c.listen), url, sha).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_repository_builds_with_the_granted_token_and_only_with_it() {
    let (token, _forge, sha, url) = private_repo().await;
    let registry = OciRegistry::start(None);

    // Without a grant: a clear failure, before any build.
    let data = tempfile::tempdir().unwrap();
    let c = granted(
        build_config(data.path(), &registry).await,
        data.path(),
        None,
    );
    let server = Process::start(&c, data.path()).await;
    let got = launch(&c, &url, &sha).await;
    assert_eq!(got.last()["phase"], "failed", "{}", got.raw);
    let message = got.last()["message"].as_str().unwrap();
    assert!(
        message.contains("refused access (HTTP 401 Unauthorized): it needs credentials, and the provider gave none"),
        "{message}"
    );
    drop(server);

    // A wrong token: refused, in words that say so.
    let data = tempfile::tempdir().unwrap();
    let c = granted(
        build_config(data.path(), &registry).await,
        data.path(),
        Some("not-it"),
    );
    let server = Process::start(&c, data.path()).await;
    let got = launch(&c, &url, &sha).await;
    assert!(
        got.last()["message"]
            .as_str()
            .unwrap()
            .contains("the provider's credential was refused"),
        "{}",
        got.raw
    );
    drop(server);

    // Granted: the branch is resolved with the token (git ls-remote), and the
    // build is made from the host's checkout, so repo2docker never holds it.
    let data = tempfile::tempdir().unwrap();
    let c = granted(
        build_config(data.path(), &registry).await,
        data.path(),
        Some(&token),
    );
    let server =
        Process::start_logging("debug,hyper=info,h2=info,reqwest=info", &c, data.path()).await;
    let got = launch(&c, &url, "main").await;
    assert_eq!(got.last()["phase"], "ready", "{}", got.raw);
    let image = got.last()["imageName"].as_str().unwrap().to_string();
    assert!(image.ends_with(&sha), "{image}");
    assert_eq!(run_in(&image, "cat /home/jovyan/notes.md"), "private\n");
    let (metrics, log) =
        metrics_and_log(&format!("http://{}", c.listen), server, data.path()).await;
    let texts = [
        ("events", got.raw.as_str()),
        ("metrics", &metrics),
        ("log", &log),
    ];
    nowhere(&token, &texts, &image);
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    u64::from_le_bytes(b)
}

/// On Kubernetes the build pod's repo2docker clones, as upstream's does,
/// with `GIT_CREDENTIAL_ENV` from a Secret of the build's own: the pod's
/// spec names the Secret, never the token, and the Secret goes with the pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_pod_clones_a_private_repository_with_credentials_from_a_secret() {
    use crate::kubernetes::{BUILDER, NS, config};
    let token = format!("tok-{:016x}", rand_u64());
    let (forge, _) = GitHttp::private("lab/private.git", USER, &token).await;
    let sha = forge.commit("lab/private.git", &[("Dockerfile", DOCKERFILE)]);
    let url = format!("http://127.0.0.1:{}/lab/private.git", forge.port);
    let (registry, api, data) = (
        OciRegistry::start(None),
        support::kube::KubeApi::start().await,
        tempfile::tempdir().unwrap(),
    );
    // The builder image configures git's credential helper to print
    // GIT_CREDENTIAL_ENV with its `\n`s expanded; so does this stand-in.
    let helper = r#"export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=credential.helper GIT_CONFIG_VALUE_0='!f() { printf "%b\n" "$GIT_CREDENTIAL_ENV"; }; f'; exec "$0" "$@""#;
    api.run_image(
        BUILDER,
        &["sh", "-c", helper, engine().repo2docker.to_str().unwrap()],
    );
    let c = granted(
        config(data.path(), &registry, &api, BUILDER).await,
        data.path(),
        Some(&token),
    );
    let server = Process::start(&c, data.path()).await;
    let got = launch(&c, &url, &sha).await;
    drop(server);
    assert_eq!(got.last()["phase"], "ready", "{}", got.raw);
    assert!(
        got.messages().contains("on the kubernetes executor"),
        "{}",
        got.raw
    );
    let pod = serde_json::to_value(&api.created()[0]).unwrap();
    assert!(
        !pod.to_string().contains(&token),
        "the token is in the pod: {pod}"
    );
    let env = &pod["spec"]["containers"][0]["env"];
    let credential = env
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "GIT_CREDENTIAL_ENV")
        .unwrap_or_else(|| panic!("{env}"));
    assert_eq!(
        credential["valueFrom"]["secretKeyRef"]["name"], pod["metadata"]["name"],
        "{credential}"
    );
    assert!(
        api.secrets(NS).is_empty(),
        "the build's Secret is deleted with its pod"
    );
    assert!(!got.raw.contains(&token));
}

/// Authenticated Binder with users' own credentials: a private repository
/// on a real authenticating git server, read with the token each user's
/// hub login keeps in its `auth_state`. Alice's token reads it: her launch
/// builds it with her token and starts her server. Bob has no token and
/// Carol one the server refuses: both are refused, by branch and by sha,
/// also once alice's image exists. Her token is in no event, log line,
/// metric, cache file or image layer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_repository_launches_only_for_users_whose_own_credential_reads_it() {
    use crate::login::{PASSWORD, events_from_page, log_in, page_xsrf};
    use bindery::config::UserCredential;
    use std::time::Duration;
    use support::browser::Browser;
    use support::hub::{JupyterHub, launch_config};
    use support::service::git_spec;

    let (token, _forge, sha, url) = private_repo().await;
    let registry = OciRegistry::start(None);
    let data = tempfile::tempdir().unwrap();
    let mut c = granted(
        build_config(data.path(), &registry).await,
        data.path(),
        None,
    );
    let bindery = format!("http://{}", c.listen);
    let states = serde_json::json!({
        "alice": { "access_token": token },
        "carol": { "access_token": "not-it" },
    });
    let hub =
        JupyterHub::with_auth_states(&format!("{bindery}/oauth_callback"), PASSWORD, &states).await;
    c.hub = launch_config(data.path(), &registry, &hub.url, &hub.token).hub;
    c.hub.auth_enabled = true;
    c.web.api_only = false;
    c.plugins.get_mut("git").unwrap().user_credential = Some(UserCredential {
        secret: "password".into(),
        auth_state_key: "/access_token".into(),
    });
    let server =
        Process::start_logging("debug,hyper=info,h2=info,reqwest=info", &c, data.path()).await;

    // Each user logs in through the hub and launches from Bindery's page,
    // by branch and then by sha.
    let (main, pinned) = (
        format!("/build/git/{}", git_spec(&url, "main")),
        format!("/build/git/{}", git_spec(&url, &sha)),
    );
    let launches = |user: &'static str| {
        let (bindery, hub_url, main, pinned) = (
            bindery.clone(),
            hub.url.clone(),
            main.clone(),
            pinned.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let mut b = Browser::start();
            b.navigate(&format!("{bindery}/"));
            log_in(&mut b, &hub_url, user);
            b.wait_for("location.href", Duration::from_secs(60), |v| {
                v.as_str() == Some(&format!("{bindery}/"))
            });
            let xsrf = format!("_xsrf={}", page_xsrf(&mut b));
            let wait = Duration::from_secs(600);
            let by_branch = events_from_page(&mut b, &main, &xsrf, wait);
            let by_sha = events_from_page(&mut b, &pinned, &xsrf, wait);
            (by_branch, by_sha)
        })
    };
    let (alice, alice_again) = launches("alice").await.unwrap();
    let last = alice.last().unwrap();
    assert_eq!(last["phase"], "ready", "{alice:?}\n{}", hub.log());
    assert!(
        last["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}user/alice/", hub.url)),
        "{last}"
    );
    let image = alice
        .iter()
        .find_map(|e| e["imageName"].as_str())
        .unwrap()
        .to_string();
    assert!(
        image.contains("/binder-private-") && image.ends_with(&sha),
        "a private image is named apart from the public one: {image}"
    );
    assert_eq!(run_in(&image, "cat /home/jovyan/notes.md"), "private\n");
    // Her second launch, by sha, needs no ls-remote of the plugin's: the
    // host's check with her token lets it through to a second server.
    assert_eq!(
        alice_again.last().unwrap()["phase"],
        "ready",
        "{alice_again:?}"
    );

    let (bob_branch, bob_sha) = launches("bob").await.unwrap();
    let (carol_branch, carol_sha) = launches("carol").await.unwrap();
    for (who, events) in [
        ("bob by branch", &bob_branch),
        ("bob by sha", &bob_sha),
        ("carol by branch", &carol_branch),
        ("carol by sha", &carol_sha),
    ] {
        let last = events.last().unwrap();
        assert_eq!(last["phase"], "failed", "{who}: {events:?}");
        assert!(
            !events.iter().any(|e| e["imageName"] == image.as_str()),
            "{who} reached alice's image: {events:?}"
        );
    }
    assert!(
        bob_sha.last().unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("it needs credentials, and the provider gave none"),
        "{bob_sha:?}"
    );
    assert!(
        carol_sha.last().unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("The credential your login holds for it was refused."),
        "{carol_sha:?}"
    );
    let servers: Vec<(String, usize)> = hub
        .users()
        .await
        .iter()
        .map(|u| {
            (
                u["name"].as_str().unwrap().to_string(),
                u["servers"].as_object().map_or(0, serde_json::Map::len),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    assert_eq!(servers, vec![("alice".to_string(), 2)]);

    // Her token is nowhere Bindery writes.
    let (metrics, log) = metrics_and_log(&bindery, server, data.path()).await;
    let events = serde_json::to_string(&[
        &alice,
        &alice_again,
        &bob_branch,
        &bob_sha,
        &carol_branch,
        &carol_sha,
    ])
    .unwrap();
    for file in walk(data.path()) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "the token is in {}",
            file.display()
        );
    }
    let texts = [
        ("events", events.as_str()),
        ("metrics", &metrics),
        ("log", &log),
    ];
    nowhere(&token, &texts, &image);
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}
