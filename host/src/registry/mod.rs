//! The image registry: names (upstream's rule) and existence look-ups over the
//! OCI distribution API with `oci-client`, remembered in the sled `images` tree.

pub mod naming;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::client::ClientProtocol;
use oci_client::{Client, Reference};
use regex::Regex;

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
    #[error("the image registry at {url} refused Bindery's credentials; check [registry] username/password or docker_config")]
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

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Registry {
    /// A registry client for `config`, remembering found images in `cache`.
    pub fn new(config: &RegistryConfig, cache: Option<ImageCache>) -> Result<Registry, ConfigError> {
        let host = config.url.as_ref().map(|u| match u.port() {
            Some(p) => format!("{}:{p}", u.host_str().unwrap_or_default()),
            None => u.host_str().unwrap_or_default().to_string(),
        });
        let protocol = match (&config.url, &host) {
            (Some(u), Some(h)) if u.scheme() == "http" => ClientProtocol::HttpsExcept(vec![h.clone()]),
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
                Err(e) => tracing::warn!(image, "image cache read failed, asking the registry: {e}"),
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
                Err(e @ (RegistryError::Unreachable { .. } | RegistryError::Failed { .. })) if attempt < self.config.retries.max(1) => {
                    tracing::debug!(image, attempt, "registry look-up failed, retrying: {e}");
                    tokio::time::sleep(RETRY_DELAY * attempt).await;
                }
                other => return other,
            }
        }
    }

    /// The OCI client, built now unless the start-up thread already did.
    fn client(&self) -> &Client {
        self.client.get_or_init(|| build_client(self.protocol.clone(), Duration::from_millis(self.config.timeout_ms)))
    }

    /// The reference asked for: upstream drops the registry host from names
    /// unless they look like Docker Hub's `user/repo`, and asks `url` instead.
    fn reference(&self, image: &str) -> Reference {
        let (repository, tag) = naming::split_tag(image);
        let repository = if self.docker_hub.is_match(repository) {
            repository
        } else {
            repository.split_once('/').map_or(repository, |(_, rest)| rest)
        };
        let host = self.host.clone().unwrap_or_default();
        Reference::with_tag(host, repository.to_string(), tag.unwrap_or("latest").to_string())
    }

    fn auth(&self) -> RegistryAuth {
        if let Some(user) = &self.config.username {
            let password = self.config.password.as_ref().and_then(|p| p.read()).unwrap_or_default();
            return RegistryAuth::Basic(user.clone(), password);
        }
        match (&self.config.docker_config, &self.host) {
            (Some(path), Some(host)) => docker_config_auth(path, host).unwrap_or(RegistryAuth::Anonymous),
            _ => RegistryAuth::Anonymous,
        }
    }

    fn classify(&self, outcome: Result<String, OciDistributionError>) -> Result<Option<String>, RegistryError> {
        let url = self.config.url.as_ref().map(|u| u.to_string()).unwrap_or_default();
        let url = url.trim_end_matches('/').to_string();
        match outcome {
            Ok(digest) => Ok(Some(digest)),
            Err(OciDistributionError::RegistryError { envelope, .. })
                if envelope.errors.iter().any(|e| matches!(e.code, OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown | OciErrorCode::NotFound)) =>
            {
                Ok(None)
            }
            Err(OciDistributionError::ImageManifestNotFoundError(_)) => Ok(None),
            Err(OciDistributionError::ServerError { code: 404, .. }) => Ok(None),
            Err(OciDistributionError::UnauthorizedError { .. } | OciDistributionError::AuthenticationFailure(_)) => {
                // Docker Hub answers 401 for repositories that do not exist.
                if self.host.as_deref().is_some_and(|h| h.ends_with("docker.io")) {
                    Ok(None)
                } else {
                    Err(RegistryError::Unauthorized { url })
                }
            }
            Err(OciDistributionError::RegistryError { envelope, .. })
                if envelope.errors.iter().any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied)) =>
            {
                Err(RegistryError::Unauthorized { url })
            }
            Err(OciDistributionError::RequestError(e)) => Err(RegistryError::Unreachable { url, reason: error_chain(&e) }),
            Err(OciDistributionError::ServerError { code, message, .. }) => {
                let message: String = message.chars().take(200).collect();
                Err(RegistryError::Failed { url, reason: format!("HTTP {code} {message}").trim().to_string() })
            }
            Err(e) => Err(RegistryError::Failed { url, reason: e.to_string() }),
        }
    }
}

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
fn error_chain(e: &dyn std::error::Error) -> String {
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
        .map_err(|e| tracing::warn!(path = %path.display(), "cannot read registry credentials: {e}"))
        .ok()?;
    let config: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| tracing::warn!(path = %path.display(), "registry credentials are not JSON: {e}"))
        .ok()?;
    let auths = config.get("auths")?.as_object()?;
    let entry = auths.iter().find(|(k, _)| {
        let k = k.trim_start_matches("https://").trim_start_matches("http://");
        k.split('/').next() == Some(host)
    })?;
    let encoded = entry.1.get("auth")?.as_str()?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
    let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some(RegistryAuth::Basic(user.into(), password.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(url: &str, prefix: &str) -> Registry {
        let config = RegistryConfig { url: Some(url.parse().unwrap()), image_prefix: prefix.into(), ..Default::default() };
        Registry::new(&config, None).unwrap()
    }

    #[test]
    fn the_registry_host_is_dropped_unless_the_name_looks_like_docker_hub() {
        let r = registry("http://127.0.0.1:5000", "127.0.0.1:5000/binder-");
        let reference = r.reference("127.0.0.1:5000/binder-x-abcdef:123");
        assert_eq!((reference.registry(), reference.repository(), reference.tag()), ("127.0.0.1:5000", "binder-x-abcdef", Some("123")));
        let reference = r.reference("myorg/binder-x:1");
        assert_eq!(reference.repository(), "myorg/binder-x", "Docker Hub style names are kept whole");
        let reference = r.reference("gcr.io/project/sub/binder-x:1");
        assert_eq!(reference.repository(), "project/sub/binder-x");
    }

    #[test]
    fn docker_config_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("user:p:ss");
        std::fs::write(&path, format!(r#"{{"auths":{{"https://reg.example.org/v1/":{{"auth":"{auth}"}}}}}}"#)).unwrap();
        assert!(docker_config_auth(&path, "reg.example.org") == Some(RegistryAuth::Basic("user".into(), "p:ss".into())));
        assert!(docker_config_auth(&path, "other.example.org").is_none());
    }
}
