//! The image registry: names (upstream's rule) and existence look-ups over the
//! OCI distribution API with `oci-client`, remembered in the sled `images` tree.

mod auth;
mod lookup;
pub mod naming;
mod push;

pub use lookup::StoredManifest;
pub use push::{BlobSource, digest};

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
use crate::now_ms;

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
                reason: bindery_runtime::error_chain(&e),
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

    fn url(&self) -> String {
        self.config
            .url
            .as_ref()
            .map(|u| u.as_str().trim_end_matches('/').to_string())
            .unwrap_or_default()
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
}
