//! Plugins as OCI artifacts, against the real registry: `bindery plugin push`
//! (the CNCF Wasm layout), loading by digest with both digests checked, the
//! on-disk cache, tampering refused, and a changed reference in the
//! configuration file picked up by a running `bindery serve`.

use crate::support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bindery::config::{OciPluginConfig, PluginConfig, RuntimeConfig};
use bindery_runtime::PluginHost;
use serde_json::Value;
use support::registry::OciRegistry;

/// `bindery plugin push`; the reference it prints.
fn push(file: &Path, reference: &str, config: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_bindery"))
        .args(["plugin", "push"])
        .arg(file)
        .arg(reference)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_string()
}

fn runtime(registry: &OciRegistry) -> RuntimeConfig {
    RuntimeConfig {
        oci: OciPluginConfig {
            insecure_registries: vec![registry.host()],
            ..Default::default()
        },
        ..Default::default()
    }
}

fn from_oci(reference: &str) -> PluginConfig {
    PluginConfig {
        oci: Some(reference.into()),
        enabled: true,
        hosts: vec!["*".into()],
        ..Default::default()
    }
}

async fn start(
    data: &Path,
    registry: &OciRegistry,
    reference: &str,
) -> Result<std::sync::Arc<PluginHost>, String> {
    let config = support::config_with(data, "campus", from_oci(reference), runtime(registry));
    PluginHost::start(&config).await.map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// Why `reference` does not load.
async fn refused(registry: &OciRegistry, reference: &str) -> String {
    match start(tempfile::tempdir().unwrap().path(), registry, reference).await {
        Ok(_) => panic!("{reference} loaded"),
        Err(why) => why,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_plugin_loads_by_digest_and_tampering_is_refused() {
    let storage = tempfile::tempdir().unwrap();
    let registry = OciRegistry::start_on(&storage.path().join("data"));
    let cli = tempfile::tempdir().unwrap();
    let config_file = cli.path().join("bindery.toml");
    std::fs::write(
        &config_file,
        format!(
            "data_dir = \"{}\"\n[plugin_runtime.oci]\ninsecure_registries = [\"{}\"]\n",
            cli.path().display(),
            registry.host()
        ),
    )
    .unwrap();
    let wasm = support::fixture("hostile-provider");
    let reference = push(
        &wasm,
        &format!("{}/plugins/hostile:1.0.0", registry.host()),
        &config_file,
    );
    assert!(
        reference.starts_with(&format!(
            "oci://{}/plugins/hostile@sha256:",
            registry.host()
        )),
        "{reference}"
    );

    // The CNCF Wasm artifact layout.
    let digest = reference.rsplit_once('@').unwrap().1;
    let manifest: Value = reqwest::Client::new()
        .get(format!(
            "{}/v2/plugins/hostile/manifests/{digest}",
            registry.url()
        ))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        manifest["config"]["mediaType"], "application/vnd.wasm.config.v0+json",
        "{manifest}"
    );
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
    assert_eq!(manifest["layers"][0]["mediaType"], "application/wasm");
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        layer,
        format!(
            "sha256:{}",
            bindery_runtime::engine::sha256_hex(&std::fs::read(&wasm).unwrap())
        )
    );

    // Loaded by digest, and it works.
    let data = tempfile::tempdir().unwrap();
    let host = start(data.path(), &registry, &reference).await.unwrap();
    assert_eq!(
        host.resolve("campus", "ok/7")
            .await
            .unwrap()
            .unwrap()
            .resolved_ref,
        "ok-7"
    );
    assert_eq!(host.get("campus").unwrap().summary()["source"], reference);

    // A corrupted cache entry is pulled again.
    let cached = data
        .path()
        .join("plugin-oci")
        .join(format!("{}.wasm", digest.replace(':', "-")));
    std::fs::write(&cached, b"not a component").unwrap();
    assert!(start(data.path(), &registry, &reference).await.is_ok());
    assert_ne!(std::fs::read(&cached).unwrap(), b"not a component");

    // Only digests: a tag is a configuration error.
    let tagged = refused(
        &registry,
        &format!("oci://{}/plugins/hostile:1.0.0", registry.host()),
    )
    .await;
    assert!(tagged.contains("pin the component by digest"), "{tagged}");
    // A digest the registry does not have.
    let wrong = format!(
        "oci://{}/plugins/hostile@sha256:{}",
        registry.host(),
        "0".repeat(64)
    );
    let missing = refused(&registry, &wrong).await;
    assert!(
        missing.contains("cannot get its manifest from the registry"),
        "{missing}"
    );

    // Someone changes the blob in the registry's storage: refused.
    let hex = layer.strip_prefix("sha256:").unwrap();
    let blob = storage.path().join(format!(
        "data/docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ));
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&blob, &bytes).unwrap();
    let tampered = refused(&registry, &reference).await;
    assert!(
        tampered.contains(&format!(
            "the component blob does not match the {layer} its manifest names"
        )) && tampered.ends_with("refused"),
        "{tampered}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_reference_in_the_config_file_is_loaded_without_a_restart() {
    let registry = OciRegistry::start(None);
    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("bindery.toml");
    let port = support::free_port();
    let write_config = |reference: &str, extra: &str| {
        let text = format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nadmin_token = \"admin\"\n[plugin_runtime]\nreload_interval_ms = 200\n[plugin_runtime.oci]\ninsecure_registries = [\"{}\"]\n[plugins.campus]\noci = \"{reference}\"\nhosts = [\"*\"]\nconfig = {{ base_url = \"https://forge.example.org\" }}\n{extra}",
            dir.path().display(),
            registry.host()
        );
        // Written aside and renamed, as a config management tool (or a ConfigMap) does.
        std::fs::write(dir.path().join("next.toml"), text).unwrap();
        std::fs::rename(dir.path().join("next.toml"), &config_file).unwrap();
    };
    let push_config = dir.path().join("push.toml");
    std::fs::write(
        &push_config,
        format!(
            "data_dir = \"{}\"\n[plugin_runtime.oci]\ninsecure_registries = [\"{}\"]\n",
            dir.path().display(),
            registry.host()
        ),
    )
    .unwrap();
    let first = push(
        &support::fixture("hostile-provider"),
        &format!("{}/plugins/campus:1", registry.host()),
        &push_config,
    );
    let second = push(
        &support::fixture("bindery-plugin-forgejo"),
        &format!("{}/plugins/campus:2", registry.host()),
        &push_config,
    );
    write_config(&first, "");
    let mut server = Command::new(env!("CARGO_BIN_EXE_bindery"))
        .args(["serve", "--config"])
        .arg(&config_file)
        .env("BINDERY_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    let plugin = || async {
        let list: Value = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/admin/plugins"))
            .bearer_auth("admin")
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        list.as_array()?
            .iter()
            .find(|p| p["name"] == "campus")
            .cloned()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let loaded = loop {
        if let Some(p) = plugin().await {
            break p;
        }
        assert!(Instant::now() < deadline, "bindery serve did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(loaded["source"], first);

    write_config(&second, "");
    let deadline = Instant::now() + Duration::from_secs(20);
    let replaced = loop {
        let p = plugin().await.unwrap();
        if p["source"] == second.as_str() {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "the new reference was not loaded: {p}\n{}",
            std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(replaced["plugin_name"], "forgejo", "{replaced}");

    // The same component with new settings is linked again with them.
    write_config(&second, "call_timeout_ms = 1234\n");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let p = plugin().await.unwrap();
        if p["limits"]["timeout_ms"] == 1234 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new settings were not applied: {p}\n{}",
            std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = server.kill();
    let _ = server.wait();
}

/// `bindery plugin push` logs in as `docker push` does, from the Docker
/// config, when `[plugin_runtime.oci]` names no login; without one the
/// registry's refusal is said.
#[test]
fn push_logs_in_with_the_docker_config() {
    use base64::Engine;
    let registry = OciRegistry::start(Some(("pusher", "s3cret")));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("push.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[plugin_runtime.oci]\ninsecure_registries = [\"{}\"]\n",
            dir.path().display(),
            registry.host()
        ),
    )
    .unwrap();
    let docker = dir.path().join("docker");
    std::fs::create_dir(&docker).unwrap();
    let wasm = support::fixture("hostile-provider");
    let reference = format!("{}/plugins/campus:1", registry.host());
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_bindery"))
            .args(["plugin", "push"])
            .arg(&wasm)
            .arg(&reference)
            .arg("--config")
            .arg(&config)
            .env("DOCKER_CONFIG", &docker)
            .output()
            .unwrap()
    };
    let anonymous = run();
    assert!(!anonymous.status.success());
    let said = String::from_utf8_lossy(&anonymous.stderr);
    assert!(said.contains("cannot push to"), "{said}");

    let auth = base64::engine::general_purpose::STANDARD.encode("pusher:s3cret");
    std::fs::write(
        docker.join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#,
            registry.host()
        ),
    )
    .unwrap();
    let logged_in = run();
    let said = String::from_utf8_lossy(&logged_in.stderr);
    assert!(logged_in.status.success(), "{said}");
    assert!(said.contains("as pusher (Docker config)"), "{said}");
    let pinned = String::from_utf8_lossy(&logged_in.stdout);
    assert!(
        pinned.contains(&format!("oci://{}/plugins/campus@sha256:", registry.host())),
        "{pinned}"
    );
}
