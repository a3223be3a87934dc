//! A real JupyterHub (PyPI `jupyterhub` with `configurable-http-proxy` from
//! npm, from `scripts/hub.sh`) on free loopback ports, with DockerSpawner
//! running the launched image in the Docker engine of `scripts/engine.sh`.
//! Its configuration is the quickstart's, `scripts/jupyterhub_config.py`:
//! the spawner as the BinderHub chart configures KubeSpawner, activity
//! reported every 5 s. Stopped on drop, with the servers it started.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::engine::engine;
use super::free_port;

/// Paths printed by `scripts/hub.sh`.
struct Installed {
    jupyterhub: PathBuf,
    chp: PathBuf,
}

fn installed() -> &'static Installed {
    static INSTALLED: OnceLock<Installed> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let printed = super::run_script("hub.sh");
        let value = |key: &str| {
            PathBuf::from(
                printed
                    .get(key)
                    .unwrap_or_else(|| panic!("{key} in {printed:?}")),
            )
        };
        Installed {
            jupyterhub: value("JUPYTERHUB"),
            chp: value("CHP"),
        }
    })
}

pub struct JupyterHub {
    /// The public URL (the proxy), ending in `/`.
    pub url: String,
    /// The REST API, ending in `/`.
    pub api: String,
    /// The `binder` service's token.
    pub token: String,
    /// The servers' containers are named `{containers}-…`.
    containers: String,
    dir: tempfile::TempDir,
    child: Child,
}

impl JupyterHub {
    pub async fn start() -> JupyterHub {
        JupyterHub::start_env(&[]).await
    }

    /// A hub where people log in (DummyAuthenticator, every name with
    /// `password`), with Bindery's `binder` service its OAuth client coming
    /// back to `callback`.
    pub async fn with_login(callback: &str, password: &str) -> JupyterHub {
        JupyterHub::start_env(&[
            ("HUB_BINDER_OAUTH_REDIRECT", callback),
            ("HUB_DUMMY_PASSWORD", password),
        ])
        .await
    }

    /// [`JupyterHub::with_login`] whose logins keep an `auth_state`: user
    /// name → what theirs holds (as an OAuthenticator login keeps a forge
    /// token), readable by the `binder` service.
    pub async fn with_auth_states(callback: &str, password: &str, states: &Value) -> JupyterHub {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).unwrap();
        JupyterHub::start_env(&[
            ("HUB_BINDER_OAUTH_REDIRECT", callback),
            ("HUB_DUMMY_PASSWORD", password),
            ("HUB_AUTH_STATES", &states.to_string()),
            ("JUPYTERHUB_CRYPT_KEY", &hex::encode(key)),
        ])
        .await
    }

    async fn start_env(extra: &[(&str, &str)]) -> JupyterHub {
        let docker_host = engine().docker_host.clone();
        let tools = installed();
        let dir = tempfile::tempdir().unwrap();
        let (proxy_port, hub_port, proxy_api_port) = (free_port(), free_port(), free_port());
        let token = format!("bindery-test-{proxy_port}-{hub_port}");
        let containers = format!("bindery-hub-{proxy_port}");
        let child = Command::new(&tools.jupyterhub)
            .arg("-f")
            .arg(super::workspace().join("scripts/jupyterhub_config.py"))
            .current_dir(dir.path())
            .env("DOCKER_HOST", &docker_host)
            .env("HUB_DIR", dir.path())
            .env("HUB_PROXY_PORT", proxy_port.to_string())
            .env("HUB_API_PORT", hub_port.to_string())
            .env("HUB_PROXY_API_PORT", proxy_api_port.to_string())
            .env("HUB_CHP", &tools.chp)
            .env("HUB_SERVICE_TOKEN", &token)
            .env("HUB_CONTAINER_PREFIX", &containers)
            .envs(extra.iter().copied())
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    tools.jupyterhub.parent().unwrap().display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("hub.log")).unwrap())
            .spawn()
            .expect("jupyterhub runs");
        let hub = JupyterHub {
            url: format!("http://127.0.0.1:{proxy_port}/"),
            api: format!("http://127.0.0.1:{proxy_port}/hub/api/"),
            token,
            containers,
            dir,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = reqwest::get(&hub.api).await
                && r.status().is_success()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "JupyterHub did not start:\n{}",
                hub.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        hub
    }

    /// The hub's own log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("hub.log")).unwrap_or_default()
    }

    /// A request to the API as the `binder` service.
    pub async fn api(&self, method: reqwest::Method, path: &str) -> (u16, Value) {
        self.api_with(method, path, None).await
    }

    /// The same, with a JSON body.
    pub async fn api_with(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = reqwest::Client::new()
            .request(method, format!("{}{path}", self.api))
            .header("authorization", format!("token {}", self.token));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    }

    /// The warm pool's unclaimed users whose server is ready, polled until
    /// there are `n`.
    pub async fn ready_pool_servers(&self, n: usize) -> Vec<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        loop {
            let ready: Vec<String> = self
                .users()
                .await
                .iter()
                .filter(|u| {
                    u["groups"].as_array().is_some_and(|g| {
                        g.iter().any(|g| g == "binder-pool")
                            && !g.iter().any(|g| g == "binder-users")
                    }) && u["servers"][""]["ready"] == true
                })
                .map(|u| u["name"].as_str().unwrap().to_string())
                .collect();
            if ready.len() >= n {
                return ready;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the pool has {ready:?}, not {n} ready servers\n{}",
                self.log()
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// Every user with their servers.
    pub async fn users(&self) -> Vec<Value> {
        let (status, users) = self.api(reqwest::Method::GET, "users").await;
        assert_eq!(status, 200, "{users}");
        users.as_array().cloned().unwrap_or_default()
    }

    /// The hub dies: hub and proxy SIGKILLed, its servers' containers removed.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.kill_proxy();
        self.remove_containers();
    }

    /// Removes the servers' containers the hub left (it was killed, or did
    /// not stop them all in time): a later test must not find them running.
    fn remove_containers(&self) {
        let e = engine();
        let listed = e.docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("name=^{}-", self.containers),
        ]);
        for id in String::from_utf8_lossy(&listed.stdout).split_whitespace() {
            e.docker(&["rm", "-f", id]);
        }
    }

    fn kill_proxy(&self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("jupyterhub-proxy.pid"))
            && let Ok(pid) = pid.trim().parse::<i32>()
        {
            super::signal(pid, libc::SIGKILL);
        }
    }
}

impl Drop for JupyterHub {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return; // killed
        }
        // SIGTERM: the hub stops its servers and its proxy on the way out.
        super::signal(self.child.id() as i32, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.kill_proxy();
        self.remove_containers();
    }
}

/// The service's config for the hub at `hub_url` (which need not be there),
/// with the registry at `registry`.
pub fn launch_config(
    data: &std::path::Path,
    registry: &super::registry::OciRegistry,
    hub_url: &str,
    token: &str,
) -> bindery::config::Config {
    let mut c = super::service::config(data, Some(registry));
    c.hub.url = Some(hub_url.parse().unwrap());
    // The token by file, as a mounted Secret gives it.
    let token_file = data.join("hub-token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    c.hub.api_token = Some(bindery::config::SecretSource::File(token_file));
    c.hub.retries = 2;
    c.hub.retry_delay_ms = 100;
    c.hub.launch_timeout_secs = 120;
    c.web.rate_limit.limit = 0;
    c
}

/// A warm pool of at most `max_servers`, one server per image launched
/// at all, passing every second.
pub fn with_pool(c: &mut bindery::config::Config, max_servers: u32) {
    c.warm_pool.max_servers = max_servers;
    c.warm_pool.every_secs = 1;
    let popular = c.plugins.get_mut("popular").unwrap();
    popular.enabled = true;
    popular.config =
        toml::from_str("min_launches = 0.5\nlaunches_per_server = 1\nmax_per_image = 1").unwrap();
}

/// A service launching on `c`'s hub, building nothing.
pub async fn launch_service(c: bindery::config::Config) -> super::service::Service {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    launch_service_on(c, listener).await
}

/// The same, listening on `listener` (whose address the hub must know first).
pub async fn launch_service_on(
    c: bindery::config::Config,
    listener: tokio::net::TcpListener,
) -> super::service::Service {
    use std::sync::Arc;
    let hub = Arc::new(bindery::jupyterhub::Hub::new(&c.hub).unwrap().unwrap());
    let launcher: Arc<dyn bindery::launch::Launcher> =
        Arc::new(bindery::launch::hub::HubLauncher::new(hub, &c).unwrap());
    super::service::Service::start_on(listener, c, bindery::app::Builds::Off, Some(launcher)).await
}

/// A repository whose image is already in the registry: the test Jupyter
/// image (without the repository's files: the builds tests cover those),
/// tagged and pushed under the name Bindery gives the revision. The
/// repository, the revision and the image.
pub fn built_repo(
    registry: &super::registry::OciRegistry,
) -> (super::engine::TestRepo, String, String) {
    let repo = super::engine::TestRepo::new();
    let sha = repo.commit(&[("README.md", b"# launched\n")], &[]);
    let slug =
        bindery::registry::naming::safe_build_slug(&repo.url, 255 - registry.host().len() - 7, 6);
    let image = format!("{}/binder-{slug}:{sha}", registry.host());
    let e = engine();
    assert!(
        e.docker(&["tag", "bindery-test/jupyter:1", &image])
            .status
            .success()
    );
    let pushed = e.docker(&["push", "-q", &image]);
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    (repo, sha, image)
}

/// The hub's user API at scale, for the culler's pass over many servers:
/// `GET users?state=ready` paginated as JupyterHub 5+ does (`limit` at most
/// 200, `_pagination.next`), `DELETE users/{name}/server` (204, or 202 for
/// users named `slow-*`) and `DELETE users/{name}`. Counts every request.
/// `n` users with a ready server each, named by `name`, every third last
/// active two hours ago and the rest now: (name, last activity).
pub fn every_third_idle(n: usize, name: impl Fn(usize) -> String) -> Vec<(String, String)> {
    let now = chrono::Utc::now();
    let old = (now - chrono::Duration::hours(2)).to_rfc3339();
    let fresh = now.to_rfc3339();
    (0..n)
        .map(|i| {
            (
                name(i),
                if i % 3 == 0 {
                    old.clone()
                } else {
                    fresh.clone()
                },
            )
        })
        .collect()
}

pub struct PaginatedHub {
    pub url: String,
    pub requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    pub deleted: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for PaginatedHub {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl PaginatedHub {
    /// `users`: (name, last activity as ISO 8601), each with one ready default server.
    pub async fn start(users: Vec<(String, String)>) -> PaginatedHub {
        use axum::extract::{Path, Query, State};
        use std::collections::HashMap;
        use std::sync::atomic::Ordering;
        use std::sync::{Arc, Mutex};
        type Shared = (
            Arc<Mutex<Vec<(String, String)>>>,
            Arc<std::sync::atomic::AtomicUsize>,
            Arc<Mutex<Vec<String>>>,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let shared: Shared = (
            Arc::new(Mutex::new(users)),
            Default::default(),
            Default::default(),
        );
        async fn list(
            State((users, n, _)): State<Shared>,
            Query(q): Query<HashMap<String, String>>,
        ) -> axum::Json<Value> {
            n.fetch_add(1, Ordering::SeqCst);
            let users = users.lock().unwrap();
            let offset: usize = q.get("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
            let limit: usize = q
                .get("limit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(200)
                .min(200);
            let items: Vec<Value> = users
                .iter()
                .skip(offset)
                .take(limit)
                .map(|(name, active)| {
                    serde_json::json!({ "name": name, "admin": false, "groups": ["binder-users"], "created": "2026-01-01T00:00:00Z", "last_activity": active,
                        "servers": { "": { "name": "", "ready": true, "pending": null, "url": format!("/user/{name}/"), "started": "2026-01-01T00:00:00Z", "last_activity": active,
                            "user_options": { "image": "reg/binder-x:1", "repo_url": "https://github.com/a/b", "binder_request": "v2/gh/a/b/HEAD" } } } })
                })
                .collect();
            let next = (offset + limit < users.len()).then(|| serde_json::json!({ "offset": offset + limit, "limit": limit, "url": format!("users?state=ready&offset={}&limit={limit}", offset + limit) }));
            axum::Json(
                serde_json::json!({ "items": items, "_pagination": { "offset": offset, "limit": limit, "total": users.len(), "next": next } }),
            )
        }
        async fn stop(
            State((_, n, deleted)): State<Shared>,
            Path(name): Path<String>,
        ) -> axum::http::StatusCode {
            n.fetch_add(1, Ordering::SeqCst);
            if name.starts_with("slow-") {
                return axum::http::StatusCode::ACCEPTED;
            }
            deleted.lock().unwrap().push(format!("{name}/server"));
            axum::http::StatusCode::NO_CONTENT
        }
        async fn delete_user(
            State((users, n, deleted)): State<Shared>,
            Path(name): Path<String>,
        ) -> axum::http::StatusCode {
            n.fetch_add(1, Ordering::SeqCst);
            users.lock().unwrap().retain(|(u, _)| *u != name);
            deleted.lock().unwrap().push(name);
            axum::http::StatusCode::NO_CONTENT
        }
        let app = axum::Router::new()
            .route("/hub/api/users", axum::routing::get(list))
            .route("/hub/api/users/{name}/server", axum::routing::delete(stop))
            .route("/hub/api/users/{name}", axum::routing::delete(delete_user))
            .with_state(shared.clone());
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        PaginatedHub {
            url,
            requests: shared.1,
            deleted: shared.2,
            server,
        }
    }
}
