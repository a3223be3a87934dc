//! `/versions`, `/health` and `/metrics`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{ACCESS_CONTROL_ALLOW_ORIGIN, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::AppState;
use crate::build::{BuildExecutor, BuilderInfo};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/versions", get(versions))
        .route("/health", get(health).head(health))
        .route("/metrics", get(metrics))
}

/// Upstream's `/versions`: `builder_info` is `{"build_image": …}` with
/// `builder` beside it when builds run in pods, `{"repo2docker-version": …}`
/// (`{}` when repo2docker does not answer) when they run here. `bindery`
/// is Bindery's own, additive key.
pub(super) async fn versions_body(executor: Option<&dyn BuildExecutor>) -> Bytes {
    let mut body = json!({ "binderhub": crate::VERSION, "bindery": crate::VERSION });
    let info = match executor {
        Some(e) => e.builder_info().await,
        None => BuilderInfo::Local(None),
    };
    match info {
        BuilderInfo::Image(image) => {
            body["builder_info"] = json!({ "build_image": image });
            body["builder"] = json!(image);
        }
        BuilderInfo::Local(version) => {
            body["builder_info"] = match version {
                Some(v) => json!({ "repo2docker-version": v }),
                None => json!({}),
            };
        }
    }
    Bytes::from(body.to_string())
}

async fn versions(State(state): State<AppState>) -> Response {
    let mut response =
        ([(CONTENT_TYPE, "application/json")], state.versions().await).into_response();
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
