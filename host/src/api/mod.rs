//! The HTTP surface, BinderHub-compatible: handlers are small async functions
//! over one [`AppState`]; every route sits under `web.base_url`.

mod admin;
mod build;
mod client;
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
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::watch;

use client::{RateLimiter, client_ip};

use crate::build::{BuildExecutor, Builder};
use crate::config::{Config, ConfigError};
use crate::launch::Launcher;
use crate::metrics::Metrics;
use crate::pipeline::{Flights, Pipeline, Resolver};
use crate::plugins::PluginHost;
use crate::registry::Registry;

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
    health: watch::Receiver<meta::HealthAnswer>,
    /// `/versions` never changes while the process runs.
    versions: Bytes,
    /// `/api/repoproviders` for a plugin generation.
    providers: RwLock<Option<(u64, Bytes)>>,
    /// Who a request's hub token belongs to, in authenticated mode.
    hub_auth: Option<Arc<crate::hub::Hub>>,
}

/// Which build executor a state runs.
pub enum Builds {
    /// None: a launch of an image not yet built fails, saying so.
    Off,
    /// The host's own: `[build] strategy` plans, the local or layer executor builds.
    Planned,
    /// This one (an embedder's, or a test's).
    With(Arc<dyn BuildExecutor>),
}

impl AppState {
    /// State over loaded plugins, with the caches in the data directory,
    /// builds as `[build]` configures them, launches on the `[hub]`, and its
    /// culler started as `[cull]` says. Needs a tokio runtime.
    pub fn new(config: Config, plugins: Arc<PluginHost>) -> Result<AppState, ConfigError> {
        let hub = crate::hub::Hub::new(&config.hub)?.map(Arc::new);
        let launcher = hub.clone().map(|hub| {
            Arc::new(crate::launch::hub::HubLauncher::new(
                hub,
                &config.hub,
                &config.quota,
            )) as Arc<dyn Launcher>
        });
        let state = AppState::with(config, plugins, Builds::Planned, launcher)?;
        if let Some(hub) = hub.filter(|_| state.config.cull.enabled) {
            crate::cull::start(
                hub,
                state.plugins.clone(),
                &state.config.cull,
                state.metrics.clone(),
            )?;
        }
        Ok(state)
    }

    /// State with a build executor and a launcher. Builds recorded as running
    /// by a previous process are watched again where the executor can.
    /// Needs a tokio runtime (the health monitor runs in the background).
    pub fn with(
        config: Config,
        plugins: Arc<PluginHost>,
        builds: Builds,
        launcher: Option<Arc<dyn Launcher>>,
    ) -> Result<AppState, ConfigError> {
        let trees = crate::cache::open(&config);
        let metrics = Arc::new(Metrics::default());
        let resolver = Arc::new(Resolver::new(
            &config,
            plugins.clone(),
            trees.refs,
            metrics.clone(),
        )?);
        let registry = Arc::new(Registry::new(&config.registry, trees.images)?);
        let executor: Option<Arc<dyn BuildExecutor>> = match builds {
            Builds::Off => None,
            Builds::Planned => Some(Arc::new(Builder::new(
                &config,
                plugins.clone(),
                registry.clone(),
                trees.environments,
                metrics.clone(),
            )?)),
            Builds::With(executor) => Some(executor),
        };
        let abandon = config
            .build
            .cancel_abandoned_after_secs
            .map(Duration::from_secs);
        let flights = Arc::new(Flights::new(trees.builds, registry.clone(), abandon));
        flights.recover(executor.as_ref());
        let pipeline = Arc::new(Pipeline {
            resolver: resolver.clone(),
            registry,
            flights,
            executor,
            launcher,
            metrics: metrics.clone(),
        });
        let web = Web {
            tokens: token::BuildTokens::new(&config.web).map_err(ConfigError::Invalid)?,
            limiter: RateLimiter::new(config.web.rate_limit.clone()),
            health: meta::monitor(&pipeline),
            versions: meta::versions_body(pipeline.executor.as_deref()),
            providers: RwLock::new(None),
            hub_auth: match config.hub.auth_enabled {
                false => None,
                true => Some(Arc::new(crate::hub::Hub::new(&config.hub)?.ok_or_else(
                    || ConfigError::Invalid("hub.auth_enabled needs hub.url".into()),
                )?)),
            },
        };
        Ok(AppState {
            plugins,
            config: Arc::new(config),
            resolver,
            pipeline,
            metrics,
            web: Arc::new(web),
        })
    }
}

/// The service's routes, under `web.base_url`.
pub fn router(state: AppState) -> Router {
    let web = &state.config.web;
    let mut routes = meta::routes()
        .merge(providers::routes())
        .route("/build/{provider}/{*spec}", get(build::build));
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
    if base.is_empty() {
        routes
    } else {
        Router::new().nest(base, routes)
    }
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

/// `binder_launch_host`: `badge_base_url`, else `{proto}://{host}{base_url}`,
/// with `X-Forwarded-Proto` believed only from a trusted proxy.
fn launch_host(state: &AppState, headers: &HeaderMap, peer: std::net::IpAddr) -> String {
    let web = &state.config.web;
    if let Some(b) = &web.badge_base_url {
        return b.clone();
    }
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
