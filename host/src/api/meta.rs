//! `/versions`, `/health` and `/metrics`.

use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{ACCESS_CONTROL_ALLOW_ORIGIN, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use super::AppState;
use crate::build::BuildExecutor;
use crate::pipeline::Pipeline;

/// How long a health answer is reused (upstream: 15 s). It is refreshed in
/// the background, so no request waits for the registry or the hub.
const HEALTH_INTERVAL: Duration = Duration::from_secs(15);

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

/// A health answer: status and JSON body.
pub(super) type HealthAnswer = Option<(StatusCode, Bytes)>;

/// Refreshes the health answer every 15 s while the pipeline lives.
pub(super) fn monitor(pipeline: &Arc<Pipeline>) -> watch::Receiver<HealthAnswer> {
    let (tx, rx) = watch::channel(None);
    let pipeline: Weak<Pipeline> = Arc::downgrade(pipeline);
    tokio::spawn(async move {
        loop {
            let Some(p) = pipeline.upgrade() else { return };
            let answer = check(&p).await;
            drop(p);
            if tx.send(Some(answer)).is_err() {
                return;
            }
            tokio::time::sleep(HEALTH_INTERVAL).await;
        }
    });
    rx
}

/// Upstream's checks: the registry, the hub (and its quota check), each a
/// `{"service", "ok"}` object; a failed check without `_ignore_failure` makes it 503.
async fn check(pipeline: &Pipeline) -> (StatusCode, Bytes) {
    let mut checks: Vec<Value> = Vec::new();
    if pipeline.registry.is_configured() {
        let result = pipeline.registry.check().await;
        if let Err(e) = &result {
            tracing::warn!("health: {e}");
        }
        checks.push(json!({ "service": "Docker registry", "ok": result.is_ok() }));
    }
    if let Some(launcher) = &pipeline.launcher {
        checks.extend(
            launcher
                .health()
                .await
                .into_iter()
                .map(|c| Value::Object(c.check)),
        );
    }
    let ok = checks
        .iter()
        .all(|c| c["ok"] == true || c["_ignore_failure"] == true);
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Bytes::from(json!({ "ok": ok, "checks": checks }).to_string()),
    )
}
