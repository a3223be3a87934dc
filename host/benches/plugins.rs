//! Plugin runtime figures: instantiate + call latency, load from the compile
//! cache vs a compile, and `bindery serve` start-up. Prints numbers; asserts
//! nothing. Run with `cargo bench -p bindery --bench plugins`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use bindery::config::{PluginConfig, RuntimeConfig};
use bindery_runtime::{CompileOutcome, PluginHost};
use support::*;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn summary(label: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let (p50, p99) = (percentile(&samples, 0.50), percentile(&samples, 0.99));
    println!(
        "{label:<58} n={:<6} p50 {:>10.1} µs   p99 {:>10.1} µs",
        samples.len(),
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );
    p50
}

fn hostile() -> PluginConfig {
    PluginConfig {
        hosts: vec!["api.example.org".into()],
        secrets: [(
            "token".to_string(),
            bindery::config::SecretSource::Env("UNSET".into()),
        )]
        .into(),
        ..plugin_at(&fixture("hostile-provider"))
    }
}

async fn loads(rounds: usize) {
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for _ in 0..rounds {
        let data = tempfile::tempdir().unwrap();
        let config = config_with(data.path(), "hostile", hostile(), RuntimeConfig::default());
        let host = PluginHost::start(&config).await.unwrap();
        let p = host.get("hostile").unwrap();
        assert_eq!(p.compiled, CompileOutcome::Compiled);
        cold.push(p.load_time);
        drop((p, host));
        let host = PluginHost::start(&config).await.unwrap();
        let p = host.get("hostile").unwrap();
        assert_eq!(p.compiled, CompileOutcome::FromCache);
        warm.push(p.load_time);
    }
    let c = summary("plugin load, compiled (Cranelift, 80 KB component)", cold);
    let w = summary("plugin load, from the on-disk cache", warm);
    println!(
        "{:<58} {:.0}x faster from cache",
        "  ratio",
        c.as_secs_f64() / w.as_secs_f64()
    );
}

async fn calls(n: usize) {
    let data = tempfile::tempdir().unwrap();
    let config = config_with(data.path(), "hostile", hostile(), RuntimeConfig::default());
    let host = PluginHost::start(&config).await.unwrap();
    for _ in 0..500 {
        host.resolve("hostile", "ok/warm").await.unwrap().unwrap();
    }
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let spec = format!("ok/{i}");
        let t = Instant::now();
        let r = host.resolve("hostile", &spec).await.unwrap().unwrap();
        samples.push(t.elapsed());
        std::hint::black_box(r);
    }
    summary(
        "provider resolve: fresh store + instantiate + call",
        samples,
    );

    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        std::hint::black_box(host.display("hostile").await.unwrap());
        samples.push(t.elapsed());
    }
    summary(
        "provider display: fresh store + instantiate + call",
        samples,
    );

    // Two tasks on the two cores.
    let t = Instant::now();
    let per_task = n;
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let host = host.clone();
            tokio::spawn(async move {
                for i in 0..per_task {
                    host.resolve("hostile", &format!("ok/{i}"))
                        .await
                        .unwrap()
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let rate = (2 * per_task) as f64 / t.elapsed().as_secs_f64();
    println!(
        "{:<58} {:>10.0} calls/s",
        "provider resolve, 2 concurrent tasks", rate
    );
}

/// `bindery serve` from exec to the first answered `/versions`, and its RSS then.
fn serve_start(label: &str, config_toml: &str, rounds: usize) {
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("bindery.toml");
    std::fs::write(&config, config_toml).unwrap();
    let mut samples = Vec::new();
    let mut rss_kib = Vec::new();
    for round in 0..=rounds {
        let port = support::free_port();
        let t = Instant::now();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_bindery"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(data.path())
            .arg("--config")
            .arg(&config)
            .env("BINDERY_LOG", "warn")
            .spawn()
            .unwrap();
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                use std::io::{Read, Write};
                s.write_all(b"GET /versions HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                    .unwrap();
                let mut buf = String::new();
                let _ = s.read_to_string(&mut buf);
                if buf.starts_with("HTTP/1.1 200") {
                    break;
                }
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "bindery did not start"
            );
            std::thread::sleep(Duration::from_micros(500));
        }
        // Round 0 fills the compile cache; the rest start warm.
        if round > 0 {
            samples.push(t.elapsed());
            let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
            let rss = status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok());
            rss_kib.extend(rss);
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
    summary(label, samples);
    rss_kib.sort();
    println!(
        "{:<58} median {:.1} MiB",
        "  its RSS after answering",
        rss_kib[rss_kib.len() / 2] as f64 / 1024.0
    );
}

fn main() {
    println!(
        "bindery plugin runtime benchmark ({} cores)",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(loads(10));
    rt.block_on(calls(5_000));
    serve_start(
        "bindery serve: exec to first /versions, bundled plugins",
        "",
        10,
    );
    let hostile = fixture("hostile-provider");
    serve_start(
        "bindery serve: exec to first /versions, + 1 plugin file",
        &format!(
            "[plugins.hostile]\npath = {:?}\nhosts = [\"api.example.org\"]\nsecrets = {{ token = {{ env = \"UNSET\" }} }}\n",
            hostile.display().to_string()
        ),
        10,
    );
}
