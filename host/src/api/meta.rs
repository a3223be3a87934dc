//! `/versions` and `/health`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/versions", get(versions)).route("/health", get(health).head(health))
}

async fn versions() -> Json<Value> {
    Json(json!({ "binderhub": crate::VERSION, "builder_info": { "bindery": crate::VERSION } }))
}

/// One check per configured plugin: it must be loaded.
async fn health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let checks: Vec<Value> = state
        .config
        .enabled_plugins()
        .map(|(name, _)| {
            let loaded = state.plugins.get(name);
            json!({ "service": format!("Plugin {name}"), "ok": loaded.is_some() })
        })
        .collect();
    let ok = checks.iter().all(|c| c["ok"] == true);
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({ "ok": ok, "checks": checks })))
}
