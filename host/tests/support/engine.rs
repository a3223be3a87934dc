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
        use std::os::unix::fs::PermissionsExt;
        for (path, content) in files {
            let full = self.work.path().join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(&full, content).unwrap();
            if path.ends_with(".sh") {
                std::fs::set_permissions(&full, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
        for path in removed {
            git(self.work.path(), &["rm", "-rq", path]);
        }
        git(self.work.path(), &["add", "-A"]);
        git(
            self.work.path(),
            &["commit", "-qm", "change", "--allow-empty"],
        );
        git(self.work.path(), &["push", "-q", "origin", "HEAD:main"]);
        git(self.work.path(), &["rev-parse", "HEAD"])
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
