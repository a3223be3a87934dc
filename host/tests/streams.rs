//! 10,000 concurrent idle event streams against the real `bindery serve`
//! binary: each gets its headers and keepalives, the server stays responsive
//! and its memory bounded, and every stream's resources go when its client
//! does. The streams are idle because their resolution waits on a git server
//! that accepts connections and never answers.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const STREAMS: usize = 10_000;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Both ends of every stream need a descriptor: lift the soft limit to the hard one.
fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
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
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_streams() {
    let fds = raise_fd_limit();
    assert!(fds as usize > STREAMS + 1_000, "RLIMIT_NOFILE's hard limit ({fds}) is too low for {STREAMS} streams");

    // A git server that never answers.
    let tarpit = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tarpit_port = tarpit.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in tarpit.incoming().flatten() {
            held.push(s);
        }
    });

    let data = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = data.path().join("bindery.toml");
    let mut f = std::fs::File::create(&config).unwrap();
    write!(
        f,
        r#"listen = "127.0.0.1:{port}"
data_dir = "{}"
[web]
keepalive_secs = 1
rate_limit = {{ limit = 0 }}
[plugin_runtime]
call_timeout_ms = 300000
git_timeout_ms = 300000
reload_interval_ms = 0
[plugins.git]
private_networks = ["127.0.0.0/8"]
"#,
        data.path().display()
    )
    .unwrap();
    for p in ["gh", "gist", "gl", "zenodo", "figshare", "hydroshare", "dataverse", "ckan", "swh"] {
        writeln!(f, "[plugins.{p}]\nenabled = false").unwrap();
    }
    drop(f);
    let server = Server(
        Command::new(env!("CARGO_BIN_EXE_bindery"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("BINDERY_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "bindery serve did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let idle_kib = rss_kib(server.0.id());

    let path = format!("/build/git/git%3A%2F%2F127.0.0.1%3A{tarpit_port}%2Fx.git/main");
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n");
    let mut clients = Vec::with_capacity(STREAMS);
    for _ in 0..STREAMS {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        clients.push(s);
    }
    // Every stream answers with its headers, then keepalives only.
    let mut buf = vec![0u8; 4096];
    for (i, s) in clients.iter_mut().enumerate() {
        let mut got = String::new();
        while !got.contains(":keepalive\n\n") {
            let n = tokio::time::timeout(Duration::from_secs(60), s.read(&mut buf)).await.expect("a keepalive within a minute").unwrap();
            assert!(n > 0, "stream {i} closed");
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n") && got.contains("content-type: text/event-stream"), "stream {i}: {got}");
        assert!(!got.contains("data: "), "stream {i} is idle: {got}");
    }
    let busy_kib = rss_kib(server.0.id());
    let versions = get(port, "/versions").await;
    assert!(versions.starts_with("HTTP/1.1 200"), "the server answers while {STREAMS} streams are open");
    let metrics = get(port, "/metrics").await;
    assert!(metrics.contains(&format!("bindery_event_streams_open {STREAMS}")), "{metrics}");
    eprintln!("RSS idle {} MiB, with {STREAMS} open streams {} MiB", idle_kib / 1024, busy_kib / 1024);
    assert!(busy_kib < 400 * 1024, "memory stays bounded: {} MiB", busy_kib / 1024);

    // Clients leave: their streams and pipeline tasks go with them.
    drop(clients);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = get(port, "/metrics").await;
        if metrics.contains("bindery_event_streams_open 0") {
            break;
        }
        assert!(Instant::now() < deadline, "streams of gone clients are not released");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
