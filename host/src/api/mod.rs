//! The HTTP surface: handlers are small async functions over one [`AppState`].

mod admin;
mod meta;

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::config::Config;
use crate::plugins::PluginHost;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The loaded plugins.
    pub plugins: Arc<PluginHost>,
    /// The configuration the service started with.
    pub config: Arc<Config>,
}

/// The service's routes.
pub fn router(state: AppState) -> Router {
    let mut router = meta::routes();
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
