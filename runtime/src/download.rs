//! The host's own downloads of a provider's content (data records, archive
//! tarballs), under that provider's grants: its egress policy (the addresses
//! checked are the addresses connected to), and the secret it names as the
//! credential. Redirects are followed hop by hop under the same rules, and
//! the credential goes only to the origin it was written for. Bodies stream
//! to disk under a byte budget; nothing is held whole in memory.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use tokio::io::AsyncWriteExt;
use url::Url;

use crate::bindings::{Credential, secrets::SecretError};
use crate::capabilities::UserSecret;
use crate::egress::{EgressDenied, EgressPolicy, PolicyResolver};
use crate::plugin::LoadedPlugin;

/// Redirects followed per download, as browsers and `requests` allow.
const MAX_REDIRECTS: u32 = 10;
/// The largest JSON answer read (the vault's status documents are small).
const MAX_JSON_BYTES: u64 = 1 << 20;

/// Why a download failed, in words for the person who launched the build.
/// No variant carries a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DownloadError {
    /// Not an http(s) URL.
    #[error("{0} is not an http or https URL")]
    InvalidUrl(String),
    /// The provider may not reach it.
    #[error("{url} is not reachable for this provider: {why}")]
    Refused {
        /// Where.
        url: String,
        /// Which grant is missing.
        why: String,
    },
    /// The server answered with an error status.
    #[error("{url} answered HTTP {status}")]
    Status {
        /// Where.
        url: String,
        /// The status.
        status: u16,
    },
    /// The body is larger than what is left of the budget.
    #[error("{url} is larger than the {limit} bytes left for it")]
    TooLarge {
        /// Where.
        url: String,
        /// The budget.
        limit: u64,
    },
    /// The body's size is not the size the service stated.
    #[error("{url} sent {got} bytes where the service said {expected}")]
    SizeMismatch {
        /// Where.
        url: String,
        /// Stated.
        expected: u64,
        /// Received.
        got: u64,
    },
    /// DNS, connection, TLS or a cut transfer.
    #[error("cannot download {url}: {message}")]
    Transport {
        /// Where.
        url: String,
        /// What failed.
        message: String,
    },
    /// Too many redirects.
    #[error("{0} redirects too many times")]
    Redirects(String),
    /// The answer is not the JSON expected.
    #[error("{url} answered something that is not JSON: {message}")]
    NotJson {
        /// Where.
        url: String,
        /// The parser's complaint.
        message: String,
    },
    /// The credential the provider named cannot be used.
    #[error("the provider's credential cannot be used: {0}")]
    Credential(String),
    /// Writing the body failed (a full disk, say).
    #[error("cannot write {path}: {message}")]
    Disk {
        /// Where.
        path: String,
        /// What the system said.
        message: String,
    },
}

/// How requests are authenticated.
#[derive(Clone)]
enum Auth {
    Header(HeaderName, HeaderValue),
    Basic(String, String),
}

/// Downloads under one provider's grants.
#[derive(Clone)]
pub struct Downloads {
    client: reqwest::Client,
    egress: Arc<EgressPolicy>,
    auth: Option<Auth>,
}

impl Downloads {
    /// Downloads for `plugin`, authenticated with `credential` (its secret
    /// read now from the plugin's grants, or `user`'s in its place).
    pub fn new(
        plugin: &LoadedPlugin,
        credential: Option<&Credential>,
        user: Option<&UserSecret>,
    ) -> Result<Self, DownloadError> {
        let auth = credential
            .map(|c| credential_auth(plugin, c, user))
            .transpose()?;
        let egress = plugin.grants.egress_arc();
        let client = reqwest::Client::builder()
            // A proxy would connect on our behalf to addresses we never checked.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("bindery/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(PolicyResolver(egress.clone()))
            .build()
            .map_err(|e| DownloadError::Transport {
                url: String::new(),
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Downloads {
            client,
            egress,
            auth,
        })
    }

    fn check(&self, url: &str) -> Result<Url, DownloadError> {
        let parsed = Url::parse(url).map_err(|_| DownloadError::InvalidUrl(url.into()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(DownloadError::InvalidUrl(url.into()));
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| DownloadError::InvalidUrl(url.into()))?;
        self.egress.check_host(host).map_err(|d| refused(url, &d))?;
        Ok(parsed)
    }

    /// Sends `method` to `url`, following redirects (a POST becomes a GET
    /// after a 301-303), and returns the final answer, whatever its status.
    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
    ) -> Result<reqwest::Response, DownloadError> {
        let mut at = self.check(url)?;
        let origin = at.origin();
        let mut method = method;
        for _ in 0..=MAX_REDIRECTS {
            let mut request = self.client.request(method.clone(), at.clone());
            // Credentials go only to the origin they were written for.
            if at.origin() == origin {
                request = match &self.auth {
                    Some(Auth::Header(name, value)) => request.header(name, value),
                    Some(Auth::Basic(user, password)) => request.basic_auth(user, Some(password)),
                    None => request,
                };
            }
            let response = request
                .send()
                .await
                .map_err(|e| transport(at.as_str(), &e))?;
            let location = response
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok());
            match (response.status().is_redirection(), location) {
                (true, Some(location)) => {
                    let next = at
                        .join(location)
                        .map_err(|_| DownloadError::InvalidUrl(location.into()))?;
                    at = self.check(next.as_str())?;
                    if matches!(response.status().as_u16(), 301..=303) {
                        method = reqwest::Method::GET;
                    }
                }
                _ => return Ok(response),
            }
        }
        Err(DownloadError::Redirects(url.into()))
    }

    /// Streams `url` into `path` (created), failing once more than `budget`
    /// bytes arrive, or a body of another size than `expected`. Bytes written.
    pub async fn to_file(
        &self,
        url: &str,
        path: &Path,
        budget: u64,
        expected: Option<u64>,
    ) -> Result<u64, DownloadError> {
        let mut response = self.send(reqwest::Method::GET, url).await?;
        let status = response.status().as_u16();
        if !response.status().is_success() {
            return Err(DownloadError::Status {
                url: url.into(),
                status,
            });
        }
        let too_large = || DownloadError::TooLarge {
            url: url.into(),
            limit: budget,
        };
        if response.content_length().is_some_and(|n| n > budget)
            || expected.is_some_and(|n| n > budget)
        {
            return Err(too_large());
        }
        let disk = |e: std::io::Error| DownloadError::Disk {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let mut file = tokio::fs::File::create(path).await.map_err(disk)?;
        let mut written = 0u64;
        while let Some(chunk) = response.chunk().await.map_err(|e| transport(url, &e))? {
            written += chunk.len() as u64;
            if written > budget {
                return Err(too_large());
            }
            file.write_all(&chunk).await.map_err(disk)?;
        }
        file.flush().await.map_err(disk)?;
        match expected {
            Some(n) if n != written => Err(DownloadError::SizeMismatch {
                url: url.into(),
                expected: n,
                got: written,
            }),
            _ => Ok(written),
        }
    }

    /// A small JSON answer to a GET (or a POST without a body) of `url`,
    /// with its status.
    pub async fn json(
        &self,
        post: bool,
        url: &str,
    ) -> Result<(u16, serde_json::Value), DownloadError> {
        let method = if post {
            reqwest::Method::POST
        } else {
            reqwest::Method::GET
        };
        let mut response = self.send(method, url).await?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| transport(url, &e))? {
            body.extend_from_slice(&chunk);
            if body.len() as u64 > MAX_JSON_BYTES {
                return Err(DownloadError::TooLarge {
                    url: url.into(),
                    limit: MAX_JSON_BYTES,
                });
            }
        }
        let value = serde_json::from_slice(&body).map_err(|e| DownloadError::NotJson {
            url: url.into(),
            message: e.to_string(),
        })?;
        Ok((status, value))
    }
}

/// The credential with its secret read from `plugin`'s grants.
fn credential_auth(
    plugin: &LoadedPlugin,
    credential: &Credential,
    user: Option<&UserSecret>,
) -> Result<Auth, DownloadError> {
    let read = |name: &str| {
        plugin.secret(name, user).map_err(|e| {
            DownloadError::Credential(match e {
                SecretError::NotGranted(n) => {
                    format!("the secret `{n}` is not granted to `{}`", plugin.name)
                }
                SecretError::Missing(n) => {
                    format!("the secret `{n}` of `{}` has no value", plugin.name)
                }
            })
        })
    };
    match credential {
        Credential::Basic(b) => Ok(Auth::Basic(b.username.clone(), read(&b.password_secret)?)),
        Credential::Header(h) => {
            let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| {
                DownloadError::Credential(format!("{:?} is not a header name", h.name))
            })?;
            let mut value = HeaderValue::from_str(&format!("{}{}", h.prefix, read(&h.secret)?))
                .map_err(|_| {
                    DownloadError::Credential(format!(
                        "the secret `{}` cannot be sent in a header",
                        h.secret
                    ))
                })?;
            value.set_sensitive(true);
            Ok(Auth::Header(name, value))
        }
    }
}

fn refused(url: &str, d: &EgressDenied) -> DownloadError {
    DownloadError::Refused {
        url: url.into(),
        why: d.to_string(),
    }
}

fn transport(url: &str, e: &reqwest::Error) -> DownloadError {
    match crate::egress::denial_in(e) {
        Some(d) => refused(url, &d),
        None => DownloadError::Transport {
            url: url.into(),
            message: crate::error_chain(e),
        },
    }
}
