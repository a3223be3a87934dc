//! The JupyterHub launcher, as upstream's `Launcher` and `BuildHandler.launch`:
//! a temporary user named from the repository (or, in authenticated mode,
//! the logged-in user's server: a named one, named so, or their default
//! one, within upstream's per-user limits), its server started with the
//! launch's `user_options` (the spawner runs `image` and opens it with
//! `token`), the hub's progress messages relayed, a fresh name per retry, and
//! the quotas checked before each attempt.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures_util::future::BoxFuture;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::quota::Quotas;
use super::{LaunchError, LaunchRequest, Launched, Launcher, LauncherHealth};
use crate::config::{Config, ConfigError};
use crate::jupyterhub::Hub;

/// Launches on one hub.
pub struct HubLauncher {
    hub: Arc<Hub>,
    retries: u32,
    retry_delay: Duration,
    launch_timeout: Duration,
    quotas: Quotas,
    users_group: String,
    /// Authenticated launches start named servers (else the default one).
    named_servers: bool,
    named_server_limit: u32,
}

/// `n` random bytes from the operating system.
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    bytes
}

/// Upstream's `unique_name_from_repo`: the URL's path, `/` → `-`, without
/// `.git`, the first and last 15 characters of a longer one, lowercased, and 8
/// random characters.
pub fn user_name_for(repo_url: &str) -> String {
    let path =
        url::Url::parse(repo_url).map_or_else(|_| repo_url.to_string(), |u| u.path().to_string());
    let mut name = path
        .trim_matches('/')
        .trim_end_matches(".git")
        .replace('/', "-");
    if name.chars().count() > 32 {
        let chars: Vec<char> = name.chars().collect();
        name = format!(
            "{}-{}",
            chars[..15].iter().collect::<String>(),
            chars[chars.len() - 15..].iter().collect::<String>()
        );
    }
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let suffix: String = random_bytes::<8>()
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    format!("{name}-{suffix}").to_lowercase()
}

/// The server's token: 16 random bytes, URL-safe base64 (22 characters, as upstream's uuid4).
pub(crate) fn server_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<16>())
}

impl HubLauncher {
    /// A launcher on `hub` with `config.hub`'s retries and timeouts,
    /// refusing launches that `config.quota` refuses.
    pub fn new(hub: Arc<Hub>, config: &Config) -> Result<HubLauncher, ConfigError> {
        let quotas = Quotas::new(config, hub.clone())?;
        let config = &config.hub;
        Ok(HubLauncher {
            quotas,
            hub,
            retries: config.retries.max(1),
            retry_delay: Duration::from_millis(config.retry_delay_ms),
            launch_timeout: Duration::from_secs(config.launch_timeout_secs),
            users_group: config.users_group.clone(),
            named_servers: config.use_named_servers,
            named_server_limit: config.named_server_limit_per_user,
        })
    }

    /// Where a launch goes: the logged-in user's server (named from the
    /// repository, or their default one), else a temporary user's default.
    fn target(&self, request: &LaunchRequest) -> (String, String) {
        match &request.user {
            Some(user) if self.named_servers => (user.clone(), user_name_for(&request.repo_url)),
            Some(user) => (user.clone(), String::new()),
            None => (user_name_for(&request.repo_url), String::new()),
        }
    }

    /// Upstream's checks of a logged-in user's servers: one default server
    /// at a time, or no more named ones than the limit.
    async fn user_may_launch(&self, request: &LaunchRequest) -> Result<(), LaunchError> {
        let Some(user) = &request.user else {
            return Ok(());
        };
        let model = self
            .hub
            .user(user)
            .await
            .map_err(|e| LaunchError::Failed(format!("Cannot check the servers of {user}: {e}")))?
            .ok_or_else(|| LaunchError::Failed(format!("The hub has no user {user}")))?;
        if !self.named_servers {
            if model.servers.contains_key("") {
                return Err(LaunchError::Failed(format!(
                    "User {user} already has a running server."
                )));
            }
            return Ok(());
        }
        let named = model.servers.keys().filter(|n| !n.is_empty()).count();
        let limit = self.named_server_limit;
        if limit > 0 && named >= limit as usize {
            return Err(LaunchError::Failed(format!(
                "User {user} already has the maximum of {limit} named servers.  One must be deleted before a new server can be created"
            )));
        }
        Ok(())
    }

    /// One attempt: create the temporary `user` (not in authenticated mode),
    /// start its `server`, follow the progress to ready.
    async fn attempt(
        &self,
        request: &LaunchRequest,
        user: &str,
        server: &str,
        progress: &mpsc::Sender<String>,
    ) -> Result<Launched, String> {
        if request.user.is_none() {
            let created = self
                .hub
                .request(
                    Method::POST,
                    &format!("users/{}", crate::jupyterhub::segment(user)),
                    None,
                )
                .await;
            // The group is what lets the culler delete this user later, and
            // no user outside it.
            if let Err(e) = match created {
                Ok(_) => self.hub.add_to_group(&self.users_group, user).await,
                Err(e) => Err(e),
            } {
                return Err(format!(
                    "Failed to create temporary user for {}: {e}",
                    request.image
                ));
            }
        }
        let token = server_token();
        let mut options = request.binder_fields();
        options.insert("token".into(), json!(token));
        let options = Value::Object(options);
        let started = async {
            self.hub
                .request(
                    Method::POST,
                    &Hub::server_path(user, server),
                    Some(&options),
                )
                .await
                .map_err(|e| format!("Failed to launch image {}: {e}", request.image))?;
            self.follow(user, server, progress)
                .await
                .map_err(|e| format!("Failed to launch image {}: {e}", request.image))
        };
        match tokio::time::timeout(self.launch_timeout, started).await {
            Ok(Ok(())) => Ok(Launched {
                url: self.hub.server_url(user, server),
                token,
                user: user.into(),
                server: server.into(),
                temporary: request.user.is_none(),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!(
                "Image {} for user {user} took too long to launch",
                request.image
            )),
        }
    }

    /// Relays the spawn's progress messages until it is ready or failed.
    async fn follow(
        &self,
        user: &str,
        server: &str,
        progress: &mpsc::Sender<String>,
    ) -> Result<(), String> {
        let mut response = self
            .hub
            .progress(user, server)
            .await
            .map_err(|e| e.to_string())?;
        let mut buffer = String::new();
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => {
                    return Err(
                        "the hub's progress stream ended before the server was ready".into(),
                    );
                }
                Err(e) => return Err(format!("the hub's progress stream broke: {e}")),
            };
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let frame: String = buffer.drain(..end + 2).collect();
                let Some(event) = frame
                    .lines()
                    .find_map(|l| l.strip_prefix("data:"))
                    .and_then(|d| serde_json::from_str::<Value>(d.trim()).ok())
                else {
                    continue;
                };
                if let Some(message) = event["message"].as_str().filter(|m| !m.is_empty()) {
                    let _ = progress.send(message.to_string()).await;
                }
                if event["ready"] == true {
                    return Ok(());
                }
                if event["failed"] == true {
                    return Err(event["message"]
                        .as_str()
                        .unwrap_or("the spawn failed")
                        .to_string());
                }
            }
        }
    }
}

/// What a launch has made on the hub until it is ready: the temporary user,
/// or the named server of an authenticated one. Of no use to anyone if the
/// launch fails, or if its client leaves before it ends (the launch is
/// dropped then): dropped before [`Leftovers::keep`], it is removed in the
/// background.
struct Leftovers {
    hub: Arc<Hub>,
    user: String,
    server: String,
    temporary: bool,
    /// How long a spawn may stay pending, which the hub will not cut short.
    patience: Duration,
    armed: bool,
}

impl Leftovers {
    /// What a launch of `server` for `user` makes, removed unless kept.
    fn of(launcher: &HubLauncher, user: &str, server: &str, temporary: bool) -> Leftovers {
        Leftovers {
            hub: launcher.hub.clone(),
            user: user.into(),
            server: server.into(),
            temporary,
            patience: launcher.launch_timeout,
            armed: true,
        }
    }

    /// The launch is ready: its user and server stay for the culler.
    fn keep(mut self) {
        self.armed = false;
    }

    /// Removes what the launch made, in the background: a spawn still
    /// pending must end first.
    fn remove(mut self) -> Option<tokio::task::JoinHandle<()>> {
        self.remove_once()
    }

    fn remove_once(&mut self) -> Option<tokio::task::JoinHandle<()>> {
        if !std::mem::take(&mut self.armed) {
            return None;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(user = %self.user, "a launch was dropped outside the runtime; its user stays until the culler removes it");
            return None;
        };
        tracing::info!(user = %self.user, server = %self.server, "a launch ended unused (it failed, its client left, or its image was not pushed); removing what it made");
        Some(runtime.spawn(remove(
            self.hub.clone(),
            std::mem::take(&mut self.user),
            std::mem::take(&mut self.server),
            self.temporary,
            self.patience,
        )))
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        self.remove_once();
    }
}

/// Deletes the temporary `user` (its server with it), or stops and removes
/// an authenticated user's named `server`, once the hub has finished
/// spawning it: the hub cannot stop a spawn under way (it answers 400 or
/// 500), so this waits up to `patience` for the spawn to end.
async fn remove(hub: Arc<Hub>, user: String, server: String, temporary: bool, patience: Duration) {
    let give_up = tokio::time::Instant::now() + patience;
    loop {
        let pending = match hub.user(&user).await {
            Ok(None) => return,
            Ok(Some(model)) => model
                .servers
                .get(&server)
                .is_some_and(|s| s.pending.is_some()),
            Err(_) => false,
        };
        if pending && tokio::time::Instant::now() < give_up {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        let removed = if temporary {
            hub.delete_user(&user).await
        } else {
            hub.stop(&user, &server).await.map(drop)
        };
        match removed {
            Ok(()) => return,
            Err(e) if e.status() == Some(404) => return,
            // 400 while the spawn is pending; 500 ("Spawner … is active")
            // when the spawn began but the hub does not list it pending yet.
            Err(e)
                if matches!(e.status(), Some(400 | 500))
                    && tokio::time::Instant::now() < give_up =>
            {
                tracing::debug!(user, server, "not removable yet: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                tracing::warn!(
                    user,
                    server,
                    "cannot remove what an unfinished launch made; it stays until the culler or an admin removes it: {e}"
                );
                return;
            }
        }
    }
}

impl Launcher for HubLauncher {
    fn admit<'a>(&'a self, request: &'a LaunchRequest) -> BoxFuture<'a, Result<(), LaunchError>> {
        Box::pin(async move {
            self.user_may_launch(request).await?;
            self.quotas.check(request).await
        })
    }

    fn launch<'a>(
        &'a self,
        request: &'a LaunchRequest,
        progress: mpsc::Sender<String>,
    ) -> BoxFuture<'a, Result<Launched, LaunchError>> {
        Box::pin(async move {
            // Again at launch: the user may have started another while this one built.
            self.user_may_launch(request).await?;
            let mut delay = self.retry_delay;
            // The servers of this launch's failed attempts, being removed.
            let mut removing = Vec::new();
            for attempt in 1..=self.retries {
                // Upstream checks again at launch: others may have launched while this one built.
                let mut admitted = self.quotas.check(request).await;
                if matches!(admitted, Err(LaunchError::Quota { .. })) && !removing.is_empty() {
                    // What fills the quota may be this launch's own failed
                    // attempts: once they are gone, ask again.
                    for removal in removing.drain(..) {
                        let _ = removal.await;
                    }
                    admitted = self.quotas.check(request).await;
                }
                admitted?;
                let (user, server) = self.target(request);
                let leftovers = Leftovers::of(self, &user, &server, request.user.is_none());
                match self.attempt(request, &user, &server, &progress).await {
                    Ok(launched) => {
                        leftovers.keep();
                        return Ok(launched);
                    }
                    Err(e) => {
                        tracing::warn!(image = %request.image, user, server, attempt, "launch failed: {e}");
                        // Removed in the background: the retry waits for
                        // it only if the quota would otherwise refuse it.
                        removing.extend(leftovers.remove());
                        if attempt == self.retries {
                            return Err(LaunchError::Failed(e));
                        }
                        let _ = progress
                            .send(format!("Launch attempt {attempt} failed, retrying...\n"))
                            .await;
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                }
            }
            unreachable!("the last attempt returns")
        })
    }

    fn discard(&self, launched: &Launched) {
        Leftovers::of(self, &launched.user, &launched.server, launched.temporary).remove();
    }

    fn health(&self) -> BoxFuture<'_, LauncherHealth> {
        Box::pin(async move {
            let (hub, servers) = tokio::join!(self.hub.version(), self.quotas.count());
            LauncherHealth {
                hub: hub.map(drop).map_err(|e| e.to_string()),
                servers,
                quota: self.quotas.total(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_as_upstream() {
        let name = user_name_for("https://github.com/Binder-Examples/requirements.git");
        let (stem, suffix) = name.rsplit_once('-').unwrap();
        assert_eq!(stem, "binder-examples-requirements");
        assert!(
            suffix.len() == 8
                && suffix
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
            "{name}"
        );
        let long =
            user_name_for("https://gitlab.com/a-very-long-group-name/and-a-very-long-project-name");
        assert_eq!(&long[..long.len() - 9], "a-very-long-gro-ng-project-name");
        assert_ne!(
            user_name_for("https://x.org/a/b"),
            user_name_for("https://x.org/a/b"),
            "fresh each time"
        );
    }

    #[test]
    fn tokens_are_random() {
        let token = server_token();
        assert_eq!(token.len(), 22);
        assert_ne!(token, server_token());
    }
}
