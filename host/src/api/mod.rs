//! The HTTP surface: handlers are small async functions over one [`AppState`].

mod admin;
mod meta;
mod providers;

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::config::{Config, ConfigError};
use crate::pipeline::Resolver;
use crate::plugins::PluginHost;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The loaded plugins.
    pub plugins: Arc<PluginHost>,
    /// The configuration the service started with.
    pub config: Arc<Config>,
    /// Resolves specs with the providers and the ref cache.
    pub resolver: Arc<Resolver>,
}

impl AppState {
    /// State over loaded plugins, with the ref cache in the data directory.
    pub fn new(config: Config, plugins: Arc<PluginHost>) -> Result<AppState, ConfigError> {
        let trees = crate::cache::open(&config);
        let resolver = Resolver::new(&config, plugins.clone(), trees.refs)?;
        Ok(AppState { plugins, config: Arc::new(config), resolver: Arc::new(resolver) })
    }
}

/// The service's routes.
pub fn router(state: AppState) -> Router {
    let mut router = meta::routes().merge(providers::routes());
    if state.config.admin_token.is_some() {
        router = router.merge(admin::routes(state.clone()));
    }
    router.with_state(state)
}

/// An error answered as JSON `{"message": …}` with its status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// An error with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(serde_json::json!({ "message": self.message }))).into_response()
    }
}
