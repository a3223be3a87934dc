//! `/admin/*`: plugin inventory and replacement, behind the admin token.

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use bindery_runtime::{LoadError, Reloaded};
use serde_json::{Value, json};

use super::{ApiError, AppState};

pub(super) fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/admin/plugins", get(list))
        .route("/admin/plugins/{name}/reload", post(reload))
        .route_layer(middleware::from_fn_with_state(state, require_token))
}

async fn require_token(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let expected = state.config.admin_token.as_deref().unwrap_or_default();
    let given = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    // Constant-time: the comparison must not leak how much of a guess was right.
    let same = given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if expected.is_empty() || !same {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "admin routes need `Authorization: Bearer <admin_token>`",
        ));
    }
    Ok(next.run(req).await)
}

async fn list(State(state): State<AppState>) -> Json<Value> {
    Json(Value::Array(
        state.plugins.list().iter().map(|p| p.summary()).collect(),
    ))
}

async fn reload(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if state.plugins.get(&name).is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no plugin named `{name}` is loaded"),
        ));
    }
    match state.plugins.reload(&name).await {
        Ok(Reloaded::Unchanged) => Ok(Json(json!({ "plugin": name, "outcome": "unchanged" }))),
        Ok(Reloaded::Replaced { old, new }) => Ok(Json(
            json!({ "plugin": name, "outcome": "replaced", "old_sha256": old, "new_sha256": new }),
        )),
        Err(e @ LoadError::Read { .. }) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{e}; the loaded version stays"),
        )),
    }
}
