//! The warm pool against the real JupyterHub of the tests (DockerSpawner on
//! the test engine): click to `ready` for a launch of an image that is in
//! the registry, without the pool (the hub spawns a server) and with a
//! started pool server waiting, in the same run. Prints; asserts nothing.
//! Run with `cargo bench -p bindery --bench pool`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::hub::{JupyterHub, built_repo, launch_config, launch_service, with_pool};
use support::registry::OciRegistry;
use support::service::{Service, git_spec, sse};

const ROUNDS: usize = 12;

/// Click to `ready`: the event stream of a launch, read to its end.
async fn click_to_ready(s: &Service, path: &str) -> (Duration, String) {
    let started = Instant::now();
    let got = sse(&format!("{}/build/{path}", s.base)).await;
    assert_eq!(got.last()["phase"], "ready", "{}", got.raw);
    let url = got.last()["url"].as_str().unwrap().to_string();
    (started.elapsed(), url)
}

/// Waits until the pool has a ready server no launch has claimed, and the
/// pool has seen it up (it polls its new servers every 250 ms).
async fn pool_has_one(hub: &JupyterHub) {
    hub.ready_pool_servers(1).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
}

fn quantiles(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    let p99 = v[((v.len() * 99).div_ceil(100)).saturating_sub(1)];
    (v[v.len() / 2], p99)
}

/// The launches' users (claimed pool servers among them), deleted with
/// their servers, so that every round starts from the same hub.
async fn delete_launched(hub: &JupyterHub) {
    for u in hub.users().await {
        let launched = u["groups"]
            .as_array()
            .is_some_and(|g| g.iter().any(|g| g == "binder-users"));
        if launched {
            let name = u["name"].as_str().unwrap_or_default();
            hub.api(reqwest::Method::DELETE, &format!("users/{name}"))
                .await;
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let registry = OciRegistry::start(None);
    let hub = JupyterHub::start().await;
    let (repo, sha, _) = built_repo(&registry);
    let path = format!("git/{}", git_spec(&repo.url, &sha));

    // Without the pool: every launch is a spawn on the hub.
    let plain_dir = tempfile::tempdir().unwrap();
    let plain = launch_service(launch_config(
        plain_dir.path(),
        &registry,
        &hub.url,
        &hub.token,
    ))
    .await;
    click_to_ready(&plain, &path).await; // the engine's first start of the image
    let mut cached = Vec::new();
    for _ in 0..ROUNDS {
        cached.push(click_to_ready(&plain, &path).await.0);
        delete_launched(&hub).await;
    }
    drop(plain);

    // With the pool: one server of the image waits for each launch.
    let pooled_dir = tempfile::tempdir().unwrap();
    let mut c = launch_config(pooled_dir.path(), &registry, &hub.url, &hub.token);
    with_pool(&mut c, 1);
    let pooled_service = launch_service(c).await;
    click_to_ready(&pooled_service, &path).await;
    let mut pooled = Vec::new();
    let mut handed = 0;
    for _ in 0..ROUNDS {
        pool_has_one(&hub).await;
        let (took, url) = click_to_ready(&pooled_service, &path).await;
        handed += usize::from(url.contains("/user/pool-"));
        pooled.push(took);
        delete_launched(&hub).await;
    }

    // What a waiting pool server costs: its container's memory, as the
    // engine counts it (Bindery's own share is a few strings per server).
    pool_has_one(&hub).await;
    let stats = std::process::Command::new("docker")
        .args([
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}}\t{{.MemUsage}}",
        ])
        .env("DOCKER_HOST", &support::engine::engine().docker_host)
        .output()
        .expect("docker stats");
    let stats = String::from_utf8_lossy(&stats.stdout);
    let idle_pool_server: Vec<&str> = stats.lines().filter(|l| l.contains("-pool-")).collect();

    let (c50, c99) = quantiles(cached);
    let (p50, p99) = quantiles(pooled);
    println!(
        "click to ready, real JupyterHub (DockerSpawner), {ROUNDS} launches each, sequential:"
    );
    println!("  cached image, no pool: p50 {c50:.2?}  p99 {c99:.2?}");
    println!(
        "  pooled server handed:  p50 {p50:.2?}  p99 {p99:.2?}  ({handed} of {ROUNDS} handed a pool server)"
    );
    println!(
        "  ratio cached / pooled, p50: {:.1}x",
        c50.as_secs_f64() / p50.as_secs_f64()
    );
    println!("memory of a waiting pool server (docker stats): {idle_pool_server:?}");
}
