//! Fixtures shared by the integration tests: real plugin components built from
//! the fixture crates, small loopback servers, and configurations.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bindery::authoring::cargo::build_plugins;
use bindery::config::{Config, PluginConfig, RuntimeConfig};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs one of the scripts that install and start the real parts
/// (`scripts/<name>`) and returns the `KEY=value` lines it printed.
pub fn run_script(name: &str) -> std::collections::HashMap<String, String> {
    let out = std::process::Command::new(workspace().join("scripts").join(name))
        .output()
        .unwrap_or_else(|e| panic!("scripts/{name} cannot run: {e}"));
    assert!(
        out.status.success(),
        "scripts/{name} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A loopback port nothing listens on now, for a server a test starts later.
///
/// Ports come from below the kernel's ephemeral range (32768–60999 on Linux),
/// each at most once per test process: a port picked by `bind(0)` is handed out
/// again to the next `bind(0)` or outgoing connection before the server meant
/// for it binds it, and then two tests talk to each other's servers (a CI run
/// hung on that).
pub fn free_port() -> u16 {
    free_ports(1)
}

/// `count` loopback ports in a row, the first returned, as [`free_port`]
/// hands them out (for programs that take the ports after the one given).
pub fn free_ports(count: u16) -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const FIRST: u16 = 20_000;
    const SPAN: u16 = 12_000;
    // Processes started together (the tiers, a developer's second run) begin
    // far apart.
    static NEXT: OnceLock<AtomicU16> = OnceLock::new();
    let next = NEXT.get_or_init(|| {
        let offset = (std::process::id() % u32::from(SPAN / 200)) * 200;
        AtomicU16::new(u16::try_from(offset).unwrap())
    });
    for _ in 0..SPAN {
        let first = FIRST + next.fetch_add(count, Ordering::Relaxed) % (SPAN - count);
        if (first..first + count).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return first;
        }
    }
    panic!(
        "no {count} free loopback ports in a row in {FIRST}..{}",
        FIRST + SPAN
    )
}

/// [`free_port`] on 127.0.0.1.
pub fn free_addr() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// The bundled providers that resolve through an HTTP API: every one but `git`.
pub const API_PROVIDERS: [&str; 9] = [
    "gh",
    "gist",
    "gl",
    "zenodo",
    "figshare",
    "hydroshare",
    "dataverse",
    "ckan",
    "swh",
];

/// Sends `signal` to process `pid` (negative: to its process group).
pub fn signal(pid: i32, signal: libc::c_int) {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    unsafe { libc::kill(pid, signal) };
}

/// A target directory for components built by tests, beside the test binary's.
pub fn test_target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // <target>/<profile>/deps/<test binary>
    exe.ancestors().nth(3).unwrap().join("test-plugins")
}

/// Where tests leave screenshots for people to look at
/// (`<target>/test-artifacts`; `scripts/screenshots` copies them to `docs/`).
pub fn artifacts() -> PathBuf {
    let dir = test_target_dir().parent().unwrap().join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Builds a fixture crate of the workspace once per test binary.
pub fn fixture(package: &'static str) -> PathBuf {
    static BUILT: OnceLock<std::sync::Mutex<std::collections::HashMap<&'static str, PathBuf>>> =
        OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap();
    built
        .entry(package)
        .or_insert_with(|| {
            build_plugins(
                &workspace().join("Cargo.toml"),
                &[package],
                &test_target_dir(),
                "plugin",
            )
            .unwrap_or_else(|e| panic!("{e}"))
            .remove(0)
        })
        .clone()
}

/// A configuration with one plugin and a fresh data directory.
pub fn config_with(
    data_dir: &Path,
    name: &str,
    plugin: PluginConfig,
    runtime: RuntimeConfig,
) -> Config {
    let mut config = Config::load(None).unwrap();
    config.data_dir = data_dir.to_path_buf();
    config.plugin_runtime = runtime;
    config.plugins = [(name.to_string(), plugin)].into();
    config
}

/// A plugin entry for a component file.
pub fn plugin_at(path: &Path) -> PluginConfig {
    PluginConfig {
        path: Some(path.to_path_buf()),
        enabled: true,
        ..Default::default()
    }
}

/// An HTTP/1.1 server on 127.0.0.1 answering every request with `body` after
/// `delay`; returns its port and a counter of requests served.
pub async fn http_server(
    body: Vec<u8>,
    delay: std::time::Duration,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let served = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let body = body.clone();
            let served = served.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                served.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&body).await;
            });
        }
    });
    (port, count)
}

/// `wasm` with a custom section appended: the same code, different bytes
/// (and so a different sha256), as a rebuilt plugin would be.
pub fn with_custom_section(wasm: &[u8], name: &str, data: &[u8]) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut content = Vec::new();
    leb(name.len(), &mut content);
    content.extend_from_slice(name.as_bytes());
    content.extend_from_slice(data);
    let mut out = wasm.to_vec();
    out.push(0);
    leb(content.len(), &mut out);
    out.extend_from_slice(&content);
    out
}

pub mod forges;

/// A bare repository `path` (e.g. `group/project.git`) under `<root>/srv`, with
/// one commit on `main` tagged `v1.0`; returns the commit's sha.
/// Runs `git args` in `dir` as a test author (on `main` by default) and
/// returns its output, trimmed; a failure fails the test with git's words.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.org"])
        .args(["-c", "init.defaultBranch=main"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn bare_repo(root: &Path, path: &str) -> String {
    let work = root.join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q"]);
    std::fs::write(work.join("README.md"), "hello\n").unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "-qm", "first"]);
    git(&work, &["tag", "v1.0"]);
    let sha = git(&work, &["rev-parse", "HEAD"]);
    let bare = root.join("srv").join(path);
    std::fs::create_dir_all(bare.parent().unwrap()).unwrap();
    git(
        root,
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );
    sha
}

/// In the clone `work`: writes `files` (`*.sh` executable), deletes
/// `removed`, commits and pushes to `main`; the new sha.
pub fn commit_and_push(work: &Path, files: &[(&str, &[u8])], removed: &[&str]) -> String {
    use std::os::unix::fs::PermissionsExt;
    for (path, content) in files {
        let full = work.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(&full, content).unwrap();
        if path.ends_with(".sh") {
            std::fs::set_permissions(&full, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    for path in removed {
        git(work, &["rm", "-rq", path]);
    }
    git(work, &["add", "-A"]);
    git(work, &["commit", "-qm", "change", "--allow-empty"]);
    git(work, &["push", "-q", "origin", "HEAD:main"]);
    git(work, &["rev-parse", "HEAD"])
}

fn git_program(name: &str) -> PathBuf {
    let exec_path = std::process::Command::new("git")
        .arg("--exec-path")
        .output()
        .unwrap();
    Path::new(String::from_utf8(exec_path.stdout).unwrap().trim()).join(name)
}

/// A real `git daemon` serving bare repositories on 127.0.0.1, stopped on drop.
pub struct GitDaemon {
    pub port: u16,
    pub root: tempfile::TempDir,
    child: std::process::Child,
}

impl GitDaemon {
    /// Serves a new bare repository `path` (see [`bare_repo`]); returns the
    /// daemon and the commit's sha.
    pub fn with_repo(path: &str) -> (GitDaemon, String) {
        let root = tempfile::tempdir().unwrap();
        let sha = bare_repo(root.path(), path);
        let port = free_port();
        // The `git-daemon` program itself, not the `git daemon` wrapper, so
        // that killing the child stops the server.
        let child = std::process::Command::new(git_program("git-daemon"))
            .args(["--export-all", "--reuseaddr", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", root.path().join("srv").display()))
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("git daemon");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "git daemon did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        (GitDaemon { port, root, child }, sha)
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Git's smart HTTP protocol on 127.0.0.1: the real `git http-backend`, run as
/// a CGI program per request behind a small axum server, which may demand
/// basic authentication as a private forge does. Stopped on drop.
pub struct GitHttp {
    pub port: u16,
    pub root: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl GitHttp {
    /// Serves a new bare repository `path`; returns the server and the commit's sha.
    pub async fn with_repo(path: &str) -> (GitHttp, String) {
        GitHttp::serve(path, None).await
    }

    /// Serves a new bare repository `path` to `user` with `password` only:
    /// anyone else gets 401 and a `WWW-Authenticate` challenge.
    pub async fn private(path: &str, user: &str, password: &str) -> (GitHttp, String) {
        use base64::Engine;
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        GitHttp::serve(path, Some(expected)).await
    }

    async fn serve(path: &str, authorization: Option<String>) -> (GitHttp, String) {
        let root = tempfile::tempdir().unwrap();
        let sha = bare_repo(root.path(), path);
        let project_root = root.path().join("srv");
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let (project_root, authorization) = (project_root.clone(), authorization.clone());
            async move {
                let given = req
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok());
                if authorization.is_some() && given != authorization.as_deref() {
                    return axum::http::Response::builder()
                        .status(401)
                        .header("www-authenticate", "Basic realm=\"git\"")
                        .body(axum::body::Body::from("Unauthorized"))
                        .unwrap();
                }
                cgi(project_root, req).await
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (GitHttp { port, root, server }, sha)
    }

    /// Commits `files` to `path`'s `main`, through a clone of the bare
    /// repository on disk; the new sha.
    pub fn commit(&self, path: &str, files: &[(&str, &[u8])]) -> String {
        let work = self
            .root
            .path()
            .join(format!("work-{}", path.replace('/', "-")));
        if !work.exists() {
            let bare = self.root.path().join("srv").join(path);
            git(
                self.root.path(),
                &[
                    "clone",
                    "-q",
                    bare.to_str().unwrap(),
                    work.to_str().unwrap(),
                ],
            );
        }
        commit_and_push(&work, files, &[])
    }
}

impl Drop for GitHttp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// One CGI exchange with `git http-backend`.
async fn cgi(project_root: PathBuf, req: axum::extract::Request) -> axum::response::Response {
    use tokio::io::AsyncWriteExt;
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let mut child = tokio::process::Command::new(git_program("git-http-backend"))
        .env_clear()
        .env("GIT_PROJECT_ROOT", &project_root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_ADDR", "127.0.0.1")
        .stderr(std::process::Stdio::null())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("git http-backend");
    child.stdin.take().unwrap().write_all(&body).await.unwrap();
    let out = child.wait_with_output().await.unwrap();
    let split = out
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("CGI headers");
    let mut response = axum::http::Response::builder();
    for line in String::from_utf8_lossy(&out.stdout[..split]).lines() {
        let (k, v) = line.split_once(':').unwrap();
        if k.eq_ignore_ascii_case("status") {
            response = response.status(v.trim()[..3].parse::<u16>().unwrap());
        } else {
            response = response.header(k.trim(), v.trim());
        }
    }
    response
        .body(axum::body::Body::from(out.stdout[split + 4..].to_vec()))
        .unwrap()
}
pub mod browser;
pub mod engine;
pub mod faults;
pub mod hub;
pub mod image;
pub mod kube;
pub mod registry;
pub mod service;
