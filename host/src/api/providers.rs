//! `/api/repoproviders`: each provider's launch-form configuration, in
//! upstream's shape and order.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bindery_runtime::bindings::DisplayConfig;
use serde_json::{Value, json};

use super::AppState;

/// Upstream BinderHub's default providers, in the order it serves them.
const UPSTREAM_ORDER: [&str; 9] = [
    "gh",
    "gist",
    "git",
    "gl",
    "zenodo",
    "figshare",
    "hydroshare",
    "dataverse",
    "ckan",
];

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/api/repoproviders", get(repoproviders))
}

/// upstream's `display_config` dict. `id` is the prefix the provider is
/// loaded under, which is what launch URLs use.
fn display_json(id: &str, d: &DisplayConfig) -> Value {
    let mut v = json!({
        "displayName": d.display_name,
        "id": id,
        "spec": { "validateRegex": d.spec_validate_regex },
        "repo": { "label": d.repo_label, "placeholder": d.repo_placeholder, "urlEncode": d.repo_url_encode },
        "ref": { "enabled": d.ref_enabled },
    });
    if let Some(regex) = &d.detect_regex {
        v["detect"] = json!({ "regex": regex });
    }
    if let Some(default) = &d.ref_default {
        v["ref"]["default"] = json!(default);
    }
    v
}

/// The answer is the same until a plugin is replaced: it is built once per
/// plugin generation.
async fn repoproviders(State(state): State<AppState>) -> Response {
    let generation = state.plugins.generation();
    let cached = state.web.providers.read().expect("providers cache").clone();
    let body = match cached {
        Some((g, body)) if g == generation => body,
        _ => {
            let body = Bytes::from(Value::Array(list(&state)).to_string());
            *state.web.providers.write().expect("providers cache") =
                Some((generation, body.clone()));
            body
        }
    };
    ([(CONTENT_TYPE, "application/json")], body).into_response()
}

/// The providers' display configs in upstream's order, then the rest by name.
pub(super) fn list(state: &AppState) -> Vec<Value> {
    let mut providers: Vec<_> = state
        .plugins
        .list()
        .into_iter()
        .filter_map(|p| p.display.clone().map(|d| (p.name.to_string(), d)))
        .collect();
    let rank = |name: &str| {
        UPSTREAM_ORDER
            .iter()
            .position(|u| *u == name)
            .unwrap_or(UPSTREAM_ORDER.len())
    };
    providers.sort_by(|(a, _), (b, _)| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
    providers
        .iter()
        .map(|(name, d)| display_json(name, d))
        .collect()
}
