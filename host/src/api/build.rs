//! `/build/<provider>/<spec>`: the event stream, byte for byte as upstream
//! BinderHub sends it. Every answer is HTTP 200 `text/event-stream`; refusals
//! are `failed` events with the `status_code` upstream's `HTTPError` had.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::http::header::{ACCEPT, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HOST, ORIGIN};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior, interval_at};

use super::client::{Counted, RateQuota, banned, client_ip};
use super::login::{LoggedIn, LoginError};
use super::token::TokenError;
use super::{AppState, launch_host};
use crate::events::Event;
use crate::metrics::{InProgress, InProgressGuard};
use crate::pipeline::Launch;

const KEEPALIVE: &[u8] = b":keepalive\n\n";

/// `/build/<provider>/<spec>`. Each check is an extractor, run in the order
/// upstream checks: the path, a banned network, the `Accept` header, the hub
/// user (authenticated mode), `build_only`, then the build token or the rate
/// limit. The first that refuses answers its `failed` event.
pub(super) async fn build(
    State(state): State<AppState>,
    Target { provider, spec }: Target,
    Client { ip, launch_host }: Client,
    _: AcceptsEventStream,
    HubUser(user): HubUser,
    BuildOnly(build_only): BuildOnly,
    Admitted { limit, build_token }: Admitted,
) -> Response {
    if !state.resolver.knows(&provider).await {
        return refusal(404, &format!("No provider found for prefix {provider}"));
    }
    let launch = Launch {
        provider,
        spec,
        build_only,
        client_ip: ip.to_string(),
        launch_host,
        user,
        build_token,
    };
    let events = state.pipeline.start(launch);
    let keepalive = Duration::from_secs(state.config.web.keepalive_secs.max(1));
    let mut response = event_stream(
        events,
        keepalive,
        state.metrics.in_progress(InProgress::Stream),
    )
    .into_response();
    if let Some(q) = limit {
        let h = response.headers_mut();
        h.insert("x-ratelimit-remaining", q.remaining.into());
        h.insert("x-ratelimit-reset", q.reset.into());
        h.insert("x-ratelimit-limit", q.limit.into());
    }
    response
}

/// The provider prefix and the spec, from the raw path: upstream re-reads
/// the spec there, so that `%2F` in a GitLab namespace reaches the provider
/// still escaped.
pub(super) struct Target {
    provider: String,
    spec: String,
}

impl FromRequestParts<AppState> for Target {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Response> {
        let (provider, spec) = target(parts).ok_or_else(|| refusal(404, "Not Found"))?;
        Ok(Target {
            provider: provider.into(),
            spec: spec.into(),
        })
    }
}

/// `(provider, spec)` of the raw path.
fn target(parts: &Parts) -> Option<(&str, &str)> {
    parts
        .uri
        .path()
        .strip_prefix("/build/")
        .and_then(|rest| rest.split_once('/'))
}

/// The connection's peer and the client's address (`X-Forwarded-For` when
/// the peer is a trusted proxy); a refusal when the server was not started
/// with connection info.
fn addresses(parts: &Parts, state: &AppState) -> Result<(IpAddr, IpAddr), Box<Response>> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .ok_or_else(|| Box::new(refusal(500, "The connection's address is unknown")))?;
    let ip = client_ip(&parts.headers, peer, &state.config.web.trusted_proxies);
    Ok((peer, ip))
}

/// Whether the rate limit lets `/v2`'s page have a build token: its page
/// load is counted as the launch, so the token it carries is not a way
/// round the limit.
pub(super) struct MayHaveToken(pub(super) bool);

impl FromRequestParts<AppState> for MayHaveToken {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let counted = count_request(parts, state).map_err(|r| *r)?;
        Ok(MayHaveToken(counted.is_none_or(|within| within.is_ok())))
    }
}

/// Counts the request against its client address's rate limit: the quota
/// left, or the seconds until the window ends; `None` with the limiter off.
fn count_request(
    parts: &Parts,
    state: &AppState,
) -> Result<Option<Result<RateQuota, u64>>, Box<Response>> {
    if !state.web.limiter.enabled() {
        return Ok(None);
    }
    // A logged-in user is counted as themself; anyone else by address.
    // `Client` has run (and refused banned networks) by now.
    let who = match parts.extensions.get::<LoggedIn>() {
        Some(LoggedIn(user)) => Counted::User(user.clone()),
        None => Counted::address(addresses(parts, state)?.1),
    };
    Ok(Some(state.web.limiter.check(who)))
}

/// The client's address (`X-Forwarded-For` from a trusted proxy), refused
/// when it is in a banned network; and the `binder_launch_host` it reached.
pub(super) struct Client {
    ip: IpAddr,
    launch_host: String,
}

impl FromRequestParts<AppState> for Client {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let (peer, ip) = addresses(parts, state).map_err(|r| *r)?;
        if let Some(label) = banned(ip, &state.config.web.ban_networks) {
            return Err(refusal(
                403,
                &format!("Requests from {label} are not allowed"),
            ));
        }
        Ok(Client {
            ip,
            launch_host: launch_host(state, &parts.headers, peer),
        })
    }
}

/// The request accepts `text/event-stream`.
pub(super) struct AcceptsEventStream;

impl FromRequestParts<AppState> for AcceptsEventStream {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Response> {
        let accepts = parts
            .headers
            .get(ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.split(';').any(|p| p == "text/event-stream"));
        if accepts {
            Ok(AcceptsEventStream)
        } else {
            Err(refusal(400, "Missing Accept header: text/event-stream"))
        }
    }
}

/// In authenticated mode, as upstream's `@authenticated`: the hub user the
/// request's token or login session belongs to; otherwise `None`.
pub(super) struct HubUser(Option<String>);

impl FromRequestParts<AppState> for HubUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Some(login) = &state.web.login else {
            return Ok(HubUser(None));
        };
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("token ")
                    .or_else(|| v.strip_prefix("Bearer "))
            });
        let user = match token {
            Some(token) => match login.owner(token.trim()).await {
                Ok(Some(user)) => user,
                Ok(None) => return Err(refusal(403, "The hub does not accept this token")),
                Err(e) => {
                    return Err(refusal(
                        503,
                        &format!("Cannot check the token with the hub: {e}"),
                    ));
                }
            },
            None => match login.acting_session(parts).await {
                Ok(session) => session.user,
                Err(LoginError::NoSession) => {
                    return Err(refusal(
                        403,
                        "Authentication is required: log in on this BinderHub's page, or send the hub token as `Authorization: token …`",
                    ));
                }
                Err(e @ LoginError::Xsrf) => return Err(refusal(403, &e.to_string())),
                Err(e) => {
                    return Err(refusal(
                        503,
                        &format!("Cannot check the login with the hub: {e}"),
                    ));
                }
            },
        };
        parts.extensions.insert(LoggedIn(user.clone()));
        Ok(HubUser(Some(user)))
    }
}

#[derive(Deserialize)]
struct BuildQuery {
    build_token: Option<String>,
    build_only: Option<String>,
}

impl BuildQuery {
    fn of(parts: &Parts) -> BuildQuery {
        Query::<BuildQuery>::try_from_uri(&parts.uri).map_or(
            BuildQuery {
                build_token: None,
                build_only: None,
            },
            |q| q.0,
        )
    }
}

/// `build_only=true`, which only an API-only deployment allows.
pub(super) struct BuildOnly(bool);

impl FromRequestParts<AppState> for BuildOnly {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let build_only = BuildQuery::of(parts)
            .build_only
            .is_some_and(|b| b.eq_ignore_ascii_case("true"));
        if build_only && !state.config.web.api_only {
            return Err(refusal(
                400,
                "Building but not launching is not permitted when the API only mode was not enabled.",
            ));
        }
        Ok(BuildOnly(build_only))
    }
}

/// Let through by a valid build token for this spec and origin that is not
/// spent, else by the per-address rate limit (whose state goes into the
/// response's headers).
pub(super) struct Admitted {
    /// The client's rate-limit quota left, when it was counted.
    limit: Option<RateQuota>,
    /// A build token admitted the request (upstream's launch events say so).
    build_token: bool,
}

impl FromRequestParts<AppState> for Admitted {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        if let Some(token) = BuildQuery::of(parts).build_token {
            let (provider, spec) = target(parts).ok_or_else(|| refusal(404, "Not Found"))?;
            let audience = format!("{provider}/{spec}");
            match state
                .web
                .tokens
                .admit(&token, &audience, &request_origin(&parts.headers))
            {
                Ok(()) => {
                    return Ok(Admitted {
                        limit: None,
                        build_token: true,
                    });
                }
                Err(TokenError::Invalid) => return Err(refusal(403, "Invalid build token")),
                Err(TokenError::WrongOrigin) => {
                    return Err(refusal(
                        403,
                        "Invalid build token: it was issued to another origin",
                    ));
                }
                // Counted like a request without one.
                Err(TokenError::Spent) => {}
            }
        }
        let admitted = |limit| Admitted {
            limit,
            build_token: false,
        };
        match count_request(parts, state).map_err(|r| *r)? {
            None => Ok(admitted(None)),
            Some(Ok(quota)) => Ok(admitted(Some(quota))),
            Some(Err(wait)) => Err(refusal(
                429,
                &format!("Rate limit exceeded. Try again in {wait} seconds."),
            )),
        }
    }
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
pub(super) fn refusal(status: u16, message: &str) -> Response {
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
