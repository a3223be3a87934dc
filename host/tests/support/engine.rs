//! The build tests' real parts, from `scripts/engine.sh`: a Docker engine
//! started by hand (host networking only), the repo2docker CLI, and base
//! images made here with debootstrap (no public registry is reachable), plus
//! git repositories the tests commit to.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

use bindery::config::Config;

use super::registry::OciRegistry;
use super::{GitDaemon, git};

/// A repository whose Dockerfile copies its content where repo2docker would.
pub const DOCKERFILE: &[u8] =
    b"FROM bindery-test/jupyter:1\nCOPY --chown=1000:1000 . /home/jovyan/\n";

/// Incompressible bytes (xorshift), for repositories of a given size.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Where the engine listens and which repo2docker runs against it.
pub struct Engine {
    pub docker_host: String,
    pub repo2docker: PathBuf,
}

/// The engine, started (or found running) once per test process.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let printed = super::run_script("engine.sh");
        let value = |key: &str| {
            printed
                .get(key)
                .unwrap_or_else(|| panic!("{key} in {printed:?}"))
                .clone()
        };
        Engine {
            docker_host: value("DOCKER_HOST"),
            repo2docker: value("REPO2DOCKER").into(),
        }
    })
}

impl Engine {
    /// Runs the docker CLI against the engine.
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .env("DOCKER_HOST", &self.docker_host)
            .args(args)
            .output()
            .expect("docker CLI")
    }
}

/// A repository served by a real `git daemon`, with a work tree to commit from.
pub struct TestRepo {
    pub daemon: GitDaemon,
    pub url: String,
    work: tempfile::TempDir,
}

impl TestRepo {
    /// A served repository whose `main` holds only a README.
    pub fn new() -> TestRepo {
        let (daemon, _) = GitDaemon::with_repo("repo.git");
        let url = format!("git://127.0.0.1:{}/repo.git", daemon.port);
        let work = tempfile::tempdir().unwrap();
        let bare = daemon.root.path().join("srv/repo.git");
        git(work.path(), &["clone", "-q", bare.to_str().unwrap(), "."]);
        TestRepo { daemon, url, work }
    }

    /// Writes `files` (`*.sh` executable), deletes `removed`, commits and
    /// pushes to `main`; the new sha.
    pub fn commit(&self, files: &[(&str, &[u8])], removed: &[&str]) -> String {
        super::commit_and_push(self.work.path(), files, removed)
    }
}

/// Decompression bombs, written straight into the served repository as
/// commits on branches of their own: each packs to a few kilobytes.
impl TestRepo {
    fn bare(&self) -> std::path::PathBuf {
        self.daemon.root.path().join("srv/repo.git")
    }

    /// A commit whose tree holds `files` files of `bytes` zeros each; its sha.
    pub fn zeros(&self, branch: &str, files: usize, bytes: u64) -> String {
        // Streamed into a pack by git itself: never whole in memory or on disk.
        let hashed = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "head -c {bytes} /dev/zero | git -c core.bigFileThreshold=1m hash-object -w --stdin"
            ))
            .current_dir(self.bare())
            .output()
            .unwrap();
        assert!(hashed.status.success(), "{hashed:?}");
        let blob = String::from_utf8(hashed.stdout).unwrap().trim().to_string();
        let entries: Vec<String> = (0..files)
            .map(|i| format!("100644 blob {blob}\tzeros-{i}.bin"))
            .collect();
        self.commit_tree(branch, &entries)
    }

    /// A commit whose tree is `levels` levels of ten directories over ten
    /// files each: 10^(levels+1) files from eight objects; its sha.
    pub fn tree_bomb(&self, branch: &str, levels: usize) -> String {
        let blob = self.git_with_input("hash-object", &["-w", "--stdin"], "x");
        let mut entries: Vec<String> = (0..10)
            .map(|i| format!("100644 blob {blob}\tf{i}"))
            .collect();
        for _ in 0..levels {
            let tree = self.git_with_input("mktree", &[], &entries.join("\n"));
            entries = (0..10)
                .map(|i| format!("040000 tree {tree}\td{i}"))
                .collect();
        }
        self.commit_tree(branch, &entries)
    }

    fn commit_tree(&self, branch: &str, entries: &[String]) -> String {
        let tree = self.git_with_input("mktree", &[], &entries.join("\n"));
        let sha = super::git(&self.bare(), &["commit-tree", &tree, "-m", branch]);
        super::git(
            &self.bare(),
            &["update-ref", &format!("refs/heads/{branch}"), &sha],
        );
        sha
    }

    /// Runs `git <command> <args>` in the served repository with `input` on stdin.
    fn git_with_input(&self, command: &str, args: &[&str], input: &str) -> String {
        use std::io::Write;
        let mut child = std::process::Command::new("git")
            .arg(command)
            .args(args)
            .current_dir(self.bare())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{input}").unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "git {command}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}

/// Serves an empty list of Dataverse installations: repo2docker asks GitHub
/// for one before picking a content provider, and GitHub is not reachable here.
async fn dataverse_list() -> String {
    let (port, _) = super::http_server(
        br#"{"installations": []}"#.to_vec(),
        std::time::Duration::ZERO,
    )
    .await;
    format!("http://127.0.0.1:{port}/installations.json")
}

/// The embedded defaults with the git provider, the `layer-first` strategy
/// (Dockerfile repositories layered too), the engine and the registry.
pub async fn build_config(data: &std::path::Path, registry: &OciRegistry) -> Config {
    let mut c = super::service::config(data, Some(registry));
    c.build.local.env.insert(
        "R2D_DATAVERSE_INSTALLATIONS_URL".into(),
        dataverse_list().await,
    );
    for (name, plugin) in &mut c.plugins {
        plugin.enabled |= name == "layer-first";
    }
    let strategy = c.plugins.get_mut("layer-first").unwrap();
    strategy
        .config
        .insert("layer_dockerfile".into(), "true".into());
    strategy.config.insert("timeout_secs".into(), "300".into());
    c.build.local.command = engine().repo2docker.clone();
    c.build.local.docker_host = Some(engine().docker_host.clone());
    c.web.api_only = true;
    c.web.rate_limit.limit = 0;
    c.registry.timeout_ms = 30_000;
    c
}

/// Runs `script` in `image`, pulled from the registry by the engine.
pub fn run_in(image: &str, script: &str) -> String {
    let e = engine();
    let pulled = e.docker(&["pull", "-q", image]);
    assert!(
        pulled.status.success(),
        "pull {image}: {}",
        String::from_utf8_lossy(&pulled.stderr)
    );
    let out = e.docker(&[
        "run",
        "--rm",
        "--network",
        "host",
        image,
        "sh",
        "-c",
        script,
    ]);
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
