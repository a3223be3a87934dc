//! A plugin author's path: `bindery plugin new`, native tests, a wasm build,
//! and the host loading the result and resolving against a real git server.

use crate::support;

use bindery::authoring::{cargo, new_plugin};
use bindery::config::{PluginConfig, RuntimeConfig};
use bindery_runtime::PluginHost;
use bindery_runtime::bindings::{PluginError, PluginKind};
use serde_json::Value;
use support::*;

/// `bindery-sdk` as `cargo package` makes it for crates.io, unpacked
/// outside the checkout: what a plugin crate gets from the registry.
fn packaged_sdk(into: &std::path::Path) -> std::path::PathBuf {
    let target = test_target_dir().join("sdk-package");
    let out = cargo::cargo_command()
        .args([
            "package",
            "--quiet",
            "--no-verify",
            "--allow-dirty",
            "--locked",
        ])
        .args(["-p", "bindery-sdk", "--target-dir"])
        .arg(&target)
        .current_dir(workspace())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let name = format!("bindery-sdk-{}", env!("CARGO_PKG_VERSION"));
    let unpacked = std::process::Command::new("tar")
        .arg("xzf")
        .arg(target.join("package").join(format!("{name}.crate")))
        .arg("-C")
        .arg(into)
        .status()
        .unwrap();
    assert!(unpacked.success());
    into.join(name)
}

/// A provider from `plugin new` as an operator with only the binary gets
/// it: it names `bindery-sdk` by version, and cargo finds the packaged SDK
/// (no checkout anywhere near the crate). It passes its tests, builds,
/// loads and resolves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_provider_tests_builds_loads_and_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let root = new_plugin(PluginKind::Provider, "campus-git", dir.path(), None).unwrap();
    let manifest = root.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let wanted = format!("bindery-sdk = \"{}\"", env!("CARGO_PKG_VERSION"));
    assert!(text.contains(&wanted), "{text}");
    // As if from crates.io: the packaged crate stands in for the release.
    let sdk = packaged_sdk(dir.path());
    std::fs::write(
        &manifest,
        format!(
            "{text}\n[patch.crates-io]\nbindery-sdk = {{ path = {:?} }}\n",
            sdk.display().to_string()
        ),
    )
    .unwrap();
    let target = test_target_dir().join("template");

    // Its own native tests pass as generated.
    let out = cargo::cargo_command()
        .args(["test", "--quiet", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "native tests failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("2 passed"), "{stdout}");
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap();
    let entry = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"bindery-sdk\""))
        .unwrap();
    assert!(!entry.contains("source ="), "not the packaged SDK: {entry}");

    // `bindery plugin build` shows cargo's progress as it goes, and prints a
    // component small enough to ship anywhere; the source is short.
    let built = std::process::Command::new(env!("CARGO_BIN_EXE_bindery"))
        .args(["plugin", "build"])
        .arg(&root)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    let progress = String::from_utf8_lossy(&built.stderr);
    assert!(built.status.success(), "{progress}");
    assert!(
        progress.contains("Compiling bindery-plugin-campus-git") && progress.contains("Finished"),
        "{progress}"
    );
    let wasm = std::path::PathBuf::from(String::from_utf8(built.stdout).unwrap().trim());
    let size = std::fs::metadata(&wasm).unwrap().len();
    assert!(size < 300_000, "component is {size} bytes");
    let code = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let plugin_lines = code.split("#[cfg(test)]").next().unwrap().lines().count();
    assert!(plugin_lines < 40, "the provider is {plugin_lines} lines");

    // The host loads it and it resolves a branch on a real git daemon.
    let (daemon, sha) = GitDaemon::with_repo("group/project.git");
    let base = format!("git://127.0.0.1:{}", daemon.port);
    let plugin = PluginConfig {
        hosts: vec!["127.0.0.1".into()],
        private_networks: vec!["127.0.0.0/8".parse().unwrap()],
        config: [("base_url".to_string(), toml::Value::String(base.clone()))].into(),
        ..plugin_at(&wasm)
    };
    let data = tempfile::tempdir().unwrap();
    let host = PluginHost::start(&config_with(
        data.path(),
        "campus",
        plugin.clone(),
        RuntimeConfig::default(),
    ))
    .await
    .unwrap_or_else(|e| panic!("{e:?}"));
    let loaded = host.get("campus").unwrap();
    assert_eq!(loaded.ungranted, vec!["host `git.example.edu`".to_string()]);
    let r = host
        .resolve("campus", "group/project/main")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.resolved_ref, sha);
    assert_eq!(r.repo_url, format!("{base}/group/project.git"));
    match host
        .resolve("campus", "group/project/no-such-branch")
        .await
        .unwrap()
    {
        Err(PluginError::NotFound(m)) => assert!(m.contains("no-such-branch"), "{m}"),
        other => panic!("expected not found, got {other:?}"),
    }
    assert_eq!(host.display("campus").await.unwrap().id, "campus-git");

    // Without the private-network grant the same git server is out of reach.
    let denied = PluginConfig {
        private_networks: vec![],
        ..plugin
    };
    let host = PluginHost::start(&config_with(
        data.path(),
        "campus",
        denied,
        RuntimeConfig::default(),
    ))
    .await
    .unwrap();
    match host.resolve("campus", "group/project/main").await.unwrap() {
        Err(PluginError::Upstream(u)) => {
            assert!(u.message.contains("AddressDenied"), "{}", u.message);
        }
        other => panic!("expected a denial, got {other:?}"),
    }

    // A required config key left unset fails the load with the key's name.
    let unset = PluginConfig {
        config: Default::default(),
        ..plugin_at(&wasm)
    };
    let PluginConfig { hosts, .. } = PluginConfig {
        hosts: vec!["127.0.0.1".into()],
        ..Default::default()
    };
    let e = match PluginHost::start(&config_with(
        data.path(),
        "campus",
        PluginConfig { hosts, ..unset },
        RuntimeConfig::default(),
    ))
    .await
    {
        Err(mut e) => e.remove(0).to_string(),
        Ok(_) => panic!("should not load without base_url"),
    };
    assert!(
        e.contains("required config keys are not set: base_url"),
        "{e}"
    );
}

#[test]
fn every_template_kind_generates_a_crate_whose_native_tests_pass() {
    let dir = tempfile::tempdir().unwrap();
    for (kind, name) in [
        (PluginKind::BuildStrategy, "campus-builds"),
        (PluginKind::CullPolicy, "campus-cull"),
        (PluginKind::PoolPolicy, "campus-pool"),
    ] {
        let root = new_plugin(kind, name, dir.path(), Some(&workspace().join("sdk"))).unwrap();
        let out = cargo::cargo_command()
            .args(["test", "--quiet", "--manifest-path"])
            .arg(root.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(test_target_dir().join("template"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let wasm = cargo::build_plugins(
            &root.join("Cargo.toml"),
            &[&format!("bindery-plugin-{name}")],
            &test_target_dir().join("template"),
            "release",
        );
        assert!(wasm.is_ok(), "{name}: {wasm:?}");
    }
}

#[test]
fn every_template_kind_generates_rustfmt_clean_code() {
    let dir = tempfile::tempdir().unwrap();
    for (kind, name) in [
        (PluginKind::Provider, "campus-git"),
        (PluginKind::BuildStrategy, "campus-builds"),
        (PluginKind::CullPolicy, "campus-cull"),
        (PluginKind::PoolPolicy, "campus-pool"),
    ] {
        let root = new_plugin(kind, name, dir.path(), Some(&workspace().join("sdk"))).unwrap();
        let out = std::process::Command::new("cargo")
            .args(["fmt", "--check", "--manifest-path"])
            .arg(root.join("Cargo.toml"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: the generated code is not rustfmt-clean:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `bindery plugin call` on `wasm` with `bindery.toml` text `config`.
fn plugin_run(
    wasm: &std::path::Path,
    name: &str,
    config: &str,
    args: &[&str],
) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bindery.toml");
    std::fs::write(
        &file,
        format!(
            "data_dir = {:?}\n{config}",
            dir.path().display().to_string()
        ),
    )
    .unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_bindery"))
        .args(["plugin", "call"])
        .arg(wasm)
        .args(args)
        .args(["--as", name, "--config"])
        .arg(&file)
        .output()
        .unwrap()
}

/// [`plugin_run`]'s JSON answer, and whether it exited 0.
fn plugin_call(wasm: &std::path::Path, name: &str, config: &str, args: &[&str]) -> (Value, bool) {
    let out = plugin_run(wasm, name, config, args);
    let said = String::from_utf8_lossy(&out.stdout);
    let answer = serde_json::from_str(&said).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {said}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (answer, out.status.success())
}

#[test]
fn plugin_call_runs_a_provider_with_its_grants_against_a_real_git_server() {
    let wasm = fixture("bindery-plugin-git");
    let (daemon, sha) = GitDaemon::with_repo("group/project.git");
    let url = format!("git://127.0.0.1:{}/group/project.git", daemon.port);
    let spec = format!("{}/HEAD", url.replace(':', "%3A").replace('/', "%2F"));
    let granted = "[plugins.git]\nhosts = [\"127.0.0.1\"]\nprivate_networks = [\"127.0.0.0/8\"]\n";
    let (answer, ok) = plugin_call(&wasm, "git", granted, &["resolve", &spec]);
    assert!(ok, "{answer}");
    assert_eq!(answer["Ok"]["resolved_ref"], sha.as_str(), "{answer}");
    assert_eq!(answer["Ok"]["repo_url"], url.as_str());
    let (answer, ok) = plugin_call(&wasm, "git", granted, &["content", &spec]);
    assert!(ok, "{answer}");
    assert_eq!(answer["Ok"]["Git"]["revision"], sha.as_str(), "{answer}");

    // The same grants as the host's: a host not granted is refused...
    let other =
        "[plugins.git]\nhosts = [\"git.example.org\"]\nprivate_networks = [\"127.0.0.0/8\"]\n";
    let (answer, ok) = plugin_call(&wasm, "git", other, &["resolve", &spec]);
    assert!(!ok);
    let refused = answer["Err"]["Upstream"]["message"].as_str().unwrap();
    assert!(refused.contains("HostNotGranted"), "{answer}");
    // ...and granted no hosts at all it does not load, as in the host.
    let out = plugin_run(&wasm, "campus-git", "", &["resolve", &spec]);
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("hosts"), "{said}");
    // A typed error: a ref the remote does not have.
    let missing = spec.replace("/HEAD", "/no-such-branch");
    let (answer, ok) = plugin_call(&wasm, "git", granted, &["resolve", &missing]);
    assert!(!ok);
    assert!(answer["Err"]["NotFound"].is_string(), "{answer}");
}

#[test]
fn plugin_call_plans_a_repository_and_decides_on_servers() {
    let strategy = fixture("bindery-plugin-repo2docker");
    let repo = tempfile::tempdir().unwrap();
    std::fs::write(repo.path().join("requirements.txt"), "numpy\n").unwrap();
    let dir = repo.path().display().to_string();
    let (answer, ok) = plugin_call(&strategy, "repo2docker", "", &["plan", &dir]);
    assert!(ok, "{answer}");
    assert_eq!(
        answer["Ok"]["Repo2docker"]["buildpack"], "PythonBuildPack",
        "{answer}"
    );

    let cull = fixture("bindery-plugin-idle");
    let server = |user: &str, last_activity_ms: u64| {
        serde_json::json!({
            "user": user, "server_name": "", "image": "i", "repo_url": "r",
            "provider": "gh", "spec": "a/b/HEAD", "started_ms": 0,
            "last_activity_ms": last_activity_ms, "state": "Ready",
            "user_options_json": "{}",
        })
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let servers = serde_json::json!([server("idle", 0), server("busy", now)]).to_string();
    let config = "[plugins.idle]\nconfig = { timeout_secs = 60 }\n";
    let (answer, ok) = plugin_call(&cull, "idle", config, &["decide", &servers]);
    assert!(ok, "{answer}");
    let decisions = answer["Ok"].as_array().unwrap();
    assert!(
        decisions[0]["StopAndDeleteUser"]
            .as_str()
            .is_some_and(|why| why.contains("limit 60 s")),
        "{answer}"
    );
    assert_eq!(decisions[1], "Keep", "{answer}");

    // A function the kind does not have is refused with the ones it has.
    let out = plugin_run(&cull, "idle", "", &["resolve", "x"]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("is a cull-policy plugin: metadata | decide"),
        "{said}"
    );
}
