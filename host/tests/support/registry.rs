//! A real OCI registry (Debian's `docker-registry`, distribution 2.8) on a
//! free loopback port, optionally behind htpasswd basic auth. Stopped on drop.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

pub struct OciRegistry {
    pub port: u16,
    pub credentials: Option<(String, String)>,
    _dir: tempfile::TempDir,
    child: Child,
}

impl OciRegistry {
    /// Starts a registry; with `credentials`, every request needs them.
    pub fn start(credentials: Option<(&str, &str)>) -> OciRegistry {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = credentials {
            let out = Command::new("htpasswd").args(["-Bbn", user, password]).output().expect("htpasswd (apache2-utils)");
            assert!(out.status.success(), "htpasswd failed");
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, out.stdout).unwrap();
            config.push_str(&format!("auth:\n  htpasswd:\n    realm: bindery-test\n    path: {}\n", file.display()));
        }
        let config_file = dir.path().join("config.yml");
        std::fs::write(&config_file, config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian package docker-registry; scripts/setup.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let credentials = credentials.map(|(u, p)| (u.to_string(), p.to_string()));
        OciRegistry { port, credentials, _dir: dir, child }
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// Pushes a one-layer image as `repository:tag`; returns its manifest digest.
    pub async fn push(&self, repository: &str, tag: &str) -> String {
        Self::client_for(&self.host(), self.credentials.clone()).push(repository, tag).await
    }

    /// A pusher for a registry at `host`.
    pub fn client_for(host: &str, credentials: Option<(String, String)>) -> Pusher {
        Pusher { host: host.into(), credentials }
    }

    /// Stops the registry (it is "down" from then on).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pushes test images over the OCI API.
pub struct Pusher {
    host: String,
    credentials: Option<(String, String)>,
}

impl Pusher {
    /// Pushes a one-layer image as `repository:tag`; returns its manifest digest.
    pub async fn push(&self, repository: &str, tag: &str) -> String {
        let client = Client::new(ClientConfig { protocol: ClientProtocol::Http, ..Default::default() });
        let reference = Reference::with_tag(self.host.clone(), repository.into(), tag.into());
        let auth = match &self.credentials {
            Some((u, p)) => RegistryAuth::Basic(u.clone(), p.clone()),
            None => RegistryAuth::Anonymous,
        };
        let layer = ImageLayer::oci_v1(format!("content of {repository}:{tag}").into_bytes(), None);
        let config = Config::oci_v1(br#"{"architecture":"amd64","os":"linux"}"#.to_vec(), None);
        let pushed = client.push(&reference, &[layer], config, &auth, None).await.expect("push to the test registry");
        pushed.manifest_url.rsplit('/').next().unwrap().to_string()
    }
}

impl Drop for OciRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}
