//! The `git` capability: `git ls-remote` through libgit2, under the plugin's
//! egress policy.
//!
//! The host name and every address it resolves to are checked before libgit2
//! connects, and redirects to another host are refused. libgit2 resolves the
//! name again itself, so a DNS answer that changes between the two look-ups
//! is a residual risk; the `http` capability does not have it because its
//! client connects to the checked addresses.

use std::sync::{Arc, Once};
use std::time::Duration;

use super::CallState;
use crate::bindings::git::{GitError, Host, RemoteRef};
use crate::egress::{EgressDenied, EgressError, EgressPolicy, GitRemote, GitUrlError};

pub(super) struct GitClient {
    egress: Arc<EgressPolicy>,
    timeout: Duration,
}

static LIBGIT2_TIMEOUTS: Once = Once::new();

impl GitClient {
    pub(super) fn new(egress: Arc<EgressPolicy>, timeout_ms: u64) -> Self {
        LIBGIT2_TIMEOUTS.call_once(|| {
            // Process-wide in libgit2; without them a silent server holds a
            // blocking thread for the OS's TCP timeout.
            let ms = i32::try_from(timeout_ms).unwrap_or(i32::MAX);
            // SAFETY: called once, before any libgit2 network operation in this process.
            unsafe {
                let _ = git2::opts::set_server_connect_timeout_in_milliseconds(ms);
                let _ = git2::opts::set_server_timeout_in_milliseconds(ms);
            }
        });
        GitClient {
            egress,
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    pub(super) async fn ls_remote(&self, url: &str) -> Result<Vec<RemoteRef>, GitError> {
        let remote = GitRemote::parse(url).map_err(|e| match e {
            GitUrlError::Scheme(scheme) => GitError::ProtocolNotAllowed(scheme),
            other => GitError::InvalidUrl(format!("{url}: {other}")),
        })?;
        self.egress.check_host(remote.host()).map_err(denied)?;
        self.egress
            .resolve(remote.host(), remote.port())
            .await
            .map_err(|e| match e {
                EgressError::Denied(d) => denied(d),
                EgressError::Lookup(m) => GitError::Remote(m),
            })?;
        let url = remote.as_str().to_string();
        let listing = tokio::task::spawn_blocking(move || list_refs(&url));
        match tokio::time::timeout(self.timeout, listing).await {
            Err(_) => Err(GitError::Timeout),
            Ok(Err(join)) => Err(GitError::Remote(format!("ls-remote task failed: {join}"))),
            Ok(Ok(result)) => result,
        }
    }
}

/// Lists from an empty scratch repository: libgit2 reads whether to follow
/// redirects from a repository's config (a detached remote follows one to any
/// host), and only the host checked above may answer.
fn list_refs(url: &str) -> Result<Vec<RemoteRef>, GitError> {
    let scratch_failed = |e: &dyn std::fmt::Display| {
        GitError::Remote(format!(
            "cannot make a scratch repository for ls-remote: {e}"
        ))
    };
    let scratch = tempfile::tempdir().map_err(|e| scratch_failed(&e))?;
    let repo = git2::Repository::init_bare(scratch.path()).map_err(|e| scratch_failed(&e))?;
    repo.config()
        .and_then(|mut c| c.set_str("http.followRedirects", "false"))
        .map_err(|e| scratch_failed(&e))?;
    let mut remote = repo
        .remote_anonymous(url)
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
        self.grants.git.ls_remote(&url).await
    }
}
