//! Test plugin logic natively, without a host: a [`MockContext`] with canned
//! config, secrets, HTTP responses, git refs and repository files, which
//! records every log line and request.
//!
//! ```
//! use bindery_sdk::testing::MockContext;
//! use bindery_sdk::prelude::*;
//! use bindery_sdk::http::Request;
//!
//! let ctx = MockContext::new()
//!     .with_config("base_url", "https://forge.example.edu")
//!     .with_json("https://forge.example.edu/api/sha", 200, r#"{"sha":"abc"}"#);
//! let r = ctx.fetch(&Request::get("https://forge.example.edu/api/sha")).unwrap();
//! assert_eq!(r.status, 200);
//! assert_eq!(ctx.requests().len(), 1);
//! ```

use std::cell::RefCell;
use std::collections::HashMap;

use crate::context::{BuildStrategyContext, Context, ProviderContext};
use crate::git::{GitError, RemoteRef};
use crate::http::{HttpError, Request, Response};
use crate::secrets::SecretError;
use crate::types::LogLevel;

/// A stand-in for the host.
#[derive(Default, Clone)]
pub struct MockContext {
    now_ms: u64,
    config: HashMap<String, String>,
    secrets: HashMap<String, String>,
    responses: HashMap<String, Result<Response, HttpError>>,
    remotes: HashMap<String, Result<Vec<RemoteRef>, GitError>>,
    files: HashMap<String, Vec<u8>>,
    logs: RefCell<Vec<(LogLevel, String)>>,
    requests: RefCell<Vec<Request>>,
}

impl MockContext {
    /// An empty context: no config, no secrets, every request fails.
    pub fn new() -> Self {
        MockContext {
            now_ms: 1_700_000_000_000,
            ..Default::default()
        }
    }

    /// Sets the clock (milliseconds since the Unix epoch).
    pub fn with_now_ms(mut self, now_ms: u64) -> Self {
        self.now_ms = now_ms;
        self
    }

    /// Sets a config value.
    pub fn with_config(mut self, key: &str, value: &str) -> Self {
        self.config.insert(key.into(), value.into());
        self
    }

    /// Grants a secret.
    pub fn with_secret(mut self, name: &str, value: &str) -> Self {
        self.secrets.insert(name.into(), value.into());
        self
    }

    /// Answers requests to `url` (any method) with `response`.
    pub fn with_response(mut self, url: &str, response: Result<Response, HttpError>) -> Self {
        self.responses.insert(url.into(), response);
        self
    }

    /// Answers requests to `url` with a JSON body.
    pub fn with_json(self, url: &str, status: u16, body: &str) -> Self {
        let response = Response {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
            final_url: url.into(),
            revalidated: false,
        };
        self.with_response(url, Ok(response))
    }

    /// Answers requests to `url` as a landing page reached through redirects
    /// that end at `final_url` (what a DOI resolver does), with an empty body.
    pub fn with_redirect(self, url: &str, final_url: &str) -> Self {
        let response = Response {
            status: 200,
            headers: vec![],
            body: vec![],
            final_url: final_url.into(),
            revalidated: false,
        };
        self.with_response(url, Ok(response))
    }

    /// Answers `ls_remote(url)` with these `(name, oid)` refs.
    pub fn with_remote(mut self, url: &str, refs: &[(&str, &str)]) -> Self {
        let refs = refs
            .iter()
            .map(|(n, o)| RemoteRef {
                name: (*n).into(),
                oid: (*o).into(),
            })
            .collect();
        self.remotes.insert(url.into(), Ok(refs));
        self
    }

    /// Answers `ls_remote(url)` with an error.
    pub fn with_remote_error(mut self, url: &str, error: GitError) -> Self {
        self.remotes.insert(url.into(), Err(error));
        self
    }

    /// Adds a repository file for build strategies.
    pub fn with_file(mut self, path: &str, contents: &[u8]) -> Self {
        self.files.insert(path.into(), contents.to_vec());
        self
    }

    /// Every line logged so far.
    pub fn logs(&self) -> Vec<(LogLevel, String)> {
        self.logs.borrow().clone()
    }

    /// Every HTTP request made so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.borrow().clone()
    }
}

impl Context for MockContext {
    fn log(&self, level: LogLevel, message: &str) {
        self.logs.borrow_mut().push((level, message.into()));
    }
    fn now_ms(&self) -> u64 {
        self.now_ms
    }
    fn config(&self, key: &str) -> Option<String> {
        self.config.get(key).cloned()
    }
}

impl ProviderContext for MockContext {
    fn secret(&self, name: &str) -> Result<String, SecretError> {
        self.secrets
            .get(name)
            .cloned()
            .ok_or_else(|| SecretError::NotGranted(name.into()))
    }

    fn fetch(&self, request: &Request) -> Result<Response, HttpError> {
        self.requests.borrow_mut().push(request.clone());
        self.responses
            .get(&request.url)
            .cloned()
            .unwrap_or_else(|| {
                Err(HttpError::Connect(format!(
                    "MockContext has no response for {}",
                    request.url
                )))
            })
    }

    fn ls_remote(&self, url: &str) -> Result<Vec<RemoteRef>, GitError> {
        self.remotes
            .get(url)
            .cloned()
            .unwrap_or_else(|| Err(GitError::Remote(format!("MockContext has no remote {url}"))))
    }
    /// Answers as `ls_remote` when the secret is set (`with_secret`), and
    /// as the host does when it is not.
    fn ls_remote_authenticated(
        &self,
        url: &str,
        _username: &str,
        password_secret: &str,
    ) -> Result<Vec<RemoteRef>, GitError> {
        self.secret(password_secret).map_err(|_| {
            GitError::Remote(format!("the secret `{password_secret}` is not granted"))
        })?;
        self.ls_remote(url)
    }
}

impl BuildStrategyContext for MockContext {
    fn read_file(&self, path: &str) -> Option<Vec<u8>> {
        self.files.get(path).cloned()
    }
}
