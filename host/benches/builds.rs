//! Build figures: a layer build of a content-only commit against a full
//! local repo2docker rebuild of the same commit, in one run (the real engine,
//! repo2docker and registry of the tests, from `scripts/engine.sh`); and a
//! layer build of a 50 MB repository. Prints medians; asserts nothing.
//! Run with `cargo bench -p bindery --bench builds`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use support::engine::{DOCKERFILE, TestRepo, build_config, noise};
use support::registry::OciRegistry;
use support::service::{Service, git_spec, median, time_to_ready};

const ROUNDS: usize = 5;

/// Builds `reference` (build only); the time to `ready`.
async fn timed(s: &Service, repo: &TestRepo, reference: &str) -> Duration {
    time_to_ready(s, &format!("git/{}", git_spec(&repo.url, reference))).await
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let registry = OciRegistry::start(None);
    let repo = TestRepo::new();
    let base = repo.commit(
        &[("Dockerfile", DOCKERFILE), ("data.csv", &noise(200_000, 1))],
        &[],
    );

    // layer-first: the first build is full and becomes the environment image.
    let layered_data = tempfile::tempdir().unwrap();
    let layered = Service::planned(build_config(layered_data.path(), &registry).await).await;
    let first = timed(&layered, &repo, &base).await;
    // repo2docker only: every commit is a full rebuild (the engine's cache warm).
    let full_data = tempfile::tempdir().unwrap();
    let mut full_config = build_config(full_data.path(), &registry).await;
    full_config.build.strategy = "repo2docker".into();
    full_config.plugins.get_mut("repo2docker").unwrap().enabled = true;
    full_config.registry.image_prefix = format!("{}/full-", registry.host());
    let full = Service::planned(full_config).await;

    let (mut layer_times, mut full_times) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let sha = repo.commit(
            &[(
                &format!("notebook-{round}.ipynb"),
                br#"{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}"#,
            )],
            &[],
        );
        layer_times.push(timed(&layered, &repo, &sha).await);
        full_times.push(timed(&full, &repo, &sha).await);
    }
    let (layer, full_median) = (median(layer_times.clone()), median(full_times.clone()));
    println!(
        "first (full) build of the environment: {:.2} s",
        first.as_secs_f64()
    );
    println!(
        "content-only commit, {ROUNDS} rounds: layer {:.2} s median (runs {layer_times:.2?}), full repo2docker rebuild {:.2} s median (runs {full_times:.2?})",
        layer.as_secs_f64(),
        full_median.as_secs_f64()
    );
    println!(
        "ratio full / layer: {:.1}x",
        full_median.as_secs_f64() / layer.as_secs_f64()
    );

    // 50 MB of content on the same environment.
    let mut big = Vec::new();
    for round in 0..3 {
        let files: Vec<(String, Vec<u8>)> = (0..10)
            .map(|i| {
                (
                    format!("big/part-{i}.bin"),
                    noise(5 << 20, (round * 10 + i + 7) as u64),
                )
            })
            .collect();
        let refs: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(p, b)| (p.as_str(), b.as_slice()))
            .collect();
        let sha = repo.commit(&refs, &[]);
        big.push(timed(&layered, &repo, &sha).await);
    }
    println!(
        "layer build of a 50 MB repository (fetch, tar, gzip, push): {:.2} s median (runs {big:.2?})",
        median(big.clone()).as_secs_f64()
    );
}
