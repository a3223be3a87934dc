//! How plugin code reaches the host.
//!
//! Plugin traits take `&impl …Context` rather than `&dyn …`: only the host
//! functions a plugin really calls are compiled in, so its component imports
//! only those capabilities and the operator grants exactly what it uses.

use std::str::FromStr;

use crate::bindings::provider::bindery::plugin as host;
use crate::git::{GitError, RemoteRef};
use crate::http::{HttpError, Request, Response};
use crate::secrets::SecretError;
use crate::types::{LogLevel, PluginError};

/// Capabilities every world has: logging, the clock and the plugin's config.
pub trait Context {
    /// Writes a line to the host's log under the plugin's name.
    fn log(&self, level: LogLevel, message: &str);
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// A value from the operator's `[plugins.<name>.config]` table.
    fn config(&self, key: &str) -> Option<String>;

    /// Logs at `info`.
    fn info(&self, message: &str) {
        self.log(LogLevel::Info, message);
    }
    /// Logs at `warn`.
    fn warn(&self, message: &str) {
        self.log(LogLevel::Warn, message);
    }
    /// A config value the plugin cannot work without (declare it with
    /// [`ConfigKey::required`](crate::types::ConfigKey::required), so that
    /// the host refuses to load the plugin while it is unset).
    fn required_config(&self, key: &str) -> Result<String, PluginError> {
        self.config(key)
            .ok_or_else(|| PluginError::InvalidConfig(format!("{key} is not set")))
    }
    /// A config value parsed as `T`, or `default` when unset; a value that
    /// does not parse is an `invalid-config` error naming the key.
    fn config_or<T: FromStr>(&self, key: &str, default: T) -> Result<T, PluginError> {
        let Some(v) = self.config(key) else {
            return Ok(default);
        };
        v.trim().parse().map_err(|_| {
            let what = match std::any::type_name::<T>() {
                "bool" => "true or false".to_string(),
                "u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64" | "isize" => {
                    "a whole number".to_string()
                }
                "f32" | "f64" => "a number".to_string(),
                other => format!("a {other}"),
            };
            PluginError::InvalidConfig(format!("{key} must be {what}, not {v:?}"))
        })
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
