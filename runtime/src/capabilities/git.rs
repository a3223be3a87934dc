//! The `git` capability: `git ls-remote` through libgit2, over the
//! [`GitWire`](crate::gitwire::GitWire), which connects only to addresses the
//! plugin's egress policy allows and holds the call's deadline on every read.

use std::sync::Arc;
use std::time::Duration;

use super::{CallState, UserSecret};
use crate::bindings::git::{GitError, Host, RemoteRef};
use crate::bindings::secrets::SecretError;
use crate::egress::{EgressDenied, GitRemote, GitUrlError};
use crate::gitwire::{GitWire, WireError, WireLimits};

/// The largest ref advertisement read: a forge that lists every pull
/// request's refs sends a few MiB for a busy repository.
const MAX_ADVERTISEMENT_BYTES: u64 = 32 << 20;

pub(super) struct GitClient {
    wire: Arc<GitWire>,
    timeout: Duration,
}

impl GitClient {
    pub(super) fn new(wire: Arc<GitWire>, timeout_ms: u64) -> Self {
        GitClient {
            wire,
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    /// The refs at `url`, asked with `auth` (user name, password) when given.
    pub(super) async fn ls_remote(
        &self,
        url: &str,
        auth: Option<(String, String)>,
    ) -> Result<Vec<RemoteRef>, GitError> {
        let mut remote = GitRemote::parse(url).map_err(|e| match e {
            GitUrlError::Scheme(scheme) => GitError::ProtocolNotAllowed(scheme),
            other => GitError::InvalidUrl(format!("{url}: {other}")),
        })?;
        if let Some((user, password)) = auth {
            if remote.scheme() == "git" {
                return Err(GitError::ProtocolNotAllowed(
                    "git (it carries no credentials; use https)".into(),
                ));
            }
            remote = remote.with_basic_auth(user, password);
        }
        self.wire
            .egress()
            .check_host(remote.host())
            .map_err(denied)?;
        let limits = WireLimits {
            timeout: self.timeout,
            max_bytes: MAX_ADVERTISEMENT_BYTES,
        };
        let url = remote.as_str().to_string();
        self.wire
            .run(&remote, limits, move || list_refs(&url))
            .await
            .map_err(|e| match e {
                WireError::TimedOut(_) | WireError::Busy => GitError::Timeout,
                WireError::Denied(d) => denied(d),
                other => GitError::Remote(other.to_string()),
            })?
    }
}

fn list_refs(url: &str) -> Result<Vec<RemoteRef>, GitError> {
    let mut remote = git2::Remote::create_detached(url)
        .map_err(|e| GitError::InvalidUrl(e.message().to_string()))?;
    let connection = remote
        .connect_auth(git2::Direction::Fetch, None, None)
        .map_err(|e| GitError::Remote(e.message().to_string()))?;
    let heads = connection
        .list()
        .map_err(|e| GitError::Remote(e.message().to_string()))?;
    Ok(heads
        .iter()
        .map(|h| RemoteRef {
            name: h.name().to_string(),
            oid: h.oid().to_string(),
        })
        .collect())
}

fn denied(d: EgressDenied) -> GitError {
    match d {
        EgressDenied::HostNotGranted(h) => GitError::HostNotGranted(h),
        d @ EgressDenied::AddressDenied { .. } => GitError::AddressDenied(d.to_string()),
    }
}

impl Host for CallState {
    async fn ls_remote(&mut self, url: String) -> Result<Vec<RemoteRef>, GitError> {
        self.grants.git.ls_remote(&url, None).await
    }

    async fn ls_remote_authenticated(
        &mut self,
        url: String,
        username: String,
        password_secret: String,
    ) -> Result<Vec<RemoteRef>, GitError> {
        self.grants
            .ls_remote_authenticated(
                &self.plugin,
                &url,
                username,
                &password_secret,
                self.user.as_deref(),
            )
            .await
    }
}

impl super::Grants {
    /// The refs at `url`, asked with `username` and the secret
    /// `password_secret` (or `user`'s in its place): for the plugin's
    /// calls, and for the host's check that a user may read a repository.
    pub(crate) async fn ls_remote_authenticated(
        &self,
        plugin: &str,
        url: &str,
        username: String,
        password_secret: &str,
        user: Option<&UserSecret>,
    ) -> Result<Vec<RemoteRef>, GitError> {
        // git-error has no case of its own for this: its cases are part of
        // 0.1.0's `ls-remote` too, whose components must keep loading.
        let password = self.secret(plugin, password_secret, user).map_err(|e| {
            GitError::Remote(match e {
                SecretError::NotGranted(n) => format!("the secret `{n}` is not granted"),
                SecretError::Missing(n) => format!("the secret `{n}` has no value"),
            })
        })?;
        self.git.ls_remote(url, Some((username, password))).await
    }
}
