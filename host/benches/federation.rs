//! The federation's redirect against a direct `/build`, in one run: a
//! member (the test build executor and stub launcher, a real loopback
//! registry and git daemon) and a front in this process. Sequential rows
//! time the front's 307 alone, a launch to `ready` at the member, and the
//! same launch through the front (the 307, then the member); wrk rows give
//! the throughput of the front's redirects and of direct launches. Prints;
//! asserts nothing. Run with `cargo bench -p bindery --bench federation`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bindery::app::Builds;
use bindery::config::{Config, FederationConfig, MemberConfig, SecretSource};
use support::GitDaemon;
use support::registry::OciRegistry;
use support::service::{Service, TestBuilder, TestLauncher, git_spec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// One request on a new connection, read until `until` is in the answer;
/// the answer so far and the time it took.
async fn exchange(port: u16, path: &str, until: &str) -> (String, Duration) {
    let started = Instant::now();
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 8192];
    while !seen.contains(until) {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "the answer ended before {until}: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    (seen, started.elapsed())
}

fn wrk(url: &str) -> String {
    let out = std::process::Command::new("wrk")
        .args(["-t2", "-c32", "-d10s", "--latency"])
        .args(["-H", "Accept: text/event-stream", url])
        .output()
        .expect("wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .map_or("?", str::trim)
        .to_string();
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map_or("?", str::trim)
        .to_string();
    format!("{rps} req/s, p99 {p99}")
}

fn config(data: &std::path::Path, member: Option<&str>, member_port: u16) -> Config {
    let mut c = Config::load(None).unwrap();
    c.data_dir = data.to_path_buf();
    c.plugin_runtime.compile_cache_dir = Some(support::test_target_dir().join("compile-cache"));
    c.plugins.get_mut("git").unwrap().private_networks = vec!["127.0.0.0/8".parse().unwrap()];
    c.web.rate_limit.limit = 0;
    c.web.cors_allow_origin = Some("*".into());
    let secret = data.join("build-token-secret");
    std::fs::write(&secret, "00112233445566778899aabbccddeeff").unwrap();
    c.web.build_token_secret = Some(SecretSource::File(secret));
    c.federation = FederationConfig {
        member: member.map(String::from),
        members: [(
            "m".to_string(),
            MemberConfig {
                url: format!("http://127.0.0.1:{member_port}/").parse().unwrap(),
                weight: 1.0,
                prime: true,
            },
        )]
        .into(),
        ..FederationConfig::default()
    };
    c
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = support::service::bench_n(1_000);
    let (daemon, sha) = GitDaemon::with_repo("repo.git");
    let registry = OciRegistry::start(None);
    let ports = support::free_ports(2);
    let (member_port, front_port) = (ports, ports + 1);
    let (member_data, front_data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut c = config(member_data.path(), Some("m"), member_port);
    c.registry.url = Some(registry.url().parse().unwrap());
    c.registry.image_prefix = format!("{}/binder-", registry.host());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", member_port))
        .await
        .unwrap();
    let builder: Arc<dyn bindery::build::BuildExecutor> = Arc::new(TestBuilder::new(&registry, 10));
    let launcher: Arc<dyn bindery::launch::Launcher> =
        Arc::new(TestLauncher::new("http://hub.test"));
    let _member = Service::start_on(listener, c, Builds::With(builder), Some(launcher)).await;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", front_port))
        .await
        .unwrap();
    let _front = Service::start_on(
        listener,
        config(front_data.path(), None, member_port),
        Builds::Off,
        None,
    )
    .await;
    let url = format!("git://127.0.0.1:{}/repo.git", daemon.port);
    let path = format!("/build/git/{}", git_spec(&url, &sha));
    // The image is built once, before measuring.
    exchange(member_port, &path, "\"phase\":\"ready\"").await;

    println!(
        "bindery {} · {} cores · n={n} sequential requests per row",
        bindery::VERSION,
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    let mut redirect = Vec::new();
    let mut direct = Vec::new();
    let mut through = Vec::new();
    for _ in 0..n {
        let (answer, took) = exchange(front_port, &path, "\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 307"), "{answer}");
        redirect.push(took);
        direct.push(exchange(member_port, &path, "\"phase\":\"ready\"").await.1);
        let started = Instant::now();
        exchange(front_port, &path, "\r\n\r\n").await;
        exchange(member_port, &path, "\"phase\":\"ready\"").await;
        through.push(started.elapsed());
    }
    for (label, times) in [
        ("front: the 307 alone", &mut redirect),
        ("member: /build to ready, direct", &mut direct),
        (
            "through the front: 307, then the member to ready",
            &mut through,
        ),
    ] {
        times.sort();
        println!(
            "{label}: p50 {:?}, p99 {:?}",
            percentile(times, 0.5),
            percentile(times, 0.99)
        );
    }
    let front_rps = wrk(&format!("http://127.0.0.1:{front_port}{path}"));
    let member_rps = wrk(&format!("http://127.0.0.1:{member_port}{path}"));
    println!("wrk -t2 -c32 -d10s, front redirects: {front_rps}");
    println!("wrk -t2 -c32 -d10s, member launches (stub launcher): {member_rps}");
}
