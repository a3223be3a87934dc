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
        Self::start_with(credentials, None, None)
    }

    /// Starts a registry that wants bearer tokens from `token`'s realm.
    pub fn start_token(token: &TokenService) -> OciRegistry {
        Self::start_with(Some((&token.user, &token.password)), Some(token), None)
    }

    /// Starts a registry storing its blobs and manifests under `storage`.
    pub fn start_on(storage: &std::path::Path) -> OciRegistry {
        Self::start_with(None, None, Some(storage))
    }

    fn start_with(
        credentials: Option<(&str, &str)>,
        token: Option<&TokenService>,
        storage: Option<&std::path::Path>,
    ) -> OciRegistry {
        let dir = tempfile::tempdir().unwrap();
        let port = super::free_port();
        let storage = storage.map_or_else(|| dir.path().join("data"), std::path::Path::to_path_buf);
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        );
        if let Some(t) = token {
            config.push_str(&format!(
                "auth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                t.realm,
                t.cert.display()
            ));
        } else if let Some((user, password)) = credentials {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("htpasswd (apache2-utils)");
            assert!(out.status.success(), "htpasswd failed");
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, out.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: bindery-test\n    path: {}\n",
                file.display()
            ));
        }
        let config_file = dir.path().join("config.yml");
        std::fs::write(&config_file, config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "docker-registry (Debian package docker-registry; scripts/setup.sh installs it)",
            );
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let credentials = credentials.map(|(u, p)| (u.to_string(), p.to_string()));
        OciRegistry {
            port,
            credentials,
            _dir: dir,
            child,
        }
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
        Self::client_for(&self.host(), self.credentials.clone())
            .push(repository, tag)
            .await
    }

    /// A pusher for a registry at `host`.
    pub fn client_for(host: &str, credentials: Option<(String, String)>) -> Pusher {
        Pusher {
            host: host.into(),
            credentials,
        }
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
        let client = Client::new(ClientConfig {
            protocol: ClientProtocol::Http,
            ..Default::default()
        });
        let reference = Reference::with_tag(self.host.clone(), repository.into(), tag.into());
        let auth = match &self.credentials {
            Some((u, p)) => RegistryAuth::Basic(u.clone(), p.clone()),
            None => RegistryAuth::Anonymous,
        };
        let layer = ImageLayer::oci_v1(format!("content of {repository}:{tag}").into_bytes(), None);
        let config = Config::oci_v1(br#"{"architecture":"amd64","os":"linux"}"#.to_vec(), None);
        let pushed = client
            .push(&reference, &[layer], config, &auth, None)
            .await
            .expect("push to the test registry");
        pushed.manifest_url.rsplit('/').next().unwrap().to_string()
    }
}

impl Drop for OciRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

const SERVICE: &str = "bindery-test-registry";
const ISSUER: &str = "bindery-test-issuer";

/// A token service as Docker's token authentication describes it: it checks
/// basic credentials and answers `{"token": <JWT>}`, RS256-signed by a key
/// whose self-signed certificate the registry trusts. Signing uses the
/// `openssl` command line. Stopped on drop.
pub struct TokenService {
    pub realm: String,
    pub user: String,
    pub password: String,
    pub cert: std::path::PathBuf,
    pub issued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    _dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl TokenService {
    pub async fn start(user: &str, password: &str) -> TokenService {
        use base64::Engine as _;
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
        let ok = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=bindery-test-token",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl")
            .success();
        assert!(ok, "openssl could not make the token key");
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .output()
            .unwrap()
            .stdout;
        let x5c = base64::engine::general_purpose::STANDARD.encode(der);
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let issued = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = issued.clone();
        let app = axum::Router::new().route(
            "/token",
            axum::routing::get(
                move |headers: axum::http::HeaderMap,
                      axum::extract::Query(q): axum::extract::Query<
                    std::collections::HashMap<String, String>,
                >| {
                    let (key, x5c, expected, counter) =
                        (key.clone(), x5c.clone(), expected.clone(), counter.clone());
                    async move {
                        use axum::response::IntoResponse;
                        if headers.get("authorization").and_then(|v| v.to_str().ok())
                            != Some(expected.as_str())
                        {
                            return (axum::http::StatusCode::UNAUTHORIZED, "bad credentials")
                                .into_response();
                        }
                        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let token = sign(&key, &x5c, q.get("scope").map_or("", String::as_str));
                        axum::Json(serde_json::json!({ "token": token })).into_response()
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let realm = format!(
            "http://127.0.0.1:{}/token",
            listener.local_addr().unwrap().port()
        );
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        TokenService {
            realm,
            user: user.into(),
            password: password.into(),
            cert,
            issued,
            _dir: dir,
            server,
        }
    }
}

impl Drop for TokenService {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A JWT granting `scope` (`repository:<name>:<actions>`).
fn sign(key: &std::path::Path, x5c: &str, scope: &str) -> String {
    use base64::Engine as _;
    use std::io::Write as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut parts = scope.split(':');
    let (kind, name, actions) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let header = serde_json::json!({ "alg": "RS256", "typ": "JWT", "x5c": [x5c] });
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": "builder", "aud": SERVICE, "exp": now + 300, "nbf": now - 10, "iat": now,
        "jti": format!("{now}-{name}"),
        "access": [{ "type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>() }],
    });
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(signing_input.as_bytes())
        .unwrap();
    let signature = child.wait_with_output().unwrap().stdout;
    format!("{signing_input}.{}", b64(&signature))
}
