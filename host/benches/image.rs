//! Deployment figures: the size of Bindery's image (the `Dockerfile`'s
//! `prebuilt` target around this release binary, on the Debian base made
//! by `scripts/engine.sh`) beside that base; the image's start time to a
//! `200 /health`; and a plugin's pull-and-load from the real local registry
//! (empty caches) against loading it from the on-disk OCI cache and against
//! the same component bundled in the binary. Prints; asserts nothing.
//! Run with `cargo bench -p bindery --bench image`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use bindery::config::{OciPluginConfig, PluginConfig, RuntimeConfig};
use bindery_runtime::PluginHost;
use bindery_runtime::oci::OciPlugins;
use support::engine::engine;
use support::registry::OciRegistry;
use support::service::median;

const RUNS: usize = 5;

fn size_mb(image: &str) -> f64 {
    let out = engine().docker(&["image", "inspect", "--format", "{{.Size}}", image]);
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse::<f64>()
        .unwrap()
        / 1e6
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_bindery"));
    let tag = "bindery-bench/bindery:release";
    support::image::build(binary, tag);
    let (image, base) = (size_mb(tag), size_mb("bindery-test/debian:bookworm"));
    println!(
        "image {tag}: {image:.1} MB; its base (debootstrap minbase + libssl3, ca-certificates): base alone {base:.1} MB; the binary {:.1} MB",
        std::fs::metadata(binary).unwrap().len() as f64 / 1e6
    );

    let mut starts = Vec::new();
    for _ in 0..RUNS {
        let port = support::free_port();
        let name = format!("bindery-bench-{port}");
        let started = Instant::now();
        let run = engine().docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "host",
            tag,
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            "/var/lib/bindery",
        ]);
        assert!(run.status.success());
        while !reqwest::get(format!("http://127.0.0.1:{port}/health"))
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        starts.push(started.elapsed());
        engine().docker(&["rm", "-f", &name]);
    }
    println!(
        "`docker run` to the first 200 /health, {RUNS} runs: median {:?} ({starts:?})",
        median(starts.clone())
    );

    // A plugin from the registry.
    let registry = OciRegistry::start(None);
    let wasm = std::fs::read(support::fixture("hostile-provider")).unwrap();
    let oci = OciPluginConfig {
        insecure_registries: vec![registry.host()],
        ..Default::default()
    };
    let reference = OciPlugins::new(&oci, std::path::Path::new("/nonexistent"))
        .push(
            wasm.clone(),
            &format!("{}/plugins/hostile:1", registry.host()),
        )
        .await
        .unwrap();
    let load = |data: &std::path::Path, plugin: PluginConfig| {
        let runtime = RuntimeConfig {
            oci: oci.clone(),
            ..Default::default()
        };
        support::config_with(
            data,
            "campus",
            PluginConfig {
                enabled: true,
                hosts: vec!["*".into()],
                ..plugin
            },
            runtime,
        )
    };
    let (mut cold, mut cached, mut file) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let data = tempfile::tempdir().unwrap();
        let from_oci = load(
            data.path(),
            PluginConfig {
                oci: Some(reference.clone()),
                ..Default::default()
            },
        );
        let started = Instant::now();
        PluginHost::start(&from_oci).await.unwrap();
        cold.push(started.elapsed());
        let started = Instant::now();
        PluginHost::start(&from_oci).await.unwrap();
        cached.push(started.elapsed());
        let path = data.path().join("hostile.wasm");
        std::fs::write(&path, &wasm).unwrap();
        let from_file = load(
            data.path(),
            PluginConfig {
                path: Some(path),
                ..Default::default()
            },
        );
        let started = Instant::now();
        PluginHost::start(&from_file).await.unwrap();
        file.push(started.elapsed());
    }
    println!(
        "plugin ({} KB) pull + compile + load, empty caches: median {:?} ({cold:?})",
        wasm.len() / 1024,
        median(cold.clone())
    );
    println!(
        "the same from the OCI cache and the compile cache: median {:?} ({cached:?})",
        median(cached.clone())
    );
    println!(
        "baseline, the same component from a file, compile cache warm: median {:?} ({file:?})",
        median(file.clone())
    );
    engine().docker(&["rmi", tag]);
}
