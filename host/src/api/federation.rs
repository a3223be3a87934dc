//! The federation's routes: `/build/…` sent (307) to the member the
//! repository is placed on, as mybinder.org's redirector sends it, unless
//! that is this member; and `/active_hosts`.

use axum::Router;
use axum::extract::{OriginalUri, Request, State};
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_ORIGIN, COOKIE, LOCATION, SET_COOKIE,
};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use super::build::refusal;
use crate::federation::{COOKIE as MEMBER_COOKIE, Placement, placement};

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/active_hosts", get(active_hosts))
}

async fn active_hosts(State(state): State<AppState>) -> Response {
    match &state.web.federation {
        Some(f) => axum::Json(f.active_hosts()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// In front of `/build`: a launch placed on another member is redirected
/// there before any check of this one's (the member checks its token, its
/// rate limit and its quotas itself); one placed here goes on.
pub(super) async fn place(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(federation) = &state.web.federation else {
        return next.run(request).await;
    };
    let Some((provider, spec)) = request
        .uri()
        .path()
        .strip_prefix("/build/")
        .and_then(|rest| rest.split_once('/'))
    else {
        return next.run(request).await;
    };
    // An unknown provider is this member's to refuse, as upstream's would.
    let Some(display) = state
        .plugins
        .list()
        .into_iter()
        .find(|p| p.name.as_ref() == provider)
        .and_then(|p| p.display.clone())
    else {
        return next.run(request).await;
    };
    let key = placement::key(provider, spec, display.repo_url_encode, display.ref_enabled);
    let cookie = request
        .headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(MEMBER_COOKIE)?.strip_prefix('='))
        .map(str::to_string);
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or("", |p| p.as_str())
        .to_string();
    match federation.place(&key, cookie.as_deref(), &path_and_query) {
        Placement::Here => next.run(request).await,
        Placement::Nowhere => refusal(
            503,
            "No member of this Binder federation can take launches right now. Try again in a few minutes.",
        ),
        Placement::There {
            member,
            location,
            reason,
        } => {
            federation.sent(&member, reason);
            let path = request.extensions().get::<OriginalUri>().map_or_else(
                || request.uri().path().to_string(),
                |u| u.path().to_string(),
            );
            let mut response = StatusCode::TEMPORARY_REDIRECT.into_response();
            let h = response.headers_mut();
            if let Ok(location) = HeaderValue::from_str(location.as_str()) {
                h.insert(LOCATION, location);
            }
            if let Ok(cookie) = HeaderValue::from_str(&federation.cookie(&key, &member, &path)) {
                h.insert(SET_COOKIE, cookie);
            }
            // The JS client follows the redirect from another origin.
            h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
            h.insert(
                ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("cache-control"),
            );
            response
        }
    }
}
