//! `/versions`, `/health` and `/metrics`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{ACCESS_CONTROL_ALLOW_ORIGIN, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, json};

use super::AppState;
use crate::build::BuildExecutor;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/versions", get(versions))
        .route("/health", get(health).head(health))
        .route("/metrics", get(metrics))
}

/// `{"builder_info": {…}, "binderhub": "<version>"}`.
pub(super) fn versions_body(executor: Option<&dyn BuildExecutor>) -> Bytes {
    let mut info = Map::new();
    info.insert("bindery".into(), json!(crate::VERSION));
    if let Some(e) = executor {
        info.insert("build_executor".into(), json!(e.name()));
    }
    Bytes::from(json!({ "builder_info": info, "binderhub": crate::VERSION }).to_string())
}

async fn versions(State(state): State<AppState>) -> Response {
    let mut response = (
        [(CONTENT_TYPE, "application/json")],
        state.web.versions.clone(),
    )
        .into_response();
    // Upstream answers `/versions` to any origin unless told otherwise.
    if state.config.web.cors_allow_origin.is_none() {
        response
            .headers_mut()
            .insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    }
    response
}

async fn health(State(state): State<AppState>) -> Response {
    let mut latest = state.web.health.clone();
    let answer = match latest.wait_for(Option::is_some).await {
        Ok(answer) => answer.clone().expect("waited for an answer"),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Bytes::from_static(b"{\"ok\":false,\"checks\":[]}"),
        ),
    };
    (answer.0, [(CONTENT_TYPE, "application/json")], answer.1).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    // GitHub's rate limit, as the `gh` provider last heard it.
    if let Some(remaining) = state
        .plugins
        .list()
        .iter()
        .filter(|p| p.metadata.name == "gh")
        .find_map(|p| p.rate_limit_remaining())
    {
        state.metrics.github_rate_limit(remaining);
    }
    let body = state.metrics.encode();
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
