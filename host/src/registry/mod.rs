//! The image registry: names (upstream's rule) and existence look-ups over the
//! OCI distribution API with `oci-client`, remembered in the sled `images` tree.

pub mod naming;

use crate::now_ms;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use oci_client::client::ClientProtocol;
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use regex::Regex;
use sha2::Digest as _;

use crate::cache::ImageCache;
use crate::config::{ConfigError, RegistryConfig};

/// A look-up that could not say whether the image exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// No answer: refused, timed out, DNS, TLS.
    #[error("the image registry at {url} cannot be reached: {reason}")]
    Unreachable {
        /// The registry.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The registry refused Bindery's credentials (or their absence).
    #[error(
        "the image registry at {url} refused Bindery's credentials; check [registry] username/password or docker_config"
    )]
    Unauthorized {
        /// The registry.
        url: String,
    },
    /// Any other failure, e.g. a 500.
    #[error("the image registry at {url} failed: {reason}")]
    Failed {
        /// The registry.
        url: String,
        /// What it said.
        reason: String,
    },
}

/// Looks images up in the configured registry.
pub struct Registry {
    config: RegistryConfig,
    /// `host[:port]` of `config.url`; `None` without a registry.
    host: Option<String>,
    protocol: ClientProtocol,
    client: Arc<OnceLock<Client>>,
    cache: Option<ImageCache>,
    docker_hub: Regex,
}

/// Upstream's test for names that look like Docker Hub's `user/repo`.
const DOCKER_HUB_NAME: &str = r"^[a-z0-9]{4,40}/[a-z0-9._-]{2,255}$";
const RETRY_DELAY: Duration = Duration::from_millis(200);

impl Registry {
    /// A registry client for `config`, remembering found images in `cache`.
    pub fn new(
        config: &RegistryConfig,
        cache: Option<ImageCache>,
    ) -> Result<Registry, ConfigError> {
        let host = config.url.as_ref().map(|u| match u.port() {
            Some(p) => format!("{}:{p}", u.host_str().unwrap_or_default()),
            None => u.host_str().unwrap_or_default().to_string(),
        });
        let protocol = match (&config.url, &host) {
            (Some(u), Some(h)) if u.scheme() == "http" => {
                ClientProtocol::HttpsExcept(vec![h.clone()])
            }
            _ => ClientProtocol::Https,
        };
        let timeout = Duration::from_millis(config.timeout_ms);
        // Building the TLS client reads the system's CA bundle (about 90 ms
        // here): do it off the start-up path, and not at all without a registry.
        let client = Arc::new(OnceLock::new());
        if host.is_some() {
            let (cell, protocol) = (client.clone(), protocol.clone());
            std::thread::spawn(move || {
                cell.get_or_init(|| build_client(protocol, timeout));
            });
        }
        Ok(Registry {
            config: config.clone(),
            host,
            protocol,
            client,
            cache,
            docker_hub: Regex::new(DOCKER_HUB_NAME).expect("constant regex"),
        })
    }

    /// The image a build slug and resolved ref are built into.
    pub fn image_name(&self, build_slug: &str, resolved_ref: &str) -> String {
        naming::image_name(&self.config.image_prefix, build_slug, resolved_ref)
    }

    /// Whether a registry is configured (else only recorded builds count).
    pub fn is_configured(&self) -> bool {
        self.host.is_some()
    }

    /// The image's manifest digest, or `None` when the registry does not have it.
    pub async fn lookup(&self, image: &str) -> Result<Option<String>, RegistryError> {
        let ttl_ms = self.config.found_ttl_secs * 1000;
        if let Some(cache) = &self.cache {
            match cache.get(image, now_ms(), ttl_ms) {
                Ok(Some(digest)) => return Ok(Some(digest)),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(image, "image cache read failed, asking the registry: {e}")
                }
            }
        }
        if self.host.is_none() {
            return Ok(None);
        }
        let found = self.ask(image).await?;
        match &found {
            Some(digest) => self.record(image, digest),
            None => self.forget(image),
        }
        Ok(found)
    }

    /// Records that `image` now exists (a build pushed it).
    pub fn record(&self, image: &str, digest: &str) {
        if let Some(cache) = &self.cache {
            if let Err(e) = cache.put(image, digest, now_ms()) {
                tracing::warn!(image, "image cache write failed: {e}");
            }
        }
    }

    fn forget(&self, image: &str) {
        if let Some(cache) = &self.cache {
            if let Err(e) = cache.remove(image) {
                tracing::warn!(image, "image cache write failed: {e}");
            }
        }
    }

    /// Upstream's health check: ask for an image that need not exist; any
    /// definite answer (found or not) means the registry works.
    pub async fn check(&self) -> Result<(), RegistryError> {
        if self.host.is_none() {
            return Ok(());
        }
        let probe = format!("{}some-image-name:12345", self.config.image_prefix);
        self.ask(&probe).await.map(drop)
    }

    /// One manifest look-up with retries on failures that may pass.
    async fn ask(&self, image: &str) -> Result<Option<String>, RegistryError> {
        let reference = self.reference(image);
        let auth = self.auth();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = self.client().fetch_manifest_digest(&reference, &auth).await;
            match self.classify(outcome) {
                Err(e @ (RegistryError::Unreachable { .. } | RegistryError::Failed { .. }))
                    if attempt < self.config.retries.max(1) =>
                {
                    tracing::debug!(image, attempt, "registry look-up failed, retrying: {e}");
                    tokio::time::sleep(RETRY_DELAY * attempt).await;
                }
                other => return other,
            }
        }
    }

    /// The OCI client, built now unless the start-up thread already did.
    fn client(&self) -> &Client {
        self.client.get_or_init(|| {
            build_client(
                self.protocol.clone(),
                Duration::from_millis(self.config.timeout_ms),
            )
        })
    }

    /// The reference asked for: upstream drops the registry host from names
    /// unless they look like Docker Hub's `user/repo`, and asks `url` instead.
    fn reference(&self, image: &str) -> Reference {
        let (repository, tag) = naming::split_tag(image);
        let repository = if self.docker_hub.is_match(repository) {
            repository
        } else {
            repository
                .split_once('/')
                .map_or(repository, |(_, rest)| rest)
        };
        let host = self.host.clone().unwrap_or_default();
        Reference::with_tag(
            host,
            repository.to_string(),
            tag.unwrap_or("latest").to_string(),
        )
    }

    fn auth(&self) -> RegistryAuth {
        if let Some(user) = &self.config.username {
            let password = self
                .config
                .password
                .as_ref()
                .and_then(|p| p.read())
                .unwrap_or_default();
            return RegistryAuth::Basic(user.clone(), password);
        }
        match (&self.config.docker_config, &self.host) {
            (Some(path), Some(host)) => {
                docker_config_auth(path, host).unwrap_or(RegistryAuth::Anonymous)
            }
            _ => RegistryAuth::Anonymous,
        }
    }

    fn classify(
        &self,
        outcome: Result<String, OciDistributionError>,
    ) -> Result<Option<String>, RegistryError> {
        match outcome {
            Ok(digest) => Ok(Some(digest)),
            Err(e) if self.is_missing(&e) => Ok(None),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Whether the registry answered "no such image or blob".
    fn is_missing(&self, e: &OciDistributionError) -> bool {
        match e {
            OciDistributionError::RegistryError { envelope, .. } => {
                envelope.errors.iter().any(|e| {
                    matches!(
                        e.code,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::NotFound
                            | OciErrorCode::BlobUnknown
                    )
                })
            }
            OciDistributionError::ImageManifestNotFoundError(_)
            | OciDistributionError::ServerError { code: 404, .. } => true,
            // Docker Hub answers 401 for repositories that do not exist.
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => self
                .host
                .as_deref()
                .is_some_and(|h| h.ends_with("docker.io")),
            _ => false,
        }
    }

    fn error(&self, e: OciDistributionError) -> RegistryError {
        let url = self.url();
        match e {
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => RegistryError::Unauthorized { url },
            OciDistributionError::RegistryError { envelope, .. }
                if envelope.errors.iter().any(|e| {
                    matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied)
                }) =>
            {
                RegistryError::Unauthorized { url }
            }
            OciDistributionError::RequestError(e) => RegistryError::Unreachable {
                url,
                reason: error_chain(&e),
            },
            OciDistributionError::ServerError { code, message, .. } => RegistryError::Failed {
                url,
                reason: format!("HTTP {code} {}", server_message(&message))
                    .trim()
                    .to_string(),
            },
            e => RegistryError::Failed {
                url,
                reason: e.to_string(),
            },
        }
    }

    /// `image`'s manifest as stored (for an index, its linux/amd64 image's),
    /// or `None` when the registry does not have it.
    pub async fn manifest(&self, image: &str) -> Result<Option<StoredManifest>, RegistryError> {
        let mut reference = self.reference(image);
        for _ in 0..2 {
            let (body, digest) = match self
                .client()
                .pull_manifest_raw(&reference, &self.auth(), MANIFEST_TYPES)
                .await
            {
                Ok(found) => found,
                Err(e) if self.is_missing(&e) => return Ok(None),
                Err(e) => return Err(self.error(e)),
            };
            let parsed: serde_json::Value =
                serde_json::from_slice(&body).map_err(|e| RegistryError::Failed {
                    url: self.url(),
                    reason: format!("the manifest of {image} is not JSON: {e}"),
                })?;
            let media_type = parsed["mediaType"]
                .as_str()
                .unwrap_or(OCI_MANIFEST)
                .to_string();
            let Some(entries) = parsed["manifests"].as_array() else {
                return Ok(Some(StoredManifest {
                    body: body.to_vec(),
                    media_type,
                    digest,
                }));
            };
            let amd64 = entries.iter().find(|m| {
                m["platform"]["os"] == "linux" && m["platform"]["architecture"] == "amd64"
            });
            let Some(chosen) = amd64.and_then(|m| m["digest"].as_str()) else {
                return Err(RegistryError::Failed {
                    url: self.url(),
                    reason: format!("{image} has no linux/amd64 image"),
                });
            };
            reference = reference.clone_with_digest(chosen.to_string());
        }
        Err(RegistryError::Failed {
            url: self.url(),
            reason: format!("{image} is an index of indexes"),
        })
    }

    /// A blob of `image`'s repository.
    pub async fn blob(&self, image: &str, digest: &str) -> Result<Vec<u8>, RegistryError> {
        let reference = self.reference(image);
        self.client()
            .store_auth_if_needed(reference.resolve_registry(), &self.auth())
            .await;
        let mut out = Vec::new();
        self.client()
            .pull_blob(&reference, digest, &mut out)
            .await
            .map_err(|e| self.error(e))?;
        Ok(out)
    }

    /// Logs in for pushing to `image`'s repository.
    pub async fn authorize_push(&self, image: &str) -> Result<(), RegistryError> {
        let reference = self.reference(image);
        self.client()
            .auth(
                &reference,
                &self.auth(),
                oci_client::RegistryOperation::Push,
            )
            .await
            .map(drop)
            .map_err(|e| self.error(e))
    }

    /// Makes the blob `digest` present in `image`'s repository: nothing when
    /// it is, a cross-repository mount from `from` when that works, else an upload.
    pub async fn put_blob(
        &self,
        image: &str,
        from: Option<&str>,
        data: impl FnOnce() -> std::io::Result<Vec<u8>>,
        digest: &str,
    ) -> Result<(), RegistryError> {
        let reference = self.reference(image);
        if self
            .client()
            .blob_exists(&reference, digest)
            .await
            .map_err(|e| self.error(e))?
        {
            return Ok(());
        }
        if let Some(source) = from
            .map(|f| self.reference(f))
            .filter(|s| s.repository() != reference.repository())
        {
            if self
                .client()
                .mount_blob(&reference, &source, digest)
                .await
                .is_ok()
            {
                return Ok(());
            }
        }
        let data = data().map_err(|e| RegistryError::Failed {
            url: self.url(),
            reason: format!("cannot read the blob to push: {e}"),
        })?;
        self.client()
            .push_blob(&reference, data, digest)
            .await
            .map(drop)
            .map_err(|e| self.error(e))
    }

    /// Pushes a manifest under `image`'s tag; its digest.
    pub async fn put_manifest(
        &self,
        image: &str,
        body: Vec<u8>,
        media_type: &str,
    ) -> Result<String, RegistryError> {
        let reference = self.reference(image);
        let digest = digest(&body);
        let content_type = media_type.parse().map_err(|_| RegistryError::Failed {
            url: self.url(),
            reason: format!("bad media type {media_type:?}"),
        })?;
        self.client()
            .push_manifest_raw(&reference, body, content_type)
            .await
            .map_err(|e| self.error(e))?;
        Ok(digest)
    }

    fn url(&self) -> String {
        self.config
            .url
            .as_ref()
            .map(|u| u.as_str().trim_end_matches('/').to_string())
            .unwrap_or_default()
    }
}

/// The `sha256:…` digest of a blob or manifest.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// A manifest as the registry stores it.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    /// The bytes (their sha256 is the digest).
    pub body: Vec<u8>,
    /// `mediaType`.
    pub media_type: String,
    /// `sha256:…`.
    pub digest: String,
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MANIFEST_TYPES: &[&str] = &[
    OCI_MANIFEST,
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

fn build_client(protocol: ClientProtocol, timeout: Duration) -> Client {
    Client::new(oci_client::client::ClientConfig {
        protocol,
        read_timeout: Some(timeout),
        connect_timeout: Some(timeout),
        user_agent: concat!("bindery/", env!("CARGO_PKG_VERSION")),
        ..Default::default()
    })
}

/// The whole cause chain of a transport error ("connection refused" sits deep).
/// A registry's error body in words: the distribution API's `errors` when it
/// is that (a detail keeps its end, where Go puts the cause, e.g. "no space
/// left on device"), else the start of the body.
fn server_message(body: &str) -> String {
    const KEEP: usize = 200;
    let errors = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            let errors = v.get("errors")?.as_array()?.iter().map(|e| {
                let message = e["message"].as_str().unwrap_or_default();
                match e["detail"].as_str() {
                    Some(detail) if detail.chars().count() > KEEP => format!(
                        "{message}: …{}",
                        detail
                            .chars()
                            .skip(detail.chars().count() - KEEP)
                            .collect::<String>()
                    ),
                    Some(detail) => format!("{message}: {detail}"),
                    None => message.to_string(),
                }
            });
            Some(errors.collect::<Vec<_>>().join("; "))
        });
    errors.unwrap_or_else(|| body.chars().take(KEEP).collect())
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// Basic credentials for `host` from a Docker `config.json` (`auths.<host>.auth`
/// is base64 of `user:password`).
fn docker_config_auth(path: &std::path::Path, host: &str) -> Option<RegistryAuth> {
    let text = std::fs::read_to_string(path)
        .map_err(
            |e| tracing::warn!(path = %path.display(), "cannot read registry credentials: {e}"),
        )
        .ok()?;
    let config: serde_json::Value = serde_json::from_str(&text)
        .map_err(
            |e| tracing::warn!(path = %path.display(), "registry credentials are not JSON: {e}"),
        )
        .ok()?;
    let auths = config.get("auths")?.as_object()?;
    let entry = auths.iter().find(|(k, _)| {
        let k = k
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        k.split('/').next() == Some(host)
    })?;
    let encoded = entry.1.get("auth")?.as_str()?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some(RegistryAuth::Basic(user.into(), password.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_errors_keep_their_cause() {
        let path = "/srv/registry/v2/repositories/binder-x/_uploads/".repeat(8);
        let body = format!(
            r#"{{"errors":[{{"code":"UNKNOWN","message":"unknown error","detail":"write {path}data: no space left on device"}}]}}"#
        );
        let said = server_message(&body);
        assert!(
            said.starts_with("unknown error: …") && said.ends_with("data: no space left on device"),
            "{said}"
        );
        assert_eq!(
            server_message(
                r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#
            ),
            "repository name not known to registry"
        );
        assert_eq!(
            server_message(&"x".repeat(500)).len(),
            200,
            "a body that is not the API's is cut"
        );
    }

    fn registry(url: &str, prefix: &str) -> Registry {
        let config = RegistryConfig {
            url: Some(url.parse().unwrap()),
            image_prefix: prefix.into(),
            ..Default::default()
        };
        Registry::new(&config, None).unwrap()
    }

    #[test]
    fn the_registry_host_is_dropped_unless_the_name_looks_like_docker_hub() {
        let r = registry("http://127.0.0.1:5000", "127.0.0.1:5000/binder-");
        let reference = r.reference("127.0.0.1:5000/binder-x-abcdef:123");
        assert_eq!(
            (
                reference.registry(),
                reference.repository(),
                reference.tag()
            ),
            ("127.0.0.1:5000", "binder-x-abcdef", Some("123"))
        );
        let reference = r.reference("myorg/binder-x:1");
        assert_eq!(
            reference.repository(),
            "myorg/binder-x",
            "Docker Hub style names are kept whole"
        );
        let reference = r.reference("gcr.io/project/sub/binder-x:1");
        assert_eq!(reference.repository(), "project/sub/binder-x");
    }

    #[test]
    fn docker_config_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("user:p:ss");
        std::fs::write(
            &path,
            format!(r#"{{"auths":{{"https://reg.example.org/v1/":{{"auth":"{auth}"}}}}}}"#),
        )
        .unwrap();
        assert!(
            docker_config_auth(&path, "reg.example.org")
                == Some(RegistryAuth::Basic("user".into(), "p:ss".into()))
        );
        assert!(docker_config_auth(&path, "other.example.org").is_none());
    }
}
