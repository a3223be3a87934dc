//! What a launch link, a spec or a plugin must not be able to do: reach
//! loopback, cloud metadata or private networks through any bundled provider
//! or the host's git import (by address, by a name resolving to one, by an
//! address in disguise, or by a redirect); read files, environment or secrets
//! nobody granted; or get past the build token and the rate limit in a burst.
//!
//! Every loopback address is loopback to the host, so the tests stand a
//! "public" server on 127.0.0.2 (granted with `private_networks =
//! ["127.0.0.2/32"]`) and a victim on 127.0.0.1 (not granted) that counts
//! every request it gets. Names that resolve to forbidden addresses are
//! `localhost`, and names of a hosts file that `bindery serve` sees in a
//! mount namespace of its own (`unshare -m`, as root): the system resolver
//! answers them as it would a DNS record.

use crate::support;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bindery::app::App;
use bindery::config::{Config, SecretSource};
use bindery::pipeline::ResolveError;
use bindery_runtime::PluginHost;
use bindery_runtime::bindings::PluginError;
use bindery_runtime::error::LoadError;
use support::registry::OciRegistry;
use support::service::{
    Process, Service, TestBuilder, build_only, git_spec, page_build_token, sse,
};
use support::{
    API_PROVIDERS, GitDaemon, config_with, fixture, http_server, plugin_at, test_target_dir,
};

fn escaped(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A server on 127.0.0.2 that answers every request with a redirect to
/// whatever `target` holds; its base URL.
async fn redirector(target: Arc<Mutex<String>>) -> String {
    let app = axum::Router::new().fallback(move || {
        let to = target.lock().unwrap().clone();
        async move {
            (
                axum::http::StatusCode::FOUND,
                [(axum::http::header::LOCATION, to)],
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let base = format!("http://127.0.0.2:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// Where a redirect or a spec may try to send a provider: the victim's
/// port on loopback (as an address, a name, a mapped IPv6 address and a bare
/// number), cloud metadata, and private networks.
fn forbidden(victim: u16) -> Vec<String> {
    vec![
        format!("http://127.0.0.1:{victim}/"),
        format!("http://localhost:{victim}/"),
        format!("http://[::ffff:127.0.0.1]:{victim}/"),
        format!("http://2130706433:{victim}/"),
        format!("http://0x7f.1:{victim}/"),
        "http://169.254.169.254/latest/meta-data/".into(),
        "http://[fd00:ec2::254]/latest/meta-data/".into(),
        "http://10.0.0.1/".into(),
        "http://172.16.0.1/".into(),
        "http://192.168.1.1/".into(),
        "http://100.64.0.1/".into(),
    ]
}

/// Every bundled provider.
fn providers() -> impl Iterator<Item = &'static str> {
    API_PROVIDERS.into_iter().chain(["git"])
}

/// The embedded defaults, every provider allowed every host name (the most
/// an operator can open) and only 127.0.0.2 of the non-public addresses, its
/// API pointed at the redirector.
fn open_config(data: &std::path::Path, redirector: &str) -> Config {
    let mut config = Config::load(None).unwrap();
    config.data_dir = data.to_path_buf();
    config.plugin_runtime.compile_cache_dir = Some(test_target_dir().join("compile-cache"));
    for name in providers() {
        let p = config.plugins.get_mut(name).unwrap();
        p.hosts = vec!["*".into()];
        p.private_networks = vec!["127.0.0.2/32".parse().unwrap()];
        let keys: &[&str] = match name {
            "gh" | "gist" | "gl" | "swh" => &["api_base_url"],
            "zenodo" | "dataverse" => &["doi_resolver"],
            "figshare" => &["doi_resolver", "api_base_url"],
            "hydroshare" => &["base_url"],
            _ => &[],
        };
        for k in keys {
            p.config
                .insert(k.to_string(), toml::Value::String(redirector.into()));
        }
    }
    config
}

/// A spec of `provider` that makes it call its API (the redirector) or, for
/// the providers whose specs carry URLs, `url`; `n` keeps specs distinct.
fn spec(provider: &str, url: &str, n: usize) -> String {
    match provider {
        "gh" => format!("org/repo{n}/HEAD"),
        "gist" => format!("user/abc{n}"),
        "gl" => format!("group%2Fproject{n}/HEAD"),
        "zenodo" => format!("10.5281/zenodo.{}", 3242074 + n),
        "figshare" => format!("10.6084/m9.figshare.{}.v1", 9782777 + n),
        "hydroshare" => format!("{:032x}", n + 1),
        "dataverse" => format!("10.7910/DVN/TJCL{n:02}"),
        "swh" => format!("swh:1:dir:{:040x}", n + 1),
        "ckan" => escaped(&format!("{url}dataset/x{n}")),
        "git" => format!("{}/HEAD", escaped(&format!("{url}repo{n}.git"))),
        other => unreachable!("{other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_provider_reaches_loopback_metadata_or_private_networks() {
    let (victim, hits) = http_server(b"the instance's credentials".to_vec(), Duration::ZERO).await;
    let target = Arc::new(Mutex::new(String::new()));
    let redirector = redirector(target.clone()).await;
    let data = tempfile::tempdir().unwrap();
    let plugins = PluginHost::start(&open_config(data.path(), &redirector))
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let app = App::new(open_config(data.path(), &redirector), plugins).unwrap();
    let state = &app.state;
    let mut n = 0;
    let refused = |provider: &str,
                   spec: String,
                   result: Result<bindery::pipeline::Resolved, ResolveError>| {
        match result {
            Err(ResolveError::Failed { message, .. }) => {
                // The git wire follows no redirect; the http capability
                // checks where one leads.
                let words = [
                    "non-public",
                    "AddressDenied",
                    "does not follow a repository's redirects",
                ];
                assert!(
                    words.iter().any(|w| message.contains(w)),
                    "{provider}:{spec}: {message}"
                );
            }
            Err(ResolveError::NotFound { .. }) => {}
            other => panic!("{provider}:{spec}: expected a refusal, got {other:?}"),
        }
    };
    for to in forbidden(victim) {
        *target.lock().unwrap() = to.clone();
        // Through a redirect from the provider's own (granted) API.
        for provider in providers() {
            n += 1;
            let s = spec(provider, &format!("{redirector}/"), n);
            refused(
                provider,
                s.clone(),
                state.resolver.resolve(provider, &s).await,
            );
        }
        // Written into the spec.
        for provider in ["git", "ckan"] {
            n += 1;
            let s = spec(provider, &to, n);
            refused(
                provider,
                s.clone(),
                state.resolver.resolve(provider, &s).await,
            );
        }
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a provider reached the victim"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_git_import_fetches_only_from_addresses_its_provider_may_reach() {
    let (daemon, _) = GitDaemon::with_repo("repo.git");
    let (victim, hits) = http_server(b"the instance's credentials".to_vec(), Duration::ZERO).await;
    let target = Arc::new(Mutex::new(format!(
        "http://127.0.0.1:{victim}/repo.git/info/refs?service=git-upload-pack"
    )));
    let redirector = redirector(target).await;
    let registry = OciRegistry::start(None);
    let data = tempfile::tempdir().unwrap();
    let mut c = support::service::config(data.path(), Some(&registry));
    c.plugins.get_mut("git").unwrap().private_networks = vec!["127.0.0.2/32".parse().unwrap()];
    c.web.rate_limit.limit = 0;
    c.web.api_only = true;
    let s = Service::planned(c).await;
    // A sha is taken as is, so nothing is asked of the server before the fetch.
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let build = |url: String| {
        let base = s.base.clone();
        async move { build_only(&base, &url, sha).await }
    };
    for url in [
        format!("git://127.0.0.1:{}/repo.git", daemon.port),
        format!("git://localhost:{}/repo.git", daemon.port),
        format!("http://[::1]:{victim}/repo.git"),
        format!("http://2130706433:{victim}/repo.git"),
        "http://169.254.169.254/repo.git".into(),
        "https://10.0.0.1/repo.git".into(),
    ] {
        let got = build(url.clone()).await;
        assert_eq!(got.last()["phase"], "failed", "{url}: {}", got.raw);
        let m = got.last()["message"].as_str().unwrap();
        assert!(
            m.starts_with("Bindery does not fetch ") && m.contains("non-public address"),
            "{url}: {m}"
        );
    }
    // A granted server that redirects to the victim is not followed.
    let got = build(format!("{redirector}/repo.git")).await;
    assert_eq!(got.last()["phase"], "failed", "{}", got.raw);
    assert!(
        got.last()["message"]
            .as_str()
            .unwrap()
            .contains("does not follow a repository's redirects"),
        "{}",
        got.raw
    );
    // Nor is a file path.
    let got = build("file:///etc/repo.git".into()).await;
    assert_eq!(got.last()["phase"], "failed", "{}", got.raw);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the git import reached the victim"
    );
    // Build directories are removed off the request's task: give it a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(data.path().join("builds")).is_ok_and(|mut d| d.next().is_some()) {
        assert!(
            std::time::Instant::now() < deadline,
            "something is left in the build directory"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_reads_no_file_environment_or_secret_it_was_not_granted() {
    // SAFETY: this test binary's only reader of these variables is this test.
    unsafe {
        std::env::set_var("SECURITY_TEST_TOKEN", "granted-value");
        std::env::set_var("SECURITY_TEST_OTHER", "not-granted");
    }
    let secret_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret_file.path(), "file-secret").unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut plugin = plugin_at(&fixture("hostile-provider"));
    plugin.hosts = vec!["*".into()];
    plugin.secrets = [(
        "token".to_string(),
        SecretSource::Env("SECURITY_TEST_TOKEN".into()),
    )]
    .into();
    let host = PluginHost::start(&config_with(
        data.path(),
        "hostile",
        plugin,
        Default::default(),
    ))
    .await
    .unwrap_or_else(|e| panic!("{e:?}"));
    let call = |spec: String| {
        let host = host.clone();
        async move { host.resolve("hostile", &spec).await.unwrap() }
    };
    // The granted secret, by its name.
    assert_eq!(
        call("secret/token".into()).await.unwrap().resolved_ref,
        "secret-len-13"
    );
    // Not the environment: neither the variable behind it nor any other.
    assert_eq!(
        call("env".into()).await.unwrap().resolved_ref,
        "env-count-0"
    );
    for name in [
        "SECURITY_TEST_TOKEN",
        "SECURITY_TEST_OTHER",
        "HOME",
        "JUPYTERHUB_API_TOKEN",
    ] {
        assert!(
            call(format!("env/{name}")).await.is_err(),
            "{name} is visible to the plugin"
        );
    }
    // Not secrets by another name.
    assert!(matches!(
        call("secret/SECURITY_TEST_OTHER".into()).await,
        Err(PluginError::Unauthorized(_))
    ));
    // Nor files: a component that imports the file system does not load.
    let reader = plugin_at(&fixture("files-provider"));
    match PluginHost::start(&config_with(
        data.path(),
        "files",
        reader,
        Default::default(),
    ))
    .await
    {
        Err(errors) => match &errors[..] {
            [LoadError::ImportNotGranted { import, hint, .. }] => {
                assert!(import.starts_with("wasi:filesystem/"), "{import}");
                assert!(hint.contains("plugins have no file system"), "{hint}");
            }
            other => panic!("{other:?}"),
        },
        Ok(_) => panic!("a plugin that reads files was loaded"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugins_git_listing_follows_no_redirect_to_a_forbidden_address() {
    let (victim, hits) = http_server(b"the instance's credentials".to_vec(), Duration::ZERO).await;
    let target = Arc::new(Mutex::new(format!(
        "http://127.0.0.1:{victim}/repo.git/info/refs?service=git-upload-pack"
    )));
    let redirector = redirector(target).await;
    let data = tempfile::tempdir().unwrap();
    let mut plugin = plugin_at(&fixture("hostile-provider"));
    plugin.hosts = vec!["*".into()];
    plugin.private_networks = vec!["127.0.0.2/32".parse().unwrap()];
    let host = PluginHost::start(&config_with(
        data.path(),
        "hostile",
        plugin,
        Default::default(),
    ))
    .await
    .unwrap_or_else(|e| panic!("{e:?}"));
    match host
        .resolve("hostile", &format!("ls-remote/{redirector}/repo.git"))
        .await
        .unwrap()
    {
        Err(PluginError::Internal(m)) => assert!(
            m.contains("does not follow a repository's redirects"),
            "{m}"
        ),
        other => panic!("expected the redirect to be refused, got {other:?}"),
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the listing reached the victim"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_and_build_tokens_hold_under_a_burst() {
    let (daemon, _) = GitDaemon::with_repo("repo.git");
    let registry = OciRegistry::start(None);
    let data = tempfile::tempdir().unwrap();
    let mut c = support::service::config(data.path(), Some(&registry));
    c.web.rate_limit.limit = 10;
    let secret = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let secret_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret_file.path(), secret).unwrap();
    c.web.build_token_secret = Some(SecretSource::File(secret_file.path().to_path_buf()));
    let s = Service::start(c, Some(Arc::new(TestBuilder::new(&registry, 0))), None).await;
    let spec = git_spec(&format!("git://127.0.0.1:{}/repo.git", daemon.port), "main");
    let url = format!("{}/build/git/{spec}", s.base);

    // The page's load counts as the launch: its token comes out of the limit.
    let token = page_build_token(&s.base, &spec).await;
    // 100 requests at once from one address: exactly the rest of the limit get through.
    let burst: Vec<_> = (0..100)
        .map(|_| tokio::spawn(sse_owned(url.clone())))
        .collect();
    let mut limited = 0;
    for got in burst {
        let got = got.await.unwrap();
        if got.last()["status_code"] == 429 {
            limited += 1;
        }
    }
    assert_eq!(limited, 91, "the limit of 10 let {} through", 100 - limited);

    // Past the limit, the token still lets its page's request and the event
    // stream's reconnects through, five in all, and then no more.
    let burst: Vec<_> = (0..8)
        .map(|_| tokio::spawn(sse_owned(format!("{url}?build_token={token}"))))
        .collect();
    let mut through = 0;
    for got in burst {
        let got = got.await.unwrap();
        if got.last()["status_code"] == 429 {
            assert!(
                got.last()["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("Rate limit exceeded"),
                "{}",
                got.raw
            );
        } else {
            through += 1;
        }
    }
    assert_eq!(through, 5, "a spent token is a pass round the limit");
    // A page loaded over the limit carries no token.
    let page = reqwest::get(format!("{}/v2/git/{spec}", s.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("\"buildToken\":\""), "{page}");

    // Forged tokens are refused: unsigned, signed with another key, expired,
    // for another spec, or issued to another origin.
    use base64::Engine as _;
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let audience = format!("git/{spec}");
    let claims = |exp: u64, aud: &str, origin: &str| serde_json::json!({ "exp": exp, "aud": aud, "origin": origin });
    let unsigned = format!(
        "{}.{}.",
        b64(serde_json::json!({ "alg": "none", "typ": "JWT" })),
        b64(claims(now + 300, &audience, ""))
    );
    let key = |secret: &[u8]| jsonwebtoken::EncodingKey::from_secret(secret);
    let sign = |claims: serde_json::Value, secret: &[u8]| {
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key(secret)).unwrap()
    };
    let real = hex::decode(secret).unwrap();
    let origin = s.base.trim_start_matches("http://").to_string();
    for (what, forged) in [
        ("unsigned", unsigned),
        (
            "another key",
            sign(claims(now + 300, &audience, &origin), b"another key"),
        ),
        (
            "expired",
            sign(claims(now - 120, &audience, &origin), &real),
        ),
        (
            "another spec",
            sign(claims(now + 300, "git/other", &origin), &real),
        ),
        (
            "another origin",
            sign(claims(now + 300, &audience, "evil.example.org"), &real),
        ),
    ] {
        let got = sse(&format!("{url}?build_token={forged}")).await;
        let m = got.last()["message"].as_str().unwrap_or_default();
        assert!(m.starts_with("Invalid build token"), "{what}: {}", got.raw);
    }
}

async fn sse_owned(url: String) -> support::service::Stream {
    sse(&url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_resolve_to_forbidden_addresses_are_refused() {
    let (victim, hits) = http_server(b"the instance's credentials".to_vec(), Duration::ZERO).await;
    let data = tempfile::tempdir().unwrap();
    let hosts = data.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n::1 localhost\n127.0.0.1 sneaky.example.org\n::1 sneaky6.example.org\n169.254.169.254 metadata.example.org\n10.0.0.1 intranet.example.org\n192.168.1.1 router.example.org\n").unwrap();
    let mut c = support::service::config(data.path(), None);
    c.listen = support::free_addr();
    c.plugins.get_mut("git").unwrap().private_networks = vec!["127.0.0.2/32".parse().unwrap()];
    c.web.api_only = true;
    c.web.rate_limit.limit = 0;
    let script = format!(
        "mount --bind {} /etc/hosts && exec \"$0\" \"$@\"",
        hosts.display()
    );
    let _bindery =
        Process::start_under(&["unshare", "-m", "sh", "-c", &script], &c, data.path()).await;
    let base = format!("http://{}", c.listen);
    let sha = "0123456789abcdef0123456789abcdef01234567";
    for (name, address) in [
        (format!("sneaky.example.org:{victim}"), "127.0.0.1"),
        (format!("sneaky6.example.org:{victim}"), "::1"),
        ("metadata.example.org".to_string(), "169.254.169.254"),
        ("intranet.example.org".to_string(), "10.0.0.1"),
        ("router.example.org".to_string(), "192.168.1.1"),
    ] {
        let url = format!("http://{name}/repo.git");
        // Resolving a branch asks the server (the provider's ls-remote)...
        let got = build_only(&base, &url, "main").await;
        let m = got.last()["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            m.contains("AddressDenied") && m.contains(address),
            "{url}: {}",
            got.raw
        );
        // ...a sha does not, so the host's git import is what refuses it.
        let got = build_only(&base, &url, sha).await;
        let m = got.last()["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            m.starts_with("Bindery does not fetch ")
                && m.contains(address)
                && m.contains("non-public"),
            "{url}: {}",
            got.raw
        );
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a name led Bindery to the victim"
    );
}

/// Every byte but the unreserved ones percent-encoded, as a spec carries a URL.
fn percent_encoded(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_git_url_is_fetched_from_the_host_it_was_checked_as() {
    // `bindery serve` runs in a network namespace of its own with only
    // loopback up: `public.example` resolves (its hosts file) to a public
    // address no route leads to, so no packet leaves the machine, and a
    // victim git daemon on 127.0.0.1:8585 logs every connection it gets.
    let data = tempfile::tempdir().unwrap();
    let hosts = data.path().join("hosts");
    std::fs::write(
        &hosts,
        "127.0.0.1 localhost\n93.184.216.34 public.example\n",
    )
    .unwrap();
    let victim_log = data.path().join("victim.log");
    let mut c = support::service::config(data.path(), None);
    c.listen = "127.0.0.1:8080".parse().unwrap();
    c.plugins.get_mut("git").unwrap().private_networks = Vec::new();
    c.web.api_only = true;
    c.web.rate_limit.limit = 0;
    let script = format!(
        "ip link set lo up && mount --bind {hosts} /etc/hosts && \
         {{ git daemon --verbose --reuseaddr --listen=127.0.0.1 --port=8585 --base-path={base} 2>{log} & }} && \
         exec \"$0\" \"$@\"",
        hosts = hosts.display(),
        base = data.path().display(),
        log = victim_log.display(),
    );
    let bindery = Process::spawn_under(
        &["unshare", "-n", "-m", "sh", "-c", &script],
        &c,
        data.path(),
    );
    let namespace = format!("--net=/proc/{}/ns/net", bindery.0.id());
    let inside = move |url: String| {
        let namespace = namespace.clone();
        async move {
            let out = tokio::process::Command::new("nsenter")
                .args([namespace.as_str(), "curl", "-sN", "--max-time", "120"])
                .args(["-H", "accept: text/event-stream", &url])
                .output()
                .await
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !inside("http://127.0.0.1:8080/versions".into())
        .await
        .contains("builder")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "bindery serve did not start: {}",
            std::fs::read_to_string(data.path().join("bindery.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let connections = || {
        std::fs::read_to_string(&victim_log)
            .unwrap_or_default()
            .matches("Connection from")
            .count()
    };
    let sha = "0123456789abcdef0123456789abcdef01234567";
    for scheme in ["http", "https", "git"] {
        for trick in ["?@", "#@", "\\@"] {
            let url = format!("{scheme}://public.example{trick}127.0.0.1:8585/x.git");
            // A branch is resolved by the provider's ls-remote; a sha is
            // fetched by the host's git import.
            for reference in ["main", sha] {
                let spec = format!("{}/{reference}", percent_encoded(&url));
                let raw = inside(format!(
                    "http://127.0.0.1:8080/build/git/{spec}?build_only=true"
                ))
                .await;
                let last = raw.trim_end().rsplit("data: ").next().unwrap_or_default();
                let last: serde_json::Value = serde_json::from_str(last).unwrap_or_default();
                assert_eq!(last["phase"], "failed", "{url} at {reference}: {raw}");
                assert_eq!(
                    connections(),
                    0,
                    "{url} at {reference} reached 127.0.0.1:8585: {raw}"
                );
            }
        }
    }
    // The victim was listening all along.
    let _ = inside("http://127.0.0.1:8585/".into()).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while connections() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the victim logs no connection"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
