//! 10,000 concurrent idle event streams against the real `bindery serve`
//! binary: each gets its headers and keepalives, the server stays responsive
//! and its memory bounded, and every stream's resources go when its client
//! does. The streams are idle because their resolution waits on a git server
//! that accepts connections and never answers. A service told to stop closes
//! the streams still open after its grace period, and exits.

use crate::support;

use std::time::{Duration, Instant};

use bindery::config::{Config, LeaderConfig, SecretSource};
use support::API_PROVIDERS;
use support::service::Process;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const STREAMS: usize = 10_000;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Both ends of every stream need a descriptor: lift the soft limit to the hard one.
fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    limit.rlim_cur
}

async fn get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// A git server that accepts connections and never answers; its port.
fn tarpit() -> u16 {
    let tarpit = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tarpit.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in tarpit.incoming().flatten() {
            held.push(s);
        }
    });
    port
}

/// The embedded defaults with only the git provider, allowed onto loopback,
/// keepalives every second, and calls that wait for the tarpit for minutes.
fn config(data: &std::path::Path) -> Config {
    let mut c = Config::load(None).unwrap();
    c.listen = support::free_addr();
    c.data_dir = data.to_path_buf();
    c.web.keepalive_secs = 1;
    c.web.rate_limit.limit = 0;
    // Past the default, sized to the chart's memory limit in the worst case:
    // idle streams cost far less than that worst case.
    c.web.max_connections = STREAMS + 100;
    c.plugin_runtime.call_timeout_ms = 300_000;
    c.plugin_runtime.git_timeout_ms = 300_000;
    c.plugin_runtime.reload_interval_ms = 0;
    for name in API_PROVIDERS {
        c.plugins.get_mut(name).unwrap().enabled = false;
    }
    c.plugins.get_mut("git").unwrap().private_networks = vec!["127.0.0.0/8".parse().unwrap()];
    c
}

/// `n` clients of `/build` for a repository on the tarpit, each past its
/// headers and first keepalive.
async fn idle_streams(port: u16, tarpit: u16, n: usize) -> Vec<TcpStream> {
    let path = format!("/build/git/git%3A%2F%2F127.0.0.1%3A{tarpit}%2Fx.git/main");
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n");
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        clients.push(s);
    }
    // Every stream answers with its headers, then keepalives only.
    let mut buf = vec![0u8; 4096];
    for (i, s) in clients.iter_mut().enumerate() {
        let mut got = String::new();
        while !got.contains(":keepalive\n\n") {
            let n = tokio::time::timeout(Duration::from_secs(60), s.read(&mut buf))
                .await
                .expect("a keepalive within a minute")
                .unwrap();
            assert!(n > 0, "stream {i} closed");
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        assert!(
            got.starts_with("HTTP/1.1 200 OK\r\n")
                && got.contains("content-type: text/event-stream"),
            "stream {i}: {got}"
        );
        assert!(!got.contains("data: "), "stream {i} is idle: {got}");
    }
    clients
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_streams() {
    let fds = raise_fd_limit();
    assert!(
        fds as usize > STREAMS + 1_000,
        "RLIMIT_NOFILE's hard limit ({fds}) is too low for {STREAMS} streams"
    );
    let tarpit = tarpit();
    let data = tempfile::tempdir().unwrap();
    let c = config(data.path());
    let port = c.listen.port();
    let server = Process::start(&c, data.path()).await;
    let idle_kib = rss_kib(server.0.id());

    let clients = idle_streams(port, tarpit, STREAMS).await;
    let busy_kib = rss_kib(server.0.id());
    let versions = get(port, "/versions").await;
    assert!(
        versions.starts_with("HTTP/1.1 200"),
        "the server answers while {STREAMS} streams are open"
    );
    let metrics = get(port, "/metrics").await;
    assert!(
        metrics.contains(&format!("bindery_event_streams_open {STREAMS}")),
        "{metrics}"
    );
    eprintln!(
        "RSS idle {} MiB, with {STREAMS} open streams {} MiB",
        idle_kib / 1024,
        busy_kib / 1024
    );
    assert!(
        busy_kib < 400 * 1024,
        "memory stays bounded: {} MiB",
        busy_kib / 1024
    );

    // Clients leave: their streams and pipeline tasks go with them.
    drop(clients);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = get(port, "/metrics").await;
        if metrics.contains("bindery_event_streams_open 0") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "streams of gone clients are not released"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_service_closes_the_streams_still_open_after_its_grace_period() {
    let tarpit = tarpit();
    let data = tempfile::tempdir().unwrap();
    let mut c = config(data.path());
    // Every background task runs: plugin and config file watches, and a
    // culler (with a Lease contender) for a hub and an API server that are
    // not there, which only makes them log.
    c.plugin_runtime.reload_interval_ms = 1000;
    let token = data.path().join("hub-token");
    std::fs::write(&token, "t").unwrap();
    c.hub.url = Some("http://127.0.0.1:9/".parse().unwrap());
    c.hub.api_token = Some(SecretSource::File(token));
    c.cull.leader = Some(LeaderConfig {
        api_url: Some("http://127.0.0.1:9/".parse().unwrap()),
        namespace: Some("binder".into()),
        identity: Some("test".into()),
        ..LeaderConfig::default()
    });
    let mut server = Process::start(&c, data.path()).await;
    let mut clients = idle_streams(c.listen.port(), tarpit, 100).await;
    // SIGTERM, as Kubernetes stops a pod: the streams would wait minutes for
    // the tarpit; the service closes them after its grace period and exits.
    support::signal(server.0.id() as i32, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "bindery serve is still running a minute after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status}");
    let log = std::fs::read_to_string(data.path().join("bindery.log")).unwrap();
    assert!(
        log.contains("closing them"),
        "the log says why streams were cut: {log}"
    );
    // Then every background task ended, on the one shutdown path.
    assert!(
        log.contains(
            "background tasks ended: cache janitor, lease, build recovery, health checks, \
             culler, plugin watch, config file watch"
        ),
        "every background task ends: {log}"
    );
    assert!(!log.contains("still running"), "{log}");
    let mut buf = vec![0u8; 4096];
    for s in &mut clients {
        loop {
            match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .expect("closed")
            {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}
