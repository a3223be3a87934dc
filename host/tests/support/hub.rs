//! A real JupyterHub (PyPI `jupyterhub` with `configurable-http-proxy` from
//! npm, from `scripts/hub.sh`) on free loopback ports, with DockerSpawner
//! running the launched image in the Docker engine of `scripts/engine.sh`.
//! The spawner is configured as the BinderHub chart configures KubeSpawner:
//! the image and the token come from the launch's `user_options`, and the
//! server is a plain `jupyter-server` opened with that token. Activity is
//! reported every 5 s (`last_activity_interval`). Stopped on drop, with the
//! servers it started.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::engine::engine;

/// Paths printed by `scripts/hub.sh`.
struct Installed {
    jupyterhub: PathBuf,
    chp: PathBuf,
}

fn installed() -> &'static Installed {
    static INSTALLED: OnceLock<Installed> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let out = Command::new(super::workspace().join("scripts/hub.sh")).output().expect("scripts/hub.sh runs");
        assert!(out.status.success(), "scripts/hub.sh failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let value = |key: &str| PathBuf::from(text.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).unwrap_or_else(|| panic!("{key} in {text}")));
        Installed { jupyterhub: value("JUPYTERHUB"), chp: value("CHP") }
    })
}

pub struct JupyterHub {
    /// The public URL (the proxy), ending in `/`.
    pub url: String,
    /// The REST API, ending in `/`.
    pub api: String,
    /// The `binder` service's token.
    pub token: String,
    dir: tempfile::TempDir,
    child: Child,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

const CONFIG: &str = r#"
import socket
from dockerspawner import DockerSpawner
from tornado import web

class BinderSpawner(DockerSpawner):
    """The BinderHub chart's spawner settings, on DockerSpawner."""

    async def start(self):
        if "token" not in self.user_options or "image" not in self.user_options:
            raise web.HTTPError(400, "token and image are required")
        self.image = self.user_options["image"]
        # Host networking: each server needs a port of its own.
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        return await super().start()

    async def get_ip_and_port(self):
        return "127.0.0.1", self.port

    def get_args(self):
        return [
            "--ip=127.0.0.1",
            f"--port={self.port}",
            f"--ServerApp.base_url={self.server.base_url}",
            f"--ServerApp.token={self.user_options['token']}",
            "--ServerApp.trust_xheaders=True",
            "--ServerApp.allow_origin=*",
        ]

c.JupyterHub.bind_url = "http://127.0.0.1:{proxy_port}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.command = ["{chp}"]
c.JupyterHub.authenticator_class = "null"
c.JupyterHub.db_url = "sqlite:///{dir}/hub.sqlite"
c.JupyterHub.cookie_secret_file = "{dir}/cookie_secret"
c.JupyterHub.pid_file = "{dir}/hub.pid"
c.JupyterHub.last_activity_interval = 5
c.JupyterHub.allow_named_servers = True
c.JupyterHub.services = [{{"name": "binder", "api_token": "{token}"}}]
c.JupyterHub.load_roles = [{{
    "name": "binder",
    "services": ["binder"],
    "scopes": ["admin:users", "admin:servers", "tokens", "read:users:activity", "access:servers", "list:users"],
}}]
c.JupyterHub.spawner_class = BinderSpawner
c.DockerSpawner.cmd = ["jupyter-server"]
c.DockerSpawner.network_name = "host"
# No port bindings (host networking has none); the address is get_ip_and_port's.
c.DockerSpawner.use_internal_ip = True
c.DockerSpawner.allowed_images = "*"
c.DockerSpawner.remove = True
c.DockerSpawner.extra_host_config = {{"init": True}}
c.DockerSpawner.name_template = "bindery-hub-{proxy_port}-{{username}}-{{servername}}"
c.Spawner.environment = {{"JUPYTERHUB_ACTIVITY_INTERVAL": "5", "JUPYTERHUB_ALLOW_TOKEN_IN_URL": "1"}}
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 60
"#;

impl JupyterHub {
    pub async fn start() -> JupyterHub {
        let docker_host = engine().docker_host.clone();
        let tools = installed();
        let dir = tempfile::tempdir().unwrap();
        let (proxy_port, hub_port, proxy_api_port) = (free_port(), free_port(), free_port());
        let token = format!("bindery-test-{proxy_port}-{hub_port}");
        let config = CONFIG
            .replace("{proxy_port}", &proxy_port.to_string())
            .replace("{hub_port}", &hub_port.to_string())
            .replace("{proxy_api_port}", &proxy_api_port.to_string())
            .replace("{chp}", tools.chp.to_str().unwrap())
            .replace("{dir}", dir.path().to_str().unwrap())
            .replace("{token}", &token)
            .replace("{{", "{")
            .replace("}}", "}");
        let config_file = dir.path().join("jupyterhub_config.py");
        std::fs::write(&config_file, config).unwrap();
        let child = Command::new(&tools.jupyterhub)
            .arg("-f")
            .arg(&config_file)
            .current_dir(dir.path())
            .env("DOCKER_HOST", &docker_host)
            .env("PATH", format!("{}:{}", tools.jupyterhub.parent().unwrap().display(), std::env::var("PATH").unwrap_or_default()))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("hub.log")).unwrap())
            .spawn()
            .expect("jupyterhub runs");
        let hub = JupyterHub {
            url: format!("http://127.0.0.1:{proxy_port}/"),
            api: format!("http://127.0.0.1:{proxy_port}/hub/api/"),
            token,
            dir,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = reqwest::get(&hub.api).await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "JupyterHub did not start:\n{}", hub.log());
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
        let response = reqwest::Client::new()
            .request(method, format!("{}{path}", self.api))
            .header("authorization", format!("token {}", self.token))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
    }

    /// Every user with their servers.
    pub async fn users(&self) -> Vec<Value> {
        let (status, users) = self.api(reqwest::Method::GET, "users").await;
        assert_eq!(status, 200, "{users}");
        users.as_array().cloned().unwrap_or_default()
    }
}

impl Drop for JupyterHub {
    fn drop(&mut self) {
        // SIGTERM: the hub stops its servers and its proxy on the way out.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("jupyterhub-proxy.pid")) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}
