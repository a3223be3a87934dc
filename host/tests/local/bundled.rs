//! The bundled plugins, loaded from the embedded defaults as `bindery serve`
//! loads them, against real servers.

use crate::support;

use bindery::config::Config;
use bindery_runtime::PluginHost;
use bindery_runtime::bindings::{PluginError, RefLifetime};
use support::*;

fn escaped(url: &str) -> String {
    url.replace(':', "%3A").replace('/', "%2F")
}

/// Resolving `main` of the repository at `url` fails as an upstream (git)
/// failure: the server is not there, or has no such repository.
async fn assert_git_unreachable(host: &PluginHost, url: &str) {
    match host
        .resolve("git", &format!("{}/main", escaped(url)))
        .await
        .unwrap()
    {
        Err(PluginError::Upstream(u)) => assert_eq!(u.service, "git"),
        other => panic!("expected an upstream failure for {url}, got {other:?}"),
    }
}

async fn defaults(data: &std::path::Path, private: &[&str]) -> std::sync::Arc<PluginHost> {
    let mut config = Config::load(None).unwrap();
    config.data_dir = data.to_path_buf();
    config.plugin_runtime.compile_cache_dir = Some(test_target_dir().join("compile-cache"));
    config
        .plugins
        .get_mut("git")
        .expect("git is bundled by default")
        .private_networks = private.iter().map(|n| n.parse().unwrap()).collect();
    PluginHost::start(&config)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_git_provider_resolves_against_a_real_git_daemon() {
    let (daemon, sha) = GitDaemon::with_repo("repo.git");
    let data = tempfile::tempdir().unwrap();
    let host = defaults(data.path(), &["127.0.0.0/8"]).await;
    let url = format!("git://127.0.0.1:{}/repo.git", daemon.port);

    for git_ref in ["main", "HEAD", "heads/main", "v1.0"] {
        let r = host
            .resolve("git", &format!("{}/{git_ref}", escaped(&url)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.resolved_ref, sha, "{git_ref}");
        assert_eq!(r.repo_url, url);
        assert!(matches!(r.lifetime, RefLifetime::Moving));
    }
    match host
        .resolve("git", &format!("{}/no-such-branch", escaped(&url)))
        .await
        .unwrap()
    {
        Err(PluginError::NotFound(m)) => assert!(m.contains("no-such-branch"), "{m}"),
        other => panic!("expected not found, got {other:?}"),
    }
    // Nothing listens on port 1: a clear upstream failure.
    assert_git_unreachable(&host, "git://127.0.0.1:1/repo.git").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_git_provider_resolves_over_smart_http() {
    let (server, sha) = GitHttp::with_repo("group/repo.git").await;
    let data = tempfile::tempdir().unwrap();
    let host = defaults(data.path(), &["127.0.0.0/8"]).await;
    let url = format!("http://127.0.0.1:{}/group/repo.git", server.port);
    for git_ref in ["main", "HEAD", "v1.0", "tags/v1.0"] {
        let r = host
            .resolve("git", &format!("{}/{git_ref}", escaped(&url)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.resolved_ref, sha, "{git_ref}");
        assert_eq!(r.resolved_spec, format!("{}/{sha}", escaped(&url)));
    }
    let pinned = host
        .resolve("git", &format!("{}/{sha}", escaped(&url)))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(pinned.lifetime, RefLifetime::Immutable));
    assert!(matches!(
        host.resolve("git", &format!("{}/gone", escaped(&url)))
            .await
            .unwrap(),
        Err(PluginError::NotFound(_))
    ));
    let missing_repo = format!("http://127.0.0.1:{}/group/nope.git", server.port);
    assert_git_unreachable(&host, &missing_repo).await;
    // A name that does not resolve: an unreachable host.
    assert_git_unreachable(&host, "https://no-such-host.invalid/repo.git").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_the_git_provider_cannot_reach_private_addresses() {
    let (daemon, _) = GitDaemon::with_repo("repo.git");
    let data = tempfile::tempdir().unwrap();
    let host = defaults(data.path(), &[]).await;
    for url in [
        format!("git://127.0.0.1:{}/repo.git", daemon.port),
        format!("git://localhost:{}/repo.git", daemon.port),
        "http://169.254.169.254/x.git".into(),
    ] {
        match host
            .resolve("git", &format!("{}/main", escaped(&url)))
            .await
            .unwrap()
        {
            Err(PluginError::Upstream(u)) => {
                assert!(u.message.contains("AddressDenied"), "{url}: {}", u.message);
            }
            other => panic!("{url}: expected a denial, got {other:?}"),
        }
    }
    match host
        .resolve("git", &format!("{}/main", escaped("file:///etc")))
        .await
        .unwrap()
    {
        Err(PluginError::InvalidSpec(_)) => {}
        other => panic!("expected an invalid spec, got {other:?}"),
    }
}
