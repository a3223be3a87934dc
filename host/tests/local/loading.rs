//! Loading plugins: what a component may import, which WIT it was built
//! against, the compiled-code cache, and replacement without a restart.

use crate::support;

use std::time::{Duration, Instant};

use bindery::config::{PluginConfig, RuntimeConfig};
use bindery_runtime::{CompileOutcome, LoadError, PluginHost, Reloaded};
use support::*;

async fn load_err(plugin: PluginConfig) -> LoadError {
    let data = tempfile::tempdir().unwrap();
    let config = config_with(data.path(), "candidate", plugin, RuntimeConfig::default());
    match PluginHost::start(&config).await {
        Ok(_) => panic!("the plugin should not load"),
        Err(mut errors) => errors.remove(0),
    }
}

fn hostile_granted() -> PluginConfig {
    PluginConfig {
        hosts: vec!["api.example.org".into()],
        secrets: [(
            "token".to_string(),
            bindery::config::SecretSource::Env("UNSET_TOKEN".into()),
        )]
        .into(),
        ..plugin_at(&fixture("hostile-provider"))
    }
}

#[tokio::test]
async fn an_import_that_was_not_granted_fails_the_load() {
    // The hostile provider imports `http`; without a `hosts` grant it must not load.
    let e = load_err(PluginConfig {
        hosts: vec![],
        ..hostile_granted()
    })
    .await;
    assert_eq!(
        e.to_string(),
        "plugin `candidate` imports `bindery:plugin/http@0.2.0`, which is not granted: in [plugins.candidate], \
         list the hosts it may reach under `hosts`, e.g. `hosts = [\"api.example.org\"]`"
    );
}

#[tokio::test]
async fn wasi_sockets_are_never_linked() {
    let e = load_err(plugin_at(&fixture("sockets-provider"))).await;
    match &e {
        LoadError::ImportNotGranted {
            plugin,
            import,
            hint,
        } => {
            assert_eq!(plugin, "candidate");
            assert!(import.starts_with("wasi:sockets/"), "{import}");
            assert!(hint.contains("plugins have no sockets"), "{hint}");
        }
        other => panic!("expected a refused import, got {other}"),
    }
}

/// A provider built with plain wit-bindgen against `bindery:plugin@1.0.0`:
/// the WIT of this repository with its version changed.
fn component_for_wit_version(version: &str) -> std::path::PathBuf {
    let dir = test_target_dir().join(format!("wit-{version}"));
    let wit = dir.join("wit");
    std::fs::create_dir_all(wit.join("x")).unwrap();
    std::fs::remove_dir(wit.join("x")).unwrap();
    for entry in std::fs::read_dir(workspace().join("wit")).unwrap() {
        let entry = entry.unwrap();
        let text = std::fs::read_to_string(entry.path())
            .unwrap()
            .replace("@0.2.0", &format!("@{version}"));
        std::fs::write(wit.join(entry.file_name()), text).unwrap();
    }
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        r#"[package]
name = "other-wit-provider"
version = "0.1.0"
edition = "2024"
[workspace]
[lib]
crate-type = ["cdylib"]
[dependencies]
wit-bindgen = { version = "0.61", default-features = false, features = ["macros", "realloc", "std", "macro-string"] }
"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("src/lib.rs"),
        r#"wit_bindgen::generate!({ world: "provider", path: "wit" });
use exports::bindery::plugin::repo_provider::{ContentSource, DisplayConfig, Guest, Resolution};
use bindery::plugin::types::*;
struct P;
impl Guest for P {
    fn metadata() -> PluginMetadata {
        PluginMetadata { name: "other".into(), version: "1.0.0".into(), kind: PluginKind::Provider, description: String::new(),
            requests: CapabilityRequests { hosts: vec![], config_keys: vec![], secrets: vec![] } }
    }
    fn display() -> DisplayConfig { unreachable!() }
    fn resolve(spec: String) -> Result<Resolution, PluginError> {
        bindery::plugin::log::log(LogLevel::Info, &spec);
        Err(PluginError::NotFound(spec))
    }
    fn content(_: Resolution) -> Result<ContentSource, PluginError> { unreachable!() }
}
export!(P);
"#,
    )
    .unwrap();
    bindery::authoring::cargo::build_plugins(
        &dir.join("Cargo.toml"),
        &["other-wit-provider"],
        &test_target_dir(),
        "release",
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .remove(0)
}

#[tokio::test]
async fn a_component_built_against_another_wit_major_fails_the_load() {
    let e = load_err(plugin_at(&component_for_wit_version("1.0.0"))).await;
    assert_eq!(
        e.to_string(),
        "plugin `candidate` was built against `bindery:plugin/types@1.0.0`, but this host implements \
         bindery:plugin@0.2.0 (and loads 0.1.0 components); rebuild it with a matching bindery-sdk"
    );
}

#[tokio::test]
async fn unreadable_and_invalid_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let e = load_err(plugin_at(&dir.path().join("missing.wasm"))).await;
    assert!(matches!(e, LoadError::Read { .. }), "{e}");
    assert!(e.to_string().contains("missing.wasm"), "{e}");
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm but not really").unwrap();
    let e = load_err(plugin_at(&junk)).await;
    assert!(
        e.to_string()
            .starts_with("plugin `candidate`: not a valid WebAssembly component"),
        "{e}"
    );
    let e = load_err(PluginConfig {
        bundled: Some("no-such".into()),
        enabled: true,
        ..Default::default()
    })
    .await;
    assert!(e.to_string().contains("bundles no plugin `no-such`"), "{e}");
}

async fn start(data: &std::path::Path, plugin: PluginConfig) -> std::sync::Arc<PluginHost> {
    let config = config_with(data, "hostile", plugin, RuntimeConfig::default());
    PluginHost::start(&config)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
}

#[tokio::test]
async fn the_second_start_loads_from_the_compile_cache() {
    let data = tempfile::tempdir().unwrap();
    let first = start(data.path(), hostile_granted()).await;
    let cold = first.get("hostile").unwrap();
    assert_eq!(cold.compiled, CompileOutcome::Compiled);
    drop(first);

    let second = start(data.path(), hostile_granted()).await;
    let warm = second.get("hostile").unwrap();
    assert_eq!(warm.compiled, CompileOutcome::FromCache);
    eprintln!(
        "load: compiled {:?}, from cache {:?}",
        cold.load_time, warm.load_time
    );
    assert_eq!(
        second
            .resolve("hostile", "ok/1")
            .await
            .unwrap()
            .unwrap()
            .resolved_ref,
        "ok-1"
    );

    // A corrupted artifact is discarded and rebuilt, not trusted. (Written in
    // place only after the host that maps it is gone: Bindery itself always
    // replaces artifacts by rename, so live mappings never change under it.)
    let artifact = second.runtime().cache_path(&warm.sha256);
    drop((second, warm, cold));
    std::fs::write(&artifact, b"corrupt").unwrap();
    assert_eq!(
        compiled(data.path(), hostile_granted()).await,
        CompileOutcome::Compiled
    );
}

/// How the hostile plugin's component was obtained when a host starts with `plugin`.
async fn compiled(data: &std::path::Path, plugin: PluginConfig) -> CompileOutcome {
    start(data, plugin).await.get("hostile").unwrap().compiled
}

#[tokio::test]
async fn a_changed_component_or_engine_config_recompiles() {
    let data = tempfile::tempdir().unwrap();
    start(data.path(), hostile_granted()).await;

    let changed = data.path().join("changed.wasm");
    std::fs::write(
        &changed,
        with_custom_section(
            &std::fs::read(fixture("hostile-provider")).unwrap(),
            "rebuilt",
            b"1",
        ),
    )
    .unwrap();
    let path = PluginConfig {
        path: Some(changed),
        ..hostile_granted()
    };
    assert_eq!(compiled(data.path(), path).await, CompileOutcome::Compiled);

    // Fuel metering changes the generated code: the same component recompiles.
    let fuel = || PluginConfig {
        fuel: Some(1 << 30),
        ..hostile_granted()
    };
    assert_eq!(
        compiled(data.path(), fuel()).await,
        CompileOutcome::Compiled
    );
    assert_eq!(
        compiled(data.path(), fuel()).await,
        CompileOutcome::FromCache
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_file_is_picked_up_and_calls_in_flight_finish_on_the_old_version() {
    let data = tempfile::tempdir().unwrap();
    let path = data.path().join("hostile.wasm");
    let original = std::fs::read(fixture("hostile-provider")).unwrap();
    std::fs::write(&path, &original).unwrap();
    let (slow, _) = http_server(b"slow".to_vec(), Duration::from_millis(600)).await;
    let plugin = PluginConfig {
        path: Some(path.clone()),
        hosts: vec!["127.0.0.1".into()],
        private_networks: vec!["127.0.0.0/8".parse().unwrap()],
        ..hostile_granted()
    };
    let host = start(data.path(), plugin).await;
    let old_sha = host.get("hostile").unwrap().sha256.clone();
    assert!(
        host.reload_changed().await.is_empty(),
        "nothing changed yet"
    );

    let in_flight = {
        let host = host.clone();
        tokio::spawn(async move {
            host.resolve("hostile", &format!("fetch/http://127.0.0.1:{slow}/"))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let replacement = with_custom_section(&original, "rebuilt", b"2");
    std::fs::write(&path, &replacement).unwrap();
    let t = Instant::now();
    let reloaded = host.reload_changed().await;
    assert_eq!(reloaded.len(), 1);
    match &reloaded[0].1 {
        Ok(Reloaded::Replaced { old, new }) => {
            assert_eq!(old, &old_sha);
            assert_ne!(new, &old_sha);
        }
        other => panic!("expected a replacement, got {other:?}"),
    }
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "reload waited for the call in flight"
    );
    assert_eq!(
        in_flight.await.unwrap().unwrap().unwrap().resolved_ref,
        "200:4"
    );

    // A broken replacement keeps the loaded version serving.
    std::fs::write(&path, b"not wasm").unwrap();
    let reloaded = host.reload_changed().await;
    assert!(
        matches!(reloaded[0].1, Err(LoadError::Invalid { .. })),
        "{:?}",
        reloaded[0].1
    );
    assert_ne!(host.get("hostile").unwrap().sha256, old_sha);
    assert_eq!(
        host.resolve("hostile", "ok/still")
            .await
            .unwrap()
            .unwrap()
            .resolved_ref,
        "ok-still"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_lists_and_reloads_plugins() {
    let data = tempfile::tempdir().unwrap();
    let mut config = config_with(
        data.path(),
        "hostile",
        hostile_granted(),
        RuntimeConfig::default(),
    );
    config.admin_token = Some("let-me-in".into());
    let plugins = PluginHost::start(&config).await.unwrap();
    let app = bindery::app::App::new(config, plugins).unwrap();
    let state = app.state.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, bindery::api::router(state)).await });

    let client = reqwest::Client::new();
    let admin = |method: reqwest::Method, path: &str, token: Option<&str>| {
        let request = client.request(method, format!("{base}/admin/{path}"));
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        async move { request.send().await.unwrap() }
    };
    let reload = |name: &str, token| {
        admin(
            reqwest::Method::POST,
            &format!("plugins/{name}/reload"),
            token,
        )
    };
    assert_eq!(reload("hostile", None).await.status(), 401);
    assert_eq!(reload("hostile", Some("wrong")).await.status(), 401);
    let r = reload("hostile", Some("let-me-in")).await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(body["outcome"], "unchanged");
    assert_eq!(reload("nope", Some("let-me-in")).await.status(), 404);
    let list = admin(reqwest::Method::GET, "plugins", Some("let-me-in")).await;
    let list: serde_json::Value = serde_json::from_slice(&list.bytes().await.unwrap()).unwrap();
    assert_eq!(list[0]["name"], "hostile");
    assert_eq!(list[0]["kind"], "provider");
    assert_eq!(
        list[0]["capabilities"],
        serde_json::json!(["log", "clock", "config", "secrets", "http", "git"])
    );
    let health = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

/// A build strategy and a cull policy built with the SDK of
/// `bindery:plugin@0.1.0` (kept in `tests/fixtures/wit-0.1.0`) load and
/// decide as they always have (the provider is in `providers.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wit_0_1_0_strategies_and_cull_policies_plan_and_decide() {
    use bindery::build::BuildRequest;
    use bindery_runtime::WitVersion;
    use bindery_runtime::bindings::{BuildPlan, Decision, Server, ServerState};
    let data = tempfile::tempdir().unwrap();
    let fixtures = workspace().join("tests/fixtures/wit-0.1.0");
    let mut config = bindery::config::Config::load(None).unwrap();
    config.data_dir = data.path().to_path_buf();
    config.plugin_runtime.compile_cache_dir = Some(test_target_dir().join("compile-cache"));
    for p in config.plugins.values_mut() {
        p.enabled = false;
    }
    config.plugins.insert(
        "old-strategy".into(),
        plugin_at(&fixtures.join("repo2docker-strategy.wasm")),
    );
    config.plugins.insert(
        "old-cull".into(),
        plugin_at(&fixtures.join("idle-cull.wasm")),
    );
    let plugins = PluginHost::start(&config)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    for name in ["old-strategy", "old-cull"] {
        assert_eq!(
            plugins.get(name).unwrap().wit_version(),
            WitVersion::V0_1,
            "{name}"
        );
    }

    let repo = tempfile::tempdir().unwrap();
    std::fs::write(repo.path().join("requirements.txt"), "numpy\n").unwrap();
    let request = BuildRequest {
        image: "reg/binder-a-b:0123456789abcdef0123456789abcdef01234567".into(),
        build_name: "build-a-b".into(),
        repo_url: "https://github.com/a/b".into(),
        resolved_ref: "0123456789abcdef0123456789abcdef01234567".into(),
        provider: "gh".into(),
        spec: "a/b/HEAD".into(),
        build_slug: "a-b".into(),
        resolved_spec: "a/b/0123456789abcdef0123456789abcdef01234567".into(),
        ref_url: "https://github.com/a/b/tree/0123456789abcdef0123456789abcdef01234567".into(),
        immutable: true,
        repo_config: Default::default(),
        credential: None,
    };
    match bindery::build::strategy::plan(&plugins, "old-strategy", &request, repo.path(), &[]).await
    {
        Ok(BuildPlan::Repo2docker(p)) => assert_eq!(p.buildpack, "PythonBuildPack"),
        other => panic!("{other:?}"),
    }

    let now = 10_000_000_000;
    let server = |idle_secs: u64| Server {
        user: "u".into(),
        server_name: String::new(),
        image: "reg/binder-a-b:1".into(),
        repo_url: "https://github.com/a/b".into(),
        provider: "gh".into(),
        spec: "a/b/HEAD".into(),
        started_ms: now - idle_secs * 1000,
        last_activity_ms: Some(now - idle_secs * 1000),
        state: ServerState::Ready,
        user_options_json: "{}".into(),
    };
    let decisions = plugins
        .decide("old-cull", now, &[server(60), server(7200)])
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(decisions[0], Decision::Pass | Decision::Keep),
        "{decisions:?}"
    );
    assert!(
        matches!(
            &decisions[1],
            Decision::Stop(_) | Decision::StopAndDeleteUser(_)
        ),
        "{decisions:?}"
    );
}

/// The bundled pool policy loads with the defaults, and a pool-policy call
/// is typed end to end: demand in, one size per image out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundled_pool_policy_sizes_images_by_recent_launches() {
    use bindery_runtime::bindings::{ImageDemand, PluginKind, PoolBounds};
    let data = tempfile::tempdir().unwrap();
    let mut config = bindery::config::Config::load(None).unwrap();
    config.data_dir = data.path().to_path_buf();
    config.plugin_runtime.compile_cache_dir = Some(test_target_dir().join("compile-cache"));
    for (name, p) in &mut config.plugins {
        p.enabled = name == "popular" || name == "idle";
    }
    config.plugins.get_mut("popular").unwrap().config =
        toml::from_str("max_per_image = 2").unwrap();
    let plugins = PluginHost::start(&config)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(
        plugins.get("popular").unwrap().kind(),
        PluginKind::PoolPolicy
    );
    let image = |recent_launches: f64| ImageDemand {
        image: "reg/binder-a-b:1".into(),
        repo_url: "https://github.com/a/b".into(),
        provider: "gh".into(),
        spec: "a/b/HEAD".into(),
        recent_launches,
        last_launch_ms: 0,
        pooled: 0,
    };
    let bounds = PoolBounds {
        max_servers: 4,
        quota_room: Some(3),
    };
    let sizes = plugins
        .pool_sizes("popular", 0, bounds, &[image(1.0), image(4.0), image(50.0)])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sizes, [0, 2, 2]);
    // Asked as a cull policy, it is the wrong kind of plugin.
    let wrong = plugins.decide("popular", 0, &[]).await.unwrap_err();
    assert!(wrong.to_string().contains("popular"), "{wrong}");
    let wrong = plugins
        .pool_sizes("idle", 0, bounds, &[])
        .await
        .unwrap_err();
    assert!(wrong.to_string().contains("idle"), "{wrong}");
}

#[tokio::test]
async fn bundled_plugins_load_the_code_compiled_with_the_binary() {
    let data = tempfile::tempdir().unwrap();
    let mut config = bindery::config::Config::load(None).unwrap();
    config.data_dir = data.path().to_path_buf();
    let outcomes = async |config: &bindery::config::Config| {
        let host = PluginHost::start(config)
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        let outcomes: Vec<(String, CompileOutcome)> = host
            .list()
            .iter()
            .map(|p| (p.name.to_string(), p.compiled))
            .collect();
        assert!(!outcomes.is_empty());
        outcomes
    };
    // An empty data directory: nothing is compiled, and the code is cached.
    for (name, outcome) in outcomes(&config).await {
        assert_eq!(outcome, CompileOutcome::Precompiled, "{name}");
    }
    for (name, outcome) in outcomes(&config).await {
        assert_eq!(outcome, CompileOutcome::FromCache, "{name}");
    }
    // An engine configured otherwise than the one that compiled them (fuel
    // metering changes the code) compiles them itself.
    config.plugin_runtime.fuel = Some(1 << 40);
    let data = tempfile::tempdir().unwrap();
    config.data_dir = data.path().to_path_buf();
    for (name, outcome) in outcomes(&config).await {
        assert_eq!(outcome, CompileOutcome::Compiled, "{name}");
    }
}

/// A new process on an empty data directory answers at once: the bundled
/// plugins come compiled, and a plugin from a file loads in the background
/// while a request that needs it waits. The file is a FIFO here, so the
/// plugin can only load once the test writes it, like a slow network
/// filesystem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_with_an_empty_data_dir_answers_before_a_plugin_file_is_loaded() {
    let data = tempfile::tempdir().unwrap();
    let fifo = data.path().join("hostile.wasm");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let mut config = bindery::config::Config::load(None).unwrap();
    config.data_dir = data.path().join("data");
    config.listen = free_addr();
    config.plugin_runtime.reload_interval_ms = 0;
    config.plugins.insert(
        "hostile".into(),
        PluginConfig {
            path: Some(fifo.clone()),
            ..hostile_granted()
        },
    );
    let base = format!("http://{}", config.listen);
    let serving = support::service::Process::start_logging("info", &config, data.path()).await;
    let versions = reqwest::get(format!("{base}/versions")).await.unwrap();
    assert_eq!(versions.status(), 200);
    let log = std::fs::read_to_string(data.path().join("bindery.log")).unwrap();
    assert!(log.contains("compiled=Precompiled"), "{log}");
    assert!(!log.contains("compiled=Compiled"), "{log}");
    assert!(!log.contains("all plugins loaded"), "{log}");

    // A launch through the plugin waits for it.
    let url = format!("{base}/build/hostile/ok/x");
    let launch = tokio::spawn(async move { support::service::sse(&url).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !launch.is_finished(),
        "{}",
        launch.await.map(|s| s.raw).unwrap_or_default()
    );
    std::fs::write(&fifo, std::fs::read(fixture("hostile-provider")).unwrap()).unwrap();
    let got = launch.await.unwrap();
    assert!(!got.raw.contains("not loaded"), "{}", got.raw);
    assert!(
        got.raw.contains("ok-x"),
        "the plugin resolved the spec: {}",
        got.raw
    );
    let log = std::fs::read_to_string(data.path().join("bindery.log")).unwrap();
    assert!(log.contains("all plugins loaded"), "{log}");
    drop(serving);
}

/// A plugin file that fails to load in the background stops the service
/// with the message a failed start gives.
#[tokio::test]
async fn a_plugin_file_that_fails_to_load_after_the_start_stops_the_service() {
    let data = tempfile::tempdir().unwrap();
    let mut config = bindery::config::Config::load(None).unwrap();
    config.data_dir = data.path().join("data");
    config.listen = free_addr();
    let missing = data.path().join("missing.wasm");
    config.plugins.insert("hostile".into(), plugin_at(&missing));
    let mut serving = support::service::Process::spawn_under(&[], &config, data.path());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = serving.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the service did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success());
    let log = std::fs::read_to_string(data.path().join("bindery.log")).unwrap();
    assert!(
        log.contains("plugins failed to load") && log.contains("missing.wasm"),
        "{log}"
    );
}
