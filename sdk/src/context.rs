//! How plugin code reaches the host.
//!
//! Plugin traits take `&impl …Context` rather than `&dyn …`: only the host
//! functions a plugin really calls are compiled in, so its component imports
//! only those capabilities and the operator grants exactly what it uses.

use crate::bindings::provider::bindery::plugin as host;
use crate::git::{GitError, RemoteRef};
use crate::http::{HttpError, Request, Response};
use crate::secrets::SecretError;
use crate::types::LogLevel;

/// Capabilities every world has: logging, the clock and the plugin's config.
pub trait Context {
    /// Writes a line to the host's log under the plugin's name.
    fn log(&self, level: LogLevel, message: &str);
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// A raw value from the operator's `[plugins.<name>.config]` table;
    /// [`config!`](crate::config!) reads them all, typed.
    fn config(&self, key: &str) -> Option<String>;

    /// Logs at `info`.
    fn info(&self, message: &str) {
        self.log(LogLevel::Info, message);
    }
    /// Logs at `warn`.
    fn warn(&self, message: &str) {
        self.log(LogLevel::Warn, message);
    }
}

/// What providers can reach besides [`Context`]: secrets, HTTP and git.
pub trait ProviderContext: Context {
    /// A secret the operator granted by name.
    fn secret(&self, name: &str) -> Result<String, SecretError>;
    /// An HTTP request to a granted host.
    fn fetch(&self, request: &Request) -> Result<Response, HttpError>;
    /// `git ls-remote` of a URL on a granted host.
    fn ls_remote(&self, url: &str) -> Result<Vec<RemoteRef>, GitError>;
    /// `git ls-remote` of a private repository: basic authentication with
    /// `username` and the granted secret `password_secret`, which the host
    /// reads (the plugin never holds it).
    fn ls_remote_authenticated(
        &self,
        url: &str,
        username: &str,
        password_secret: &str,
    ) -> Result<Vec<RemoteRef>, GitError>;
}

/// What build strategies can reach besides [`Context`]: the repository's files.
pub trait BuildStrategyContext: Context {
    /// A file of the repository being planned, by path from its root.
    fn read_file(&self, path: &str) -> Option<Vec<u8>>;
}

/// The real host, used when the plugin runs inside Bindery.
pub struct HostContext;

impl Context for HostContext {
    fn log(&self, level: LogLevel, message: &str) {
        host::log::log(level, message);
    }
    fn now_ms(&self) -> u64 {
        host::clock::now_ms()
    }
    fn config(&self, key: &str) -> Option<String> {
        host::config::get(key)
    }
}

impl ProviderContext for HostContext {
    fn secret(&self, name: &str) -> Result<String, SecretError> {
        host::secrets::get(name)
    }
    fn fetch(&self, request: &Request) -> Result<Response, HttpError> {
        host::http::fetch(request)
    }
    fn ls_remote(&self, url: &str) -> Result<Vec<RemoteRef>, GitError> {
        host::git::ls_remote(url)
    }
    fn ls_remote_authenticated(
        &self,
        url: &str,
        username: &str,
        password_secret: &str,
    ) -> Result<Vec<RemoteRef>, GitError> {
        host::git::ls_remote_authenticated(url, username, password_secret)
    }
}

impl BuildStrategyContext for HostContext {
    fn read_file(&self, path: &str) -> Option<Vec<u8>> {
        crate::bindings::build_strategy::bindery::plugin::repo_files::read(path)
    }
}
