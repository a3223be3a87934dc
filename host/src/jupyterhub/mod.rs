//! JupyterHub's REST API, as the launcher and the culler use it: users and
//! their servers (paginated), starting a server with `user_options`, its
//! progress stream, stopping servers and deleting users. Requests carry the
//! service token; answers of 500 and up are retried with a doubling delay,
//! as upstream's `Launcher.api_request` does.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value};
use url::Url;

use crate::config::{ConfigError, HubConfig, SecretSource};

/// What went wrong talking to the hub, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    /// No answer: the hub is down, or the URL is wrong.
    #[error("the JupyterHub API at {url} cannot be reached: {reason}")]
    Unreachable {
        /// The API's base URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The hub answered with an error.
    #[error("the JupyterHub API answered {status} to {what}: {message}")]
    Status {
        /// The request, e.g. `POST users/x`.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The hub's message.
        message: String,
    },
    /// The answer is not what the API documents.
    #[error("the JupyterHub API gave an unexpected answer to {what}: {reason}")]
    Invalid {
        /// The request.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl HubError {
    /// The HTTP status the hub answered, if it did.
    pub fn status(&self) -> Option<u16> {
        match self {
            HubError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A user's server as the hub reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct ServerModel {
    /// Empty for the default server.
    #[serde(default)]
    pub name: String,
    /// Whether it is up.
    #[serde(default)]
    pub ready: bool,
    /// `spawn`, `stop`, … while something is under way.
    #[serde(default)]
    pub pending: Option<String>,
    /// Its URL path, e.g. `/user/x/`.
    #[serde(default)]
    pub url: Option<String>,
    /// ISO 8601.
    #[serde(default)]
    pub started: Option<String>,
    /// ISO 8601.
    #[serde(default)]
    pub last_activity: Option<String>,
    /// What it was started with (Bindery's launch: `image`, `repo_url`, `binder_request`, …).
    #[serde(default)]
    pub user_options: Option<Map<String, Value>>,
}

/// A user as the hub reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct UserModel {
    /// The name.
    pub name: String,
    /// Whether an admin.
    #[serde(default)]
    pub admin: bool,
    /// ISO 8601.
    #[serde(default)]
    pub created: Option<String>,
    /// ISO 8601.
    #[serde(default)]
    pub last_activity: Option<String>,
    /// The groups it is in.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Its servers by name (`""`: the default one).
    #[serde(default)]
    pub servers: std::collections::BTreeMap<String, ServerModel>,
}

impl UserModel {
    /// A warm pool server no launch has claimed: in the pool's group, not
    /// (yet) in the launches' `users_group`.
    pub fn unclaimed_in_pool(&self, pool_group: &str, users_group: &str) -> bool {
        self.groups.iter().any(|g| g == pool_group) && !self.groups.iter().any(|g| g == users_group)
    }
}

/// How a stop request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Stopped (`204`).
    Done,
    /// The hub accepted it but the server is slow to stop (`202`).
    Pending,
}

/// The token an OAuth login gave.
#[derive(Debug, Clone, Deserialize)]
pub struct Granted {
    /// The user's token.
    #[serde(rename = "access_token")]
    pub token: String,
    /// Seconds it lasts, if the hub says.
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// A client of one hub.
pub struct Hub {
    client: reqwest::Client,
    api: Url,
    /// The hub's public URL: user servers are under `user/`.
    public: Url,
    token: String,
    retries: u32,
    retry_delay: Duration,
    page_size: u32,
}

fn with_slash(mut url: Url) -> Url {
    if !url.path().ends_with('/') {
        url.set_path(&format!("{}/", url.path()));
    }
    url
}

/// `name` as one URL path segment (upstream quotes with `safe="@~"`).
pub fn segment(name: &str) -> String {
    url::form_urlencoded::byte_serialize(name.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
        .replace("%40", "@")
        .replace("%7E", "~")
}

impl Hub {
    /// The hub `config` names; `None` when no `[hub] url` is set.
    pub fn new(config: &HubConfig) -> Result<Option<Hub>, ConfigError> {
        let Some(public) = config.url.clone().map(with_slash) else {
            return Ok(None);
        };
        let api = match &config.api_url {
            Some(api) => with_slash(api.clone()),
            None => public
                .join("hub/api/")
                .map_err(|e| ConfigError::Invalid(format!("hub.url: {e}")))?,
        };
        let token = config
            .api_token
            .as_ref()
            .and_then(SecretSource::read)
            .ok_or_else(|| ConfigError::Invalid("hub.api_token: the hub needs a service token (e.g. api_token = { env = \"JUPYTERHUB_API_TOKEN\" })".into()))?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.request_timeout_secs))
            .build()
            .map_err(|e| ConfigError::Invalid(format!("hub: {e}")))?;
        Ok(Some(Hub {
            client,
            api,
            public,
            token,
            retries: config.retries,
            retry_delay: Duration::from_millis(config.retry_delay_ms),
            page_size: config.page_size,
        }))
    }

    fn unreachable(&self, e: &reqwest::Error) -> HubError {
        HubError::Unreachable {
            url: self.api.to_string(),
            reason: bindery_runtime::error_chain(e),
        }
    }

    /// The API's base URL.
    pub fn api_url(&self) -> &Url {
        &self.api
    }

    /// Where a user's server is served: `{hub}/user/{name}/[{server}/]`.
    pub fn server_url(&self, user: &str, server: &str) -> String {
        let mut url = format!("{}user/{}/", self.public, segment(user));
        if !server.is_empty() {
            url.push_str(&format!("{}/", segment(server)));
        }
        url
    }

    /// The API path of a user's server (`users/x/server` for the default one).
    pub fn server_path(user: &str, server: &str) -> String {
        if server.is_empty() {
            format!("users/{}/server", segment(user))
        } else {
            format!("users/{}/servers/{}", segment(user), segment(server))
        }
    }

    /// One request, retried on 500 and up (and on no answer) with a doubling delay.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Vec<u8>), HubError> {
        let what = format!("{method} {path}");
        let url = self.api.join(path).map_err(|e| HubError::Invalid {
            what: what.clone(),
            reason: e.to_string(),
        })?;
        let mut delay = self.retry_delay;
        for attempt in 0..=self.retries {
            let mut request = self
                .client
                .request(method.clone(), url.clone())
                .header("authorization", format!("token {}", self.token));
            request = request.header(
                "accept",
                "application/jupyterhub-pagination+json, application/json",
            );
            if let Some(body) = body {
                request = request
                    .header("content-type", "application/json")
                    .body(body.to_string());
            }
            let outcome = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    match response.bytes().await {
                        Ok(bytes) if status.is_server_error() => Err(HubError::Status {
                            what: what.clone(),
                            status: status.as_u16(),
                            message: message(&bytes),
                        }),
                        Ok(bytes) if status.is_client_error() => {
                            return Err(HubError::Status {
                                what,
                                status: status.as_u16(),
                                message: message(&bytes),
                            });
                        }
                        Ok(bytes) => return Ok((status, bytes.to_vec())),
                        Err(e) => Err(self.unreachable(&e)),
                    }
                }
                Err(e) => Err(self.unreachable(&e)),
            };
            if attempt == self.retries {
                return outcome;
            }
            tracing::warn!(request = %what, "the hub failed ({}); retrying in {} ms", outcome.as_ref().err().map(ToString::to_string).unwrap_or_default(), delay.as_millis());
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
        unreachable!("the last attempt returns")
    }

    /// A request whose answer is JSON.
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, HubError> {
        let (_, bytes) = self.request(method.clone(), path, body).await?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| HubError::Invalid {
            what: format!("{method} {path}"),
            reason: e.to_string(),
        })
    }

    /// The hub's version (`GET /`): whether it answers at all.
    pub async fn version(&self) -> Result<String, HubError> {
        let root = self.json(Method::GET, "", None).await?;
        Ok(root["version"].as_str().unwrap_or("unknown").to_string())
    }

    /// Every user in `state` (`ready`, `active`, `inactive`), page by page.
    pub async fn users(&self, state: &str) -> Result<Vec<UserModel>, HubError> {
        let mut users = Vec::new();
        let mut offset = 0u64;
        loop {
            let mut path = format!("users?state={state}&offset={offset}");
            if self.page_size > 0 {
                path.push_str(&format!("&limit={}", self.page_size));
            }
            let page = self.json(Method::GET, &path, None).await?;
            // A hub older than 2.0 answers a plain list.
            let (items, next) = match &page {
                Value::Array(items) => (items.clone(), None),
                Value::Object(o) => (
                    o.get("items")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                    o.get("_pagination")
                        .and_then(|p| p.get("next"))
                        .and_then(|n| n.get("offset"))
                        .and_then(Value::as_u64),
                ),
                _ => {
                    return Err(HubError::Invalid {
                        what: format!("GET {path}"),
                        reason: "not a list of users".into(),
                    });
                }
            };
            for item in items {
                users.push(serde_json::from_value(item).map_err(|e| HubError::Invalid {
                    what: format!("GET {path}"),
                    reason: e.to_string(),
                })?);
            }
            match next {
                Some(n) if n > offset => offset = n,
                _ => return Ok(users),
            }
        }
    }

    /// Stops a server; named ones are also removed, as the idle culler's `--remove-named-servers` does.
    pub async fn stop(&self, user: &str, server: &str) -> Result<Stopped, HubError> {
        let body = (!server.is_empty()).then(|| serde_json::json!({ "remove": true }));
        let (status, _) = self
            .request(
                Method::DELETE,
                &Hub::server_path(user, server),
                body.as_ref(),
            )
            .await?;
        Ok(if status == StatusCode::ACCEPTED {
            Stopped::Pending
        } else {
            Stopped::Done
        })
    }

    /// The hub user a token belongs to (`GET user` with that token); `None`
    /// when the hub does not accept it, or it is a service's.
    pub async fn whoami(&self, token: &str) -> Result<Option<String>, HubError> {
        let url = self.api.join("user").map_err(|e| HubError::Invalid {
            what: "GET user".into(),
            reason: e.to_string(),
        })?;
        let response = self
            .client
            .get(url)
            .header("authorization", format!("token {token}"))
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Ok(None);
        }
        let bytes = response.bytes().await.unwrap_or_default();
        if !status.is_success() {
            return Err(HubError::Status {
                what: "GET user".into(),
                status: status.as_u16(),
                message: message(&bytes),
            });
        }
        let model: Value = serde_json::from_slice(&bytes).map_err(|e| HubError::Invalid {
            what: "GET user".into(),
            reason: e.to_string(),
        })?;
        Ok(model
            .get("kind")
            .and_then(Value::as_str)
            .is_none_or(|k| k == "user")
            .then(|| model["name"].as_str().map(String::from))
            .flatten())
    }

    /// The hub's OAuth authorize page, where browsers log in (public URL).
    pub fn authorize_url(&self) -> Url {
        self.public
            .join("hub/api/oauth2/authorize")
            .expect("a relative path joins")
    }

    /// Exchanges the `code` the hub's login redirect carried for the user's
    /// token; the service token is the OAuth client's secret, as JupyterHub
    /// registers services.
    pub async fn oauth_token(
        &self,
        client_id: &str,
        code: &str,
        redirect_uri: &str,
    ) -> Result<Granted, HubError> {
        let what = "POST oauth2/token";
        let url = self
            .api
            .join("oauth2/token")
            .map_err(|e| HubError::Invalid {
                what: what.into(),
                reason: e.to_string(),
            })?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", client_id)
            .append_pair("client_secret", &self.token)
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", redirect_uri)
            .finish();
        let response = self
            .client
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| self.unreachable(&e))?;
        if !status.is_success() {
            return Err(HubError::Status {
                what: what.into(),
                status: status.as_u16(),
                message: oauth_message(&bytes),
            });
        }
        serde_json::from_slice::<Granted>(&bytes).map_err(|e| HubError::Invalid {
            what: what.into(),
            reason: e.to_string(),
        })
    }

    /// Adds `user` to `group`, making the group first if the hub has none.
    pub async fn add_to_group(&self, group: &str, user: &str) -> Result<(), HubError> {
        let path = format!("groups/{}", segment(group));
        let body = serde_json::json!({ "users": [user] });
        match self
            .request(Method::POST, &format!("{path}/users"), Some(&body))
            .await
        {
            Err(HubError::Status { status: 404, .. }) => {
                match self.request(Method::POST, &path, Some(&body)).await {
                    // Made meanwhile by another launch: join it.
                    Err(HubError::Status { status: 409, .. }) => self
                        .request(Method::POST, &format!("{path}/users"), Some(&body))
                        .await
                        .map(drop),
                    made => made.map(drop),
                }
            }
            added => added.map(drop),
        }
    }

    /// A user's model; `None` when the hub has no such user.
    pub async fn user(&self, user: &str) -> Result<Option<UserModel>, HubError> {
        let path = format!("users/{}", segment(user));
        match self.json(Method::GET, &path, None).await {
            Ok(model) => serde_json::from_value(model)
                .map(Some)
                .map_err(|e| HubError::Invalid {
                    what: format!("GET {path}"),
                    reason: e.to_string(),
                }),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A user's `auth_state`, as their authenticator keeps it (an
    /// OAuthenticator login's forge token). `None` when the user has none,
    /// the hub does not keep it (`enable_auth_state`), or Bindery's token
    /// lacks the `admin:auth_state` scope, which the hub answers as none.
    pub async fn auth_state(&self, user: &str) -> Result<Option<Value>, HubError> {
        let path = format!("users/{}", segment(user));
        match self.json(Method::GET, &path, None).await {
            Ok(mut model) => Ok(model
                .get_mut("auth_state")
                .map(Value::take)
                .filter(|s| !s.is_null())),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes a user.
    pub async fn delete_user(&self, user: &str) -> Result<(), HubError> {
        self.request(Method::DELETE, &format!("users/{}", segment(user)), None)
            .await
            .map(drop)
    }

    /// Opens a server's progress stream (server-sent events).
    pub async fn progress(&self, user: &str, server: &str) -> Result<reqwest::Response, HubError> {
        let path = format!("{}/progress", Hub::server_path(user, server));
        let url = self.api.join(&path).map_err(|e| HubError::Invalid {
            what: path.clone(),
            reason: e.to_string(),
        })?;
        // No overall timeout: the launch's own deadline bounds it.
        let response = self
            .client
            .get(url)
            .header("authorization", format!("token {}", self.token))
            .header("accept", "text/event-stream")
            .timeout(Duration::from_secs(24 * 3600))
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        if !status.is_success() {
            let bytes = response.bytes().await.unwrap_or_default();
            return Err(HubError::Status {
                what: format!("GET {path}"),
                status: status.as_u16(),
                message: message(&bytes),
            });
        }
        Ok(response)
    }
}

/// The hub's error message (`{"status": 400, "message": "…"}`), or the body's start.
/// An OAuth error answer (`error_description`, RFC 6749), else the hub's `message`.
fn oauth_message(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.get("error_description")
                .or_else(|| v.get("error"))
                .and_then(Value::as_str)
                .map(String::from)
        })
        .unwrap_or_else(|| message(body))
}

fn message(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(String::from))
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect())
}

/// Milliseconds since the epoch of a hub timestamp (ISO 8601; one without a
/// zone is UTC, as the idle culler assumes).
pub fn timestamp_ms(iso: &str) -> Option<u64> {
    let parsed = chrono::DateTime::parse_from_rfc3339(iso)
        .map(|t| t.timestamp_millis())
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(iso.trim_end_matches('Z'), "%Y-%m-%dT%H:%M:%S%.f")
                .map(|t| t.and_utc().timestamp_millis())
        })
        .ok()?;
    u64::try_from(parsed).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_urls() {
        assert_eq!(
            Hub::server_path("binder-x-ab12", ""),
            "users/binder-x-ab12/server"
        );
        assert_eq!(
            Hub::server_path("a b@c", "s/1"),
            "users/a%20b@c/servers/s%2F1"
        );
        assert_eq!(segment("x~y"), "x~y");
    }

    #[test]
    fn hub_timestamps() {
        assert_eq!(
            timestamp_ms("2026-11-23T10:00:00.123456Z"),
            Some(1795428000123)
        );
        assert_eq!(
            timestamp_ms("2026-11-23T10:00:00+00:00"),
            Some(1795428000000)
        );
        assert_eq!(
            timestamp_ms("2026-11-23T10:00:00.5"),
            Some(1795428000500),
            "no zone means UTC"
        );
        assert_eq!(timestamp_ms("yesterday"), None);
    }
}
