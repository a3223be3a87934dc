//! `/build/<provider>/<spec>`: the event stream, byte for byte as upstream
//! BinderHub sends it. Every answer is HTTP 200 `text/event-stream`; refusals
//! are `failed` events with the `status_code` upstream's `HTTPError` had.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::header::{ACCEPT, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HOST, ORIGIN};
use axum::http::{HeaderMap, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior, interval_at};

use super::client::{banned, client_ip};
use super::token::TokenError;
use super::{AppState, launch_host};
use crate::metrics::{InProgress, InProgressGuard};
use crate::pipeline::{Event, Launch};

#[derive(Deserialize)]
pub(super) struct BuildQuery {
    build_token: Option<String>,
    build_only: Option<String>,
}

const KEEPALIVE: &[u8] = b":keepalive\n\n";

pub(super) async fn build(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<BuildQuery>,
) -> Response {
    // Upstream re-reads the spec from the raw path: `%2F` in a GitLab
    // namespace must reach the provider still escaped.
    let Some((provider, spec)) = uri
        .path()
        .strip_prefix("/build/")
        .and_then(|rest| rest.split_once('/'))
    else {
        return refusal(404, "Not Found");
    };
    let web = &state.config.web;
    let ip = client_ip(&headers, peer.ip(), &web.trusted_proxies);
    if let Some(label) = banned(ip, &web.ban_networks) {
        return refusal(403, &format!("Requests from {label} are not allowed"));
    }
    let accepts_stream = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.split(';').any(|p| p == "text/event-stream"));
    if !accepts_stream {
        return refusal(400, "Missing Accept header: text/event-stream");
    }
    // Authenticated mode, as upstream's `@authenticated`: the hub user the request's token belongs to.
    let user = match &state.web.hub_auth {
        None => None,
        Some(hub) => {
            let token = headers
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    v.strip_prefix("token ")
                        .or_else(|| v.strip_prefix("Bearer "))
                });
            match token {
                None => {
                    return refusal(
                        403,
                        "Authentication is required: send the hub token as `Authorization: token …`",
                    );
                }
                Some(token) => match hub.whoami(token.trim()).await {
                    Ok(Some(user)) => Some(user),
                    Ok(None) => return refusal(403, "The hub does not accept this token"),
                    Err(e) => {
                        return refusal(503, &format!("Cannot check the token with the hub: {e}"));
                    }
                },
            }
        }
    };
    let build_only = query
        .build_only
        .as_deref()
        .is_some_and(|b| b.eq_ignore_ascii_case("true"));
    if build_only && !web.api_only {
        return refusal(
            400,
            "Building but not launching is not permitted when the API only mode was not enabled.",
        );
    }
    let mut limit_headers = None;
    let audience = format!("{provider}/{spec}");
    let token_ok = match query.build_token.as_deref() {
        None => false,
        Some(token) => match state
            .web
            .tokens
            .verify(token, &audience, &request_origin(&headers))
        {
            Ok(()) => true,
            Err(TokenError::Invalid) => return refusal(403, "Invalid build token"),
            Err(TokenError::WrongOrigin) => {
                return refusal(403, "Invalid build token: it was issued to another origin");
            }
        },
    };
    if !token_ok && state.web.limiter.enabled() {
        match state.web.limiter.check(ip) {
            Ok(quota) => limit_headers = Some(quota),
            Err(wait) => {
                return refusal(
                    429,
                    &format!("Rate limit exceeded. Try again in {wait} seconds."),
                );
            }
        }
    }
    if !state.resolver.knows(provider) {
        return refusal(404, &format!("No provider found for prefix {provider}"));
    }
    let launch = Launch {
        provider: provider.into(),
        spec: spec.into(),
        build_only,
        client_ip: ip.to_string(),
        launch_host: launch_host(&state, &headers, peer.ip()),
        user,
    };
    let events = state.pipeline.start(launch);
    let keepalive = Duration::from_secs(web.keepalive_secs.max(1));
    let mut response = event_stream(
        events,
        keepalive,
        state.metrics.in_progress(InProgress::Stream),
    )
    .into_response();
    if let Some(q) = limit_headers {
        let h = response.headers_mut();
        h.insert("x-ratelimit-remaining", q.remaining.into());
        h.insert("x-ratelimit-reset", q.reset.into());
        h.insert("x-ratelimit-limit", q.limit.into());
    }
    response
}

/// `netloc` of the Origin header, else the Host header (upstream's `token_origin`).
pub(super) fn request_origin(headers: &HeaderMap) -> String {
    let origin = headers
        .get(ORIGIN)
        .and_then(|v| v.to_str().ok())
        .and_then(|o| o.split_once("://").map(|(_, netloc)| netloc.to_string()));
    origin
        .or_else(|| {
            headers
                .get(HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default()
}

fn frame(json: &str) -> Bytes {
    let mut out = Vec::with_capacity(json.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(json.as_bytes());
    out.extend_from_slice(b"\n\n");
    out.into()
}

fn sse(body: Body) -> Response {
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// A refusal: one `failed` event with the status code, then the end.
fn refusal(status: u16, message: &str) -> Response {
    let event = Event::fields(
        "failed",
        json!({ "status_code": status, "message": format!("{message}\n") }),
    );
    sse(Body::from(frame(event.json())))
}

struct Streaming {
    events: mpsc::Receiver<Event>,
    keepalive: tokio::time::Interval,
    done: bool,
    _open: InProgressGuard,
}

/// The pipeline's events as SSE frames with keepalives between them; the
/// stream ends right after a terminal event.
fn event_stream(events: mpsc::Receiver<Event>, every: Duration, open: InProgressGuard) -> Response {
    let mut keepalive = interval_at(Instant::now() + every, every);
    keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let state = Streaming {
        events,
        keepalive,
        done: false,
        _open: open,
    };
    let frames = stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        let bytes = tokio::select! {
            event = s.events.recv() => {
                let event = event?;
                s.done = event.is_terminal();
                s.keepalive.reset();
                frame(event.json())
            }
            _ = s.keepalive.tick() => Bytes::from_static(KEEPALIVE),
        };
        Some((Ok::<_, Infallible>(bytes), s))
    });
    sse(Body::from_stream(frames))
}
