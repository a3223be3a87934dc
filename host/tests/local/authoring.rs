//! A plugin author's path: `bindery plugin new`, native tests, a wasm build,
//! and the host loading the result and resolving against a real git server.

use crate::support;

use bindery::authoring::{cargo, new_plugin};
use bindery::config::{PluginConfig, RuntimeConfig};
use bindery_runtime::PluginHost;
use bindery_runtime::bindings::{PluginError, PluginKind};
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
    assert!(plugin_lines < 60, "the provider is {plugin_lines} lines");

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
