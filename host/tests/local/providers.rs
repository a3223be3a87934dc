//! Every bundled provider, loaded as `bindery serve` loads it and resolving
//! through the resolver and its sled cache. No forge can be installed here, so
//! the API providers talk to `support::forges`, a loopback server answering as
//! the real APIs document it; `git` talks to real git servers (bundled.rs).

use crate::support;

use std::path::Path;

use bindery::api::AppState;
use bindery::app::App;
use bindery::config::Config;
use bindery::pipeline::{Notice, ResolveError, Resolved};
use bindery_runtime::PluginHost;
use bindery_runtime::WitVersion;
use bindery_runtime::bindings::{ContentSource, GitContent};
use support::forges::{Forges, HYDROSHARE_ID, OLD_SHA, SHA, SWH_DIR, SWH_REL, SWH_SNP};
use support::{API_PROVIDERS, test_target_dir};

/// The embedded defaults with each API provider pointed at the test server.
fn config(forges: &Forges, data: &Path) -> Config {
    let mut config = Config::load(None).unwrap();
    config.data_dir = data.to_path_buf();
    config.plugin_runtime.compile_cache_dir = Some(test_target_dir().join("compile-cache"));
    forges.grant_providers(&mut config);
    config
}

async fn start(config: Config) -> App {
    let plugins = PluginHost::start(&config)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    App::new(config, plugins).unwrap()
}

async fn resolve(state: &AppState, provider: &str, spec: &str) -> Result<Resolved, ResolveError> {
    state.resolver.resolve(provider, spec).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_provider_resolves_against_its_documented_api() {
    let forges = Forges::start().await;
    let data = tempfile::tempdir().unwrap();
    let app = start(config(&forges, data.path())).await;
    let state = &app.state;
    let b = &forges.base;
    // (provider, spec, resolved ref, repo url, build slug, resolved spec, ref url, immutable)
    type Case<'a> = (
        &'a str,
        String,
        String,
        String,
        String,
        String,
        String,
        bool,
    );
    let cases: Vec<Case> = vec![
        (
            "gh",
            "binder-examples/requirements.git/feature/x".into(),
            SHA.into(),
            "https://github.com/binder-examples/requirements".into(),
            "binder-examples-requirements".into(),
            format!("binder-examples/requirements/{SHA}"),
            format!("https://github.com/binder-examples/requirements/tree/{SHA}"),
            false,
        ),
        (
            "gh",
            format!("binder-examples/requirements/{SHA}"),
            SHA.into(),
            "https://github.com/binder-examples/requirements".into(),
            "binder-examples-requirements".into(),
            format!("binder-examples/requirements/{SHA}"),
            format!("https://github.com/binder-examples/requirements/tree/{SHA}"),
            true,
        ),
        (
            "gist",
            "choldgraf/6f2e7e2b".into(),
            SHA.into(),
            "https://gist.github.com/choldgraf/6f2e7e2b.git".into(),
            "6f2e7e2b".into(),
            format!("choldgraf/6f2e7e2b/{SHA}"),
            format!("https://gist.github.com/choldgraf/6f2e7e2b/{SHA}"),
            false,
        ),
        (
            "gist",
            format!("choldgraf/6f2e7e2b/{OLD_SHA}"),
            OLD_SHA.into(),
            "https://gist.github.com/choldgraf/6f2e7e2b.git".into(),
            "6f2e7e2b".into(),
            format!("choldgraf/6f2e7e2b/{OLD_SHA}"),
            format!("https://gist.github.com/choldgraf/6f2e7e2b/{OLD_SHA}"),
            true,
        ),
        (
            "gl",
            "group%2Fsub-project/feature%2Fx".into(),
            SHA.into(),
            "https://gitlab.com/group/sub-project.git".into(),
            "group-sub_-project".into(),
            format!("group%2Fsub-project/{SHA}"),
            format!("https://gitlab.com/group/sub-project/tree/{SHA}"),
            false,
        ),
        (
            "zenodo",
            "10.5281/zenodo.3242074".into(),
            "3242074".into(),
            "10.5281/zenodo.3242074".into(),
            "zenodo-3242074".into(),
            "10.5281/zenodo.3242074".into(),
            "https://doi.org/10.5281/zenodo.3242074".into(),
            true,
        ),
        (
            "zenodo",
            "10.5281/zenodo.3242073".into(),
            "3242074".into(),
            "10.5281/zenodo.3242073".into(),
            "zenodo-3242074".into(),
            "10.5281/zenodo.3242074".into(),
            "https://doi.org/10.5281/zenodo.3242074".into(),
            false,
        ),
        (
            "figshare",
            "10.6084/m9.figshare.9782777.v1".into(),
            "9782777.v1".into(),
            "10.6084/m9.figshare.9782777.v1".into(),
            "figshare-9782777.v1".into(),
            "10.6084/m9.figshare.9782777.v1".into(),
            "https://doi.org/10.6084/m9.figshare.9782777.v1".into(),
            true,
        ),
        (
            "figshare",
            "10.6084/m9.figshare.9782777".into(),
            "9782777.v2".into(),
            "10.6084/m9.figshare.9782777".into(),
            "figshare-9782777.v2".into(),
            "10.6084/m9.figshare.9782777.v2".into(),
            "https://doi.org/10.6084/m9.figshare.9782777.v2".into(),
            false,
        ),
        (
            "dataverse",
            "10.7910/DVN/TJCLKP".into(),
            "3035124.v3.0".into(),
            "10.7910/DVN/TJCLKP".into(),
            "dataverse-dvn-2ftjclkp".into(),
            "10.7910/DVN/TJCLKP".into(),
            "https://doi.org/10.7910/DVN/TJCLKP".into(),
            false,
        ),
        (
            "hydroshare",
            HYDROSHARE_ID.into(),
            format!("{HYDROSHARE_ID}.v1568655557"),
            format!("{b}/hydroshare/resource/{HYDROSHARE_ID}"),
            format!("hydroshare-{HYDROSHARE_ID}.v1568655557"),
            format!("{b}/hydroshare/resource/{HYDROSHARE_ID}"),
            format!("{b}/hydroshare/resource/{HYDROSHARE_ID}"),
            false,
        ),
        (
            "ckan",
            bindery_sdk::spec::quote(&format!("{b}/ckan/dataset/sample"), ""),
            "sample.v1610465295".into(),
            format!("{b}/ckan/dataset/sample"),
            "ckan-sample".into(),
            format!("{b}/ckan/dataset/sample"),
            format!("{b}/ckan/dataset/sample"),
            false,
        ),
        (
            "ckan",
            bindery_sdk::spec::quote(&format!("{b}/ckan/dataset/sample/history/act-1"), ""),
            "sample.v1610465295".into(),
            format!("{b}/ckan/dataset/sample/history/act-1"),
            "ckan-sample".into(),
            format!("{b}/ckan/dataset/sample/history/act-1"),
            format!("{b}/ckan/dataset/sample/history/act-1"),
            true,
        ),
        (
            "swh",
            format!("swh:1:snp:{SWH_SNP}"),
            SHA.into(),
            format!("swh:1:rev:{SHA}"),
            "swh-rev".into(),
            format!("swh:1:rev:{SHA}"),
            format!("https://archive.softwareheritage.org/swh:1:rev:{SHA}"),
            true,
        ),
        (
            "swh",
            format!("swh:1:rel:{SWH_REL}"),
            SHA.into(),
            format!("swh:1:rev:{SHA}"),
            "swh-rev".into(),
            format!("swh:1:rev:{SHA}"),
            format!("https://archive.softwareheritage.org/swh:1:rev:{SHA}"),
            true,
        ),
        (
            "swh",
            format!("swh:1:dir:{SWH_DIR}"),
            SWH_DIR.into(),
            format!("swh:1:dir:{SWH_DIR}"),
            "swh-dir".into(),
            format!("swh:1:dir:{SWH_DIR}"),
            format!("https://archive.softwareheritage.org/swh:1:dir:{SWH_DIR}"),
            true,
        ),
    ];
    for (provider, spec, resolved_ref, repo_url, slug, resolved_spec, ref_url, immutable) in cases {
        let r = resolve(state, provider, &spec)
            .await
            .unwrap_or_else(|e| panic!("{provider}:{spec}: {e}"));
        let got = (
            r.resolved_ref,
            r.repo_url,
            r.build_slug,
            r.resolved_spec,
            r.ref_url,
            r.immutable,
        );
        assert_eq!(
            got,
            (
                resolved_ref,
                repo_url,
                slug,
                resolved_spec,
                ref_url,
                immutable
            ),
            "{provider}:{spec}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_immutable_ref_is_resolved_once_and_a_moving_one_revalidates_with_its_etag() {
    let forges = Forges::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut c = config(&forges, data.path());
    c.cache.moving_ref_revalidate_ms = 0;
    let app = start(c).await;
    let state = &app.state;

    let pinned = format!("binder-examples/requirements/{SHA}");
    let first = resolve(state, "gh", &pinned).await.unwrap();
    assert_eq!(resolve(state, "gh", &pinned).await.unwrap(), first);
    assert_eq!(
        forges
            .hits(&format!(
                "/github/repos/binder-examples/requirements/commits/{SHA}"
            ))
            .len(),
        1,
        "the second resolve is served from the cache"
    );
    for spec in ["10.5281/zenodo.3242074"] {
        resolve(state, "zenodo", spec).await.unwrap();
        resolve(state, "zenodo", spec).await.unwrap();
    }
    assert_eq!(forges.hits("/doi/10.5281/zenodo.3242074").len(), 1);

    // A branch is asked again once its TTL (here 0 ms) is over, conditionally.
    resolve(state, "gh", "binder-examples/requirements/main")
        .await
        .unwrap();
    let again = resolve(state, "gh", "binder-examples/requirements/main")
        .await
        .unwrap();
    assert_eq!(again.resolved_ref, SHA);
    let hits = forges.hits("/github/repos/binder-examples/requirements/commits/main");
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[1].if_none_match.as_deref(), Some("\"etag-main\""));
    assert_eq!(hits[1].status, 304);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_requests_for_one_spec_make_one_upstream_call() {
    let forges = Forges::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut c = config(&forges, data.path());
    c.cache.moving_ref_revalidate_ms = 0;
    let app = start(c).await;
    let state = &app.state;
    // Even with nothing fresh for long (0 ms), requests that overlap share one call.
    let all: Vec<_> = (0..100)
        .map(|_| {
            let s = state.clone();
            tokio::spawn(
                async move { resolve(&s, "gh", "binder-examples/requirements/main").await },
            )
        })
        .collect();
    for r in all {
        assert_eq!(r.await.unwrap().unwrap().resolved_ref, SHA);
    }
    let calls = forges
        .hits("/github/repos/binder-examples/requirements/commits/main")
        .len();
    assert!(
        calls < 10,
        "{calls} upstream calls for 100 overlapping requests"
    );
    // Failures are shared too, and not kept: the next request asks again.
    let missing: Vec<_> = (0..20)
        .map(|_| {
            let s = state.clone();
            tokio::spawn(async move {
                resolve(&s, "gh", "binder-examples/requirements/HEAD-no-such").await
            })
        })
        .collect();
    for r in missing {
        assert!(r.await.unwrap().is_err());
    }
    assert!(
        forges
            .hits("/github/repos/binder-examples/requirements/commits/HEAD-no-such")
            .len()
            < 5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_is_remembered_and_worded_as_upstream() {
    let forges = Forges::start().await;
    let data = tempfile::tempdir().unwrap();
    let app = start(config(&forges, data.path())).await;
    let state = &app.state;
    for _ in 0..2 {
        let e = resolve(state, "gh", "binder-examples/requirements/no-such-branch")
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Could not resolve ref for gh:binder-examples/requirements/no-such-branch. Double check your URL and that your repo is public. \
             GitHub recently changed default branches from \"master\" to \"main\"."
        );
    }
    assert_eq!(
        forges
            .hits("/github/repos/binder-examples/requirements/commits/no-such-branch")
            .len(),
        1,
        "not found is cached"
    );
    for (provider, spec) in [
        ("gist", "choldgraf/0000".to_string()),
        ("gl", "group%2Fsub-project/nope".into()),
        ("zenodo", "10.5281/zenodo.1".into()),
        ("hydroshare", "0".repeat(32)),
        (
            "ckan",
            bindery_sdk::spec::quote(&format!("{}/ckan/dataset/gone", forges.base), ""),
        ),
        ("swh", format!("swh:1:rev:{OLD_SHA}")),
    ] {
        match resolve(state, provider, &spec).await {
            Err(ResolveError::NotFound { key, .. }) => {
                assert_eq!(key, format!("{provider}:{spec}"));
            }
            other => panic!("{provider}:{spec}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_quirks_rate_limit_and_default_branch_fallback() {
    let forges = Forges::start().await;
    let data = tempfile::tempdir().unwrap();
    let app = start(config(&forges, data.path())).await;
    let state = &app.state;
    match resolve(state, "gh", "ratelimited/repo/HEAD").await {
        Err(e @ ResolveError::RateLimited { .. }) => {
            assert_eq!(
                e.to_string(),
                "Error resolving ref for gh:ratelimited/repo/HEAD: GitHub rate limit exceeded. Try again in 15 minutes."
            );
        }
        other => panic!("{other:?}"),
    }
    // Upstream's gauge, read off the provider's answers by the host.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let edge = bindery::edge::Edge::new(&state.config.web);
    let routes = bindery::api::router(state.clone());
    tokio::spawn(edge.serve(listener, routes, std::future::pending()));
    let gauge = || async {
        let text = support::service::metrics_at(&base).await;
        text.lines()
            .find_map(|l| l.strip_prefix("binderhub_github_rate_limit_remaining "))
            .map(str::to_string)
    };
    assert_eq!(gauge().await.as_deref(), Some("0"));
    let r = resolve(state, "gh", "binder-examples/moved-default/master")
        .await
        .unwrap();
    assert_eq!(r.resolved_ref, SHA);
    assert_eq!(
        r.resolved_spec,
        format!("binder-examples/moved-default/{SHA}")
    );
    let [notice] = &r.notices[..] else {
        panic!("{:?}", r.notices)
    };
    assert_eq!(
        notice.message("gh:binder-examples/moved-default/master"),
        "Could not resolve ref for gh:binder-examples/moved-default/master. Double check your URL and that your repo is public. \
         GitHub recently changed default branches from \"master\" to \"main\". Tip: HEAD will always resolve to a repository's default branch.\n\
         Trying again with HEAD instead of master. Please update your links.\n"
    );
    assert!(matches!(notice, Notice::RefFallback { .. }) && notice.pause().as_secs() == 10);
    let remaining: u64 = gauge().await.unwrap().parse().unwrap();
    assert!(remaining > 0 && remaining < 60, "{remaining}");
    let e = resolve(state, "gh", "binder-examples/requirements")
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .ends_with("Did you mean \"binder-examples/requirements/HEAD\"?"),
        "{e}"
    );
    // Secret gists need the operator.
    let e = resolve(state, "gist", "someone/5ec2e7").await.unwrap_err();
    assert!(e.to_string().contains("secret Gist"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_rules_and_credentials() {
    let forges = Forges::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut c = config(&forges, data.path());
    let gh = c.plugins.get_mut("gh").unwrap();
    gh.banned_specs = vec!["^evil-org/.*".into()];
    gh.high_quota_specs = vec!["binder-examples/".into()];
    gh.spec_config = vec![bindery::config::SpecConfig {
        pattern: "binder-examples/requirements".into(),
        config: serde_json::json!({ "quota": 500 })
            .as_object()
            .unwrap()
            .clone(),
    }];
    // SAFETY: set before any thread reads this test-only variable.
    // SAFETY: no other test reads or writes this variable.
    unsafe { std::env::set_var("GH_TOKEN_FOR_A_BINDERY_TEST", "s3cret") };
    gh.secrets.insert(
        "access_token".into(),
        bindery::config::SecretSource::Env("GH_TOKEN_FOR_A_BINDERY_TEST".into()),
    );
    c.quota = bindery::config::QuotaConfig {
        per_repo: Some(10),
        per_repo_higher: Some(100),
        ..Default::default()
    };
    c.plugins.get_mut("gl").unwrap().allowed_specs = vec!["group%2F".into()];
    let app = start(c).await;
    let state = &app.state;

    let e = resolve(state, "gh", "EVIL-ORG/x/HEAD").await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "Sorry, EVIL-ORG/x/HEAD is not allowed to launch. Please contact admins for more info!"
    );
    assert!(matches!(
        resolve(state, "gl", "other%2Fp/HEAD").await,
        Err(ResolveError::Banned { .. })
    ));
    assert!(
        forges.hits("/github/repos/EVIL-ORG").is_empty()
            && forges.hits("/gitlab/api/v4/projects/other").is_empty()
    );

    resolve(state, "gh", "binder-examples/requirements/HEAD/")
        .await
        .unwrap();
    let hit = &forges.hits("/github/repos/binder-examples/requirements/commits/HEAD")[0];
    assert_eq!(hit.authorization.as_deref(), Some("token s3cret"));
    let quota = |spec: &str| state.resolver.repo_config("gh", spec)["quota"].clone();
    assert_eq!(quota("binder-examples/requirements/HEAD"), 500);
    assert_eq!(quota("binder-examples/other/HEAD"), 100);
    assert_eq!(quota("someone/else/HEAD"), 10);
    assert!(
        matches!(resolve(state, "nope", "x").await, Err(ResolveError::UnknownProvider(p)) if p == "nope")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_specs_get_a_clear_error_and_reach_no_server() {
    let forges = Forges::start().await;
    let data = tempfile::tempdir().unwrap();
    let app = start(config(&forges, data.path())).await;
    let state = &app.state;
    let long = "a".repeat(10_000);
    let hostile = [
        "../../../etc/passwd".to_string(),
        "a/../../b/HEAD".into(),
        "..%2F..%2Fetc%2Fpasswd/HEAD".into(),
        "a/b/ma\u{0}in".into(),
        "a/b/line\nbreak".into(),
        "a%0Ab/c/HEAD".into(),
        "%FF%FE/x".into(),
        format!("{long}/{long}/HEAD"),
        "ünïcødé/репо/分支".into(),
        "a/b/--upload-pack=touch%20x".into(),
        "10.5281/zenodo.1\u{7}".into(),
        "swh:1:cnt:0000000000000000000000000000000000000000".into(),
        "javascript%3Aalert(1)/HEAD".into(),
        "file%3A%2F%2F%2Fetc%2Fpasswd/HEAD".into(),
    ];
    for provider in API_PROVIDERS.iter().chain(&["git"]) {
        for spec in &hostile {
            match resolve(state, provider, spec).await {
                Err(ResolveError::Failed { key, message }) => {
                    assert_eq!(key, format!("{provider}:{}", spec.trim_end_matches('/')));
                    assert!(
                        !message.is_empty()
                            && !message.contains("crashed")
                            && !message.contains("did not answer"),
                        "{provider}:{spec:.40}: {message}"
                    );
                }
                Err(ResolveError::NotFound { .. }) => {}
                other => panic!("{provider}:{spec:.40}: expected a clear error, got {other:?}"),
            }
        }
    }
    // HydroShare takes any spec holding 32 hex digits as a resource id, as
    // upstream does: the zeros of the content SWHID are one. Nothing else gets out.
    let hits = forges.hits("/");
    assert!(
        hits.iter().all(|h| h.path
            == format!(
                "/hydroshare/hsapi/resource/{}/scimeta/elements",
                "0".repeat(32)
            )),
        "{hits:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_is_down_is_a_clear_failure() {
    let forges = Forges::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut c = config(&forges, data.path());
    let closed = support::free_port();
    c.plugins.get_mut("gh").unwrap().config.insert(
        "api_base_url".into(),
        toml::Value::String(format!("http://127.0.0.1:{closed}")),
    );
    let app = start(c).await;
    let state = &app.state;
    for _ in 0..2 {
        let e = resolve(state, "gh", "binder-examples/requirements/HEAD")
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with(
                "Error resolving ref for gh:binder-examples/requirements/HEAD: GitHub: cannot reach"
            ),
            "{msg}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_cache_costs_only_re_resolution() {
    let forges = Forges::start().await;
    let data = tempfile::tempdir().unwrap();
    let spec = format!("binder-examples/requirements/{SHA}");
    let first = {
        let app = start(config(&forges, data.path())).await;
        let state = &app.state;
        resolve(state, "gh", &spec).await.unwrap()
    };
    // Deleted: re-resolved. Garbage: moved aside, re-resolved.
    std::fs::remove_dir_all(data.path().join("cache")).unwrap();
    let app = start(config(&forges, data.path())).await;
    let state = &app.state;
    assert_eq!(resolve(state, "gh", &spec).await.unwrap(), first);
    drop(app);
    for f in std::fs::read_dir(data.path().join("cache"))
        .unwrap()
        .flatten()
    {
        if f.path().is_file() {
            std::fs::write(f.path(), vec![0xA5; 512]).unwrap();
        }
    }
    let app = start(config(&forges, data.path())).await;
    let state = &app.state;
    assert_eq!(resolve(state, "gh", &spec).await.unwrap(), first);
    assert_eq!(
        forges
            .hits(&format!(
                "/github/repos/binder-examples/requirements/commits/{SHA}"
            ))
            .len(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repoproviders_lists_display_configs_in_upstream_order() {
    let forges = Forges::start().await;
    let data = tempfile::tempdir().unwrap();
    let app = start(config(&forges, data.path())).await;
    let state = &app.state;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = bindery::api::router(state.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let body = reqwest::get(format!("{base}/api/repoproviders"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let list: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
    let ids: Vec<&str> = list.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "gh",
            "gist",
            "git",
            "gl",
            "zenodo",
            "figshare",
            "hydroshare",
            "dataverse",
            "ckan",
            "swh"
        ]
    );
    assert_eq!(
        list[0],
        serde_json::json!({
            "displayName": "GitHub", "id": "gh",
            "spec": { "validateRegex": "[^/]+/[^/]+/.+" },
            "detect": { "regex": "^(https?://github.com/)?(?<repo>.*[^/])/?" },
            "repo": { "label": "GitHub repository name or URL", "placeholder": "example: binder-examples/requirements or https://github.com/binder-examples/requirements", "urlEncode": false },
            "ref": { "enabled": true, "default": "HEAD" },
        })
    );
    let zenodo = &list[4];
    assert_eq!(zenodo["ref"], serde_json::json!({ "enabled": false }));
    assert!(zenodo.get("detect").is_none());
    for (p, regex) in list.iter().zip([
        "[^/]+/[^/]+/.+",
        "[^/]+/[^/]+(/[^/]+)?",
        "[^/]+/.+",
        "[^/]+/.+",
        "10\\.\\d+\\/(.)+",
        "10\\.\\d+\\/(.)+",
        "[^/]+",
        "10\\.\\d+\\/(.)+",
        "[^/]+",
    ]) {
        assert_eq!(p["spec"]["validateRegex"], regex, "{}", p["id"]);
    }
}

/// The proof that an institution can add its own provider: the example in
/// `sdk/examples/forgejo`, built with the SDK and loaded from a path by config
/// into this already-built host, beside the bundled ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_institution_provider_loads_from_a_path() {
    let (app, _forges, _data) = forgejo_at(&support::fixture("bindery-plugin-forgejo")).await;
    assert_eq!(
        app.state.plugins.get("forge").unwrap().wit_version(),
        WitVersion::CURRENT
    );
}

/// A provider built with the SDK of `bindery:plugin@0.1.0` (kept in
/// `tests/fixtures/wit-0.1.0`) loads and resolves unchanged, and its content
/// is its `repo-url` at `resolved-ref`, fetched with git.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wit_0_1_0_provider_loads_resolves_and_builds_with_git() {
    let fixture = support::workspace().join("tests/fixtures/wit-0.1.0/forgejo-provider.wasm");
    let (app, _forges, _data) = forgejo_at(&fixture).await;
    let plugins = &app.state.plugins;
    assert_eq!(
        plugins.get("forge").unwrap().wit_version(),
        WitVersion::V0_1
    );
    let resolution = plugins
        .resolve("forge", "lab/analysis/main")
        .await
        .unwrap()
        .unwrap();
    let content = plugins
        .content("forge", &resolution)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(&content, ContentSource::Git(GitContent { url, revision, auth: None })
            if *url == resolution.repo_url && revision == SHA),
        "{content:?}"
    );
}

/// Starts a host with the forgejo example at `wasm` loaded as `forge`, and
/// checks that it resolves against the test forge as it always has. The forge
/// and the data directory live as long as the caller keeps them.
async fn forgejo_at(wasm: &Path) -> (App, Forges, tempfile::TempDir) {
    let forges = Forges::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut c = config(&forges, data.path());
    c.plugins.insert(
        "forge".into(),
        bindery::config::PluginConfig {
            hosts: vec!["127.0.0.1".into()],
            private_networks: vec!["127.0.0.0/8".parse().unwrap()],
            config: [(
                "base_url".to_string(),
                toml::Value::String(format!("{}/forgejo", forges.base)),
            )]
            .into(),
            ..support::plugin_at(wasm)
        },
    );
    let app = start(c).await;
    let state = &app.state;
    let r = resolve(state, "forge", "lab/analysis/main").await.unwrap();
    assert_eq!(r.resolved_ref, SHA);
    assert_eq!(
        r.repo_url,
        format!("{}/forgejo/lab/analysis.git", forges.base)
    );
    assert_eq!(r.resolved_spec, format!("lab/analysis/{SHA}"));
    assert_eq!(
        resolve(state, "forge", "lab/analysis/HEAD")
            .await
            .unwrap()
            .resolved_ref,
        SHA
    );
    assert!(matches!(
        resolve(state, "forge", "lab/analysis/gone").await,
        Err(ResolveError::NotFound { .. })
    ));
    assert!(matches!(
        resolve(state, "forge", "lab/../x").await,
        Err(ResolveError::Failed { .. })
    ));
    let loaded = state.plugins.get("forge").unwrap();
    assert_eq!(loaded.display.as_ref().unwrap().display_name, "Forgejo");
    (app, forges, data)
}

/// A branch link follows a push on the next click once the last resolution
/// is `moving_ref_revalidate_ms` old; while the forge is down, the last
/// resolution stands in rather than fail every launch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_shows_on_the_next_click_and_a_forge_outage_serves_the_last_revision() {
    let (server, first) = support::GitHttp::with_repo("group/repo.git").await;
    let data = tempfile::tempdir().unwrap();
    let forges = Forges::start().await;
    let mut c = config(&forges, data.path());
    c.plugins.get_mut("git").unwrap().private_networks = vec!["127.0.0.0/8".parse().unwrap()];
    c.cache.moving_ref_revalidate_ms = 3000;
    let app = start(c).await;
    let url = format!("http://127.0.0.1:{}/group/repo.git", server.port);
    let escaped = url.replace(':', "%3A").replace('/', "%2F");
    let spec = format!("{escaped}/HEAD");
    let head = || resolve(&app.state, "git", &spec);

    assert_eq!(head().await.unwrap().resolved_ref, first);
    let resolved_at = std::time::Instant::now();
    let pushed = server.commit("group/repo.git", &[("new.txt", b"pushed\n")]);
    // Within the window, the last resolution serves with no call.
    assert_eq!(head().await.unwrap().resolved_ref, first);
    tokio::time::sleep(
        std::time::Duration::from_millis(3100).saturating_sub(resolved_at.elapsed()),
    )
    .await;
    assert_eq!(
        head().await.unwrap().resolved_ref,
        pushed,
        "the next click sees the push"
    );

    drop(server);
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    assert_eq!(
        head().await.unwrap().resolved_ref,
        pushed,
        "the forge is down: the last resolution stands in"
    );
    // A ref never resolved has nothing to stand in.
    let other = format!("{escaped}/other");
    assert!(matches!(
        resolve(&app.state, "git", &other).await,
        Err(ResolveError::Failed { .. })
    ));
}
