//! Fixtures shared by the integration tests: real plugin components built from
//! the fixture crates, small loopback servers, and configurations.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bindery::authoring::cargo::build_plugins;
use bindery::config::{Config, PluginConfig, RuntimeConfig};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A target directory for components built by tests, beside the test binary's.
pub fn test_target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // <target>/<profile>/deps/<test binary>
    exe.ancestors().nth(3).unwrap().join("test-plugins")
}

/// Builds a fixture crate of the workspace once per test binary.
pub fn fixture(package: &'static str) -> PathBuf {
    static BUILT: OnceLock<std::sync::Mutex<std::collections::HashMap<&'static str, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap();
    built
        .entry(package)
        .or_insert_with(|| {
            build_plugins(&workspace().join("Cargo.toml"), &[package], &test_target_dir(), "plugin")
                .unwrap_or_else(|e| panic!("{e}"))
                .remove(0)
        })
        .clone()
}

/// A configuration with one plugin and a fresh data directory.
pub fn config_with(data_dir: &Path, name: &str, plugin: PluginConfig, runtime: RuntimeConfig) -> Config {
    let mut config = Config::load(None).unwrap();
    config.data_dir = data_dir.to_path_buf();
    config.plugin_runtime = runtime;
    config.plugins = [(name.to_string(), plugin)].into();
    config
}

/// A plugin entry for a component file.
pub fn plugin_at(path: &Path) -> PluginConfig {
    PluginConfig { path: Some(path.to_path_buf()), enabled: true, ..Default::default() }
}

/// An HTTP/1.1 server on 127.0.0.1 answering every request with `body` after
/// `delay`; returns its port and a counter of requests served.
pub async fn http_server(body: Vec<u8>, delay: std::time::Duration) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let served = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
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
                let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
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

/// A real `git daemon` serving bare repositories on 127.0.0.1, stopped on drop.
pub struct GitDaemon {
    pub port: u16,
    pub root: tempfile::TempDir,
    child: std::process::Child,
}

impl GitDaemon {
    /// Serves a new bare repository `path` (e.g. `group/project.git`) with one
    /// commit on `main`; returns the daemon and the commit's sha.
    pub fn with_repo(path: &str) -> (GitDaemon, String) {
        let root = tempfile::tempdir().unwrap();
        let work = root.path().join("work");
        let git = |dir: &Path, args: &[&str]| {
            let out = std::process::Command::new("git")
                .current_dir(dir)
                .args(["-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "init.defaultBranch=main"])
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        };
        std::fs::create_dir_all(&work).unwrap();
        git(&work, &["init", "-q"]);
        std::fs::write(work.join("README.md"), "hello\n").unwrap();
        git(&work, &["add", "."]);
        git(&work, &["commit", "-qm", "first"]);
        let sha = git(&work, &["rev-parse", "HEAD"]);
        let bare = root.path().join("srv").join(path);
        std::fs::create_dir_all(bare.parent().unwrap()).unwrap();
        git(root.path(), &["clone", "-q", "--bare", work.to_str().unwrap(), bare.to_str().unwrap()]);

        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // The `git-daemon` program itself, not the `git daemon` wrapper, so
        // that killing the child stops the server.
        let exec_path = std::process::Command::new("git").arg("--exec-path").output().unwrap();
        let exec_path = String::from_utf8(exec_path.stdout).unwrap();
        let child = std::process::Command::new(Path::new(exec_path.trim()).join("git-daemon"))
            .args(["--export-all", "--reuseaddr", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", root.path().join("srv").display()))
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("git daemon");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "git daemon did not start");
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
