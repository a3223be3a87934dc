//! HTTP figures: `/build` to `built` and to `ready` with the image already in
//! the (real, loopback) registry; `/versions`, `/api/repoproviders` and
//! `/build` throughput with wrk (Debian package `wrk`), beside a bare axum
//! handler in the same run as the baseline; RSS idle and with 1,000 open
//! streams watching one build. Launches are answered by the stub launcher of
//! the tests (in the bench only). Prints; asserts nothing.
//! Run with `cargo bench -p bindery --bench http`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bindery::config::Config;
use support::GitDaemon;
use support::registry::OciRegistry;
use support::service::{Service, TestBuilder, TestLauncher, git_spec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    kib / 1024.0
}

/// Runs wrk; returns (requests/s, p99 latency text).
fn wrk(url: &str, headers: &[&str]) -> (f64, String) {
    let mut cmd = std::process::Command::new("wrk");
    cmd.args(["-t2", "-c32", "-d10s", "--latency"]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd.arg(url).output().expect("wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .map_or(0.0, |v| v.trim().parse().unwrap());
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    if let Some(errors) = text
        .lines()
        .find(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
    {
        println!("    wrk: {}", errors.trim());
    }
    (rps, p99)
}

/// Reads a stream until a frame with `"phase":"<phase>"`; the time it took.
async fn until(port: u16, path: &str, phases: &[&str]) -> Vec<Duration> {
    let started = Instant::now();
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 8192];
    let mut times = Vec::new();
    for phase in phases {
        let needle = format!("\"phase\":\"{phase}\"");
        while !seen.contains(&needle) {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "stream ended before {phase}: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        times.push(started.elapsed());
    }
    times
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = support::service::bench_n(2_000);
    let (daemon, sha) = GitDaemon::with_repo("repo.git");
    let (other, _) = GitDaemon::with_repo("other.git");
    let registry = OciRegistry::start(None);
    let data = tempfile::tempdir().unwrap();
    let mut config = Config::load(None).unwrap();
    config.data_dir = data.path().to_path_buf();
    config.plugin_runtime.compile_cache_dir =
        Some(support::test_target_dir().join("compile-cache"));
    config.plugins.get_mut("git").unwrap().private_networks = vec!["127.0.0.0/8".parse().unwrap()];
    config.registry.url = Some(registry.url().parse().unwrap());
    config.registry.image_prefix = format!("{}/binder-", registry.host());
    config.web.rate_limit.limit = 0;
    // The first build goes through; the second (the other repository) waits forever.
    let gate = Arc::new(tokio::sync::Semaphore::new(1));
    let builder = Arc::new(TestBuilder {
        gate: Some(gate),
        ..TestBuilder::new(&registry, 10)
    });
    let s = Service::start(
        config,
        Some(builder),
        Some(Arc::new(TestLauncher::new("http://hub.test"))),
    )
    .await;
    let port: u16 = s.base.rsplit(':').next().unwrap().parse().unwrap();
    let url = format!("git://127.0.0.1:{}/repo.git", daemon.port);
    let by_sha = format!("/build/git/{}", git_spec(&url, &sha));
    let by_branch = format!("/build/git/{}", git_spec(&url, "main"));
    until(port, &by_sha, &["ready"]).await;
    until(port, &by_branch, &["ready"]).await;

    println!(
        "bindery {} · {} cores · n={n} sequential requests per row",
        bindery::VERSION,
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    for (label, path) in [
        ("/build, sha, image in registry", &by_sha),
        ("/build, branch within its TTL", &by_branch),
    ] {
        let mut built = Vec::with_capacity(n);
        let mut ready = Vec::with_capacity(n);
        for _ in 0..n {
            let t = until(port, path, &["built", "ready"]).await;
            built.push(t[0]);
            ready.push(t[1]);
        }
        built.sort();
        ready.sort();
        println!(
            "{label:<34} to built p50 {:>7.0} µs p99 {:>7.0} µs · to ready (stub launcher) p50 {:>7.0} µs p99 {:>7.0} µs",
            percentile(&built, 0.5).as_secs_f64() * 1e6,
            percentile(&built, 0.99).as_secs_f64() * 1e6,
            percentile(&ready, 0.5).as_secs_f64() * 1e6,
            percentile(&ready, 0.99).as_secs_f64() * 1e6,
        );
    }

    // Baseline: a bare axum handler on the same machine, in the same run.
    let bare = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bare_port = bare.local_addr().unwrap().port();
    tokio::spawn(async move {
        axum::serve(
            bare,
            axum::Router::new().route("/", axum::routing::get(|| async { "{}" })),
        )
        .await
        .unwrap();
    });
    let (base_rps, base_p99) =
        tokio::task::spawn_blocking(move || wrk(&format!("http://127.0.0.1:{bare_port}/"), &[]))
            .await
            .unwrap();
    println!(
        "wrk -t2 -c32 -d10s: bare axum handler (baseline)   {base_rps:>9.0} req/s  p99 {base_p99}"
    );
    for (label, path, headers) in [
        ("/versions", "/versions".to_string(), vec![]),
        (
            "/api/repoproviders",
            "/api/repoproviders".to_string(),
            vec![],
        ),
        (
            "/build, sha, image in registry",
            by_sha.clone(),
            vec!["Accept: text/event-stream"],
        ),
        (
            "/build, branch within its TTL",
            by_branch.clone(),
            vec!["Accept: text/event-stream"],
        ),
    ] {
        let url = format!("http://127.0.0.1:{port}{path}");
        let rss_before = rss_mib();
        let (rps, p99) = tokio::task::spawn_blocking(move || wrk(&url, &headers))
            .await
            .unwrap();
        println!(
            "wrk -t2 -c32 -d10s: {label:<31} {rps:>9.0} req/s  p99 {p99:<8} ({:.2}x baseline; RSS {rss_before:.1} → {:.1} MiB)",
            rps / base_rps,
            rss_mib()
        );
    }

    // RSS: idle, then with 1,000 streams watching one build that does not end.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_mib();
    let watched = format!(
        "/build/git/{}",
        git_spec(&format!("git://127.0.0.1:{}/other.git", other.port), "main")
    );
    let mut streams = Vec::new();
    for _ in 0..1_000 {
        let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        c.write_all(
            format!(
                "GET {watched} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        streams.push(c);
    }
    let mut buf = [0u8; 4096];
    for c in &mut streams {
        let mut seen = String::new();
        while !seen.contains("plain line 9") {
            let n = c.read(&mut buf).await.unwrap();
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    let busy = rss_mib();
    println!(
        "RSS (whole bench process: service, clients, wrk results): idle {idle:.1} MiB, with 1,000 open streams on one build {busy:.1} MiB (+{:.1} MiB, {:.1} KiB per stream)",
        busy - idle,
        (busy - idle) * 1024.0 / 1000.0
    );
    drop(streams);
}
