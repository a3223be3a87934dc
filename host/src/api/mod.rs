//! The HTTP surface, BinderHub-compatible: handlers are small async functions
//! over one [`AppState`]; every route sits under `web.base_url`.

mod admin;
mod build;
mod client;
mod federation;
mod login;
mod meta;
mod page;
mod providers;
mod token;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_ORIGIN, HOST};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bindery_runtime::PluginHost;
use tokio::sync::{OnceCell, watch};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::config::{Config, ConfigError};
use crate::federation::Federation;
use crate::health::HealthAnswer;
use crate::jupyterhub::Hub;
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, Resolver};
use client::{RateLimiter, client_ip};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The loaded plugins.
    pub plugins: Arc<PluginHost>,
    /// The configuration the service started with.
    pub config: Arc<Config>,
    /// Resolves specs with the providers and the ref cache.
    pub resolver: Arc<Resolver>,
    /// Resolve → image → build → launch.
    pub pipeline: Arc<Pipeline>,
    /// What `/metrics` exports.
    pub metrics: Arc<Metrics>,
    web: Arc<Web>,
}

/// The web layer's own state.
struct Web {
    tokens: token::BuildTokens,
    limiter: RateLimiter,
    health: watch::Receiver<HealthAnswer>,
    /// `/versions` never changes while the process runs; it is asked for
    /// at start, as repo2docker takes a moment to tell its version.
    versions: OnceCell<Bytes>,
    /// `/api/repoproviders` for a plugin generation.
    providers: RwLock<Option<(u64, Bytes)>>,
    /// Who a request's hub token or session belongs to, in authenticated mode.
    login: Option<login::Login>,
    /// The other deployments sharing this one's launch link.
    federation: Option<Arc<Federation>>,
}

impl AppState {
    /// The state that serves `pipeline`, with `/health` answering the latest
    /// of `health`. With `hub.auth_enabled`, `hub_auth` logs users in and
    /// says whose a request's token is. In a `federation`, launches placed
    /// on another member are sent there.
    pub fn new(
        config: Arc<Config>,
        plugins: Arc<PluginHost>,
        pipeline: Arc<Pipeline>,
        health: watch::Receiver<HealthAnswer>,
        hub_auth: Option<Arc<Hub>>,
        federation: Option<Arc<Federation>>,
    ) -> Result<AppState, ConfigError> {
        let secret = token::secret(&config.web).map_err(ConfigError::Invalid)?;
        let web = Web {
            tokens: token::BuildTokens::new(&secret, &config.web),
            limiter: RateLimiter::new(config.web.rate_limit.clone()),
            health,
            versions: OnceCell::new(),
            providers: RwLock::new(None),
            login: hub_auth
                .map(|hub| login::Login::new(hub, &config.hub, &config.web.base_url, &secret)),
            federation,
        };
        let state = AppState {
            plugins,
            config,
            resolver: pipeline.resolver.clone(),
            metrics: pipeline.metrics.clone(),
            pipeline,
            web: Arc::new(web),
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let state = state.clone();
            runtime.spawn(async move {
                let versions = state.versions().await;
                if let Some(f) = &state.web.federation {
                    f.own_versions(&versions);
                }
            });
        }
        Ok(state)
    }

    /// `/versions`' body.
    async fn versions(&self) -> Bytes {
        let executor = self.pipeline.executor.as_deref();
        let body = self
            .web
            .versions
            .get_or_init(|| meta::versions_body(executor));
        body.await.clone()
    }
}

/// The service's routes, under `web.base_url`.
pub fn router(state: AppState) -> Router {
    let web = &state.config.web;
    let build = get(build::build).layer(middleware::from_fn_with_state(
        state.clone(),
        federation::place,
    ));
    let mut routes = meta::routes()
        .merge(providers::routes())
        .merge(federation::routes())
        .route("/build/{provider}/{*spec}", build);
    if state.web.login.is_some() {
        routes = routes.route("/oauth_callback", get(login::callback));
    }
    if !web.api_only {
        routes = routes.merge(page::routes());
    }
    if state.config.admin_token.is_some() {
        routes = routes.merge(admin::routes(state.clone()));
    }
    let routes = routes
        .layer(middleware::from_fn_with_state(state.clone(), common))
        .with_state(state.clone());
    let base = web.base_url.trim_end_matches('/');
    let routes = if base.is_empty() {
        routes
    } else {
        Router::new().nest(base, routes)
    };
    access_log(routes)
}

/// The access log: every request gets an id (the client's `X-Request-Id`,
/// else a new UUID), answered in the same header and logged, at `info`
/// under `bindery::access`, with its method, path (never the query, which
/// can hold a build token) status and time to the response's head.
fn access_log(routes: Router) -> Router {
    let id = HeaderName::from_static("x-request-id");
    let trace = TraceLayer::new_for_http()
        .make_span_with(|request: &Request| {
            let id = request
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            tracing::info_span!(
                target: "bindery::access",
                "request",
                method = %request.method(),
                path = request.uri().path(),
                request_id = id,
            )
        })
        .on_request(())
        .on_response(|response: &Response, took: Duration, _: &tracing::Span| {
            tracing::info!(
                target: "bindery::access",
                status = response.status().as_u16(),
                ms = took.as_millis() as u64,
                "answered"
            );
        })
        .on_failure(());
    routes
        .layer(PropagateRequestIdLayer::new(id.clone()))
        .layer(trace)
        .layer(SetRequestIdLayer::new(id, MakeRequestUuid))
}

/// What upstream's `BaseHandler` does for every route: CORS headers, an empty
/// 200 for `OPTIONS`, and 403 for banned networks (but not on `/health` and
/// `/versions`; `/build` refuses them as an event).
async fn common(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let web = &state.config.web;
    let path = request.uri().path();
    let exempt = matches!(path, "/health" | "/versions") || path.starts_with("/build/");
    let mut response = if request.method() == Method::OPTIONS {
        StatusCode::OK.into_response()
    } else if let Some(label) = (!exempt).then(|| ban_label(&state, &request)).flatten() {
        (
            StatusCode::FORBIDDEN,
            format!("Requests from {label} are not allowed"),
        )
            .into_response()
    } else {
        next.run(request).await
    };
    let h = response.headers_mut();
    h.insert(
        ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("cache-control"),
    );
    if let Some(origin) = web
        .cors_allow_origin
        .as_deref()
        .and_then(|o| HeaderValue::from_str(o).ok())
    {
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    response
}

fn ban_label(state: &AppState, request: &Request) -> Option<String> {
    let web = &state.config.web;
    if web.ban_networks.is_empty() {
        return None;
    }
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()?
        .0
        .ip();
    client::banned(
        client_ip(request.headers(), peer, &web.trusted_proxies),
        &web.ban_networks,
    )
    .map(str::to_string)
}

/// `binder_launch_host`: `badge_base_url`, else the request's own base.
fn launch_host(state: &AppState, headers: &HeaderMap, peer: std::net::IpAddr) -> String {
    let web = &state.config.web;
    if let Some(b) = &web.badge_base_url {
        return b.clone();
    }
    request_base(state, headers, peer)
}

/// `{proto}://{host}{base_url}` of the request, with `X-Forwarded-Proto`
/// believed only from a trusted proxy.
fn request_base(state: &AppState, headers: &HeaderMap, peer: std::net::IpAddr) -> String {
    let web = &state.config.web;
    let forwarded = client::is_trusted(peer, &web.trusted_proxies)
        .then(|| headers.get("x-forwarded-proto"))
        .flatten();
    let proto = forwarded
        .and_then(|v| v.to_str().ok())
        .filter(|p| matches!(*p, "http" | "https"))
        .unwrap_or("http");
    let host = headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    format!("{proto}://{host}{}", web.base_url)
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
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(serde_json::json!({ "message": self.message })),
        )
            .into_response()
    }
}
