//! The web pages: the launch form (`/` and every unknown path, as upstream's
//! single-page app), the launch page `/v2/<provider>/<spec>` with its build
//! token, the legacy `/repo/` redirect, the badges and the social-card logo
//! (drawn for Bindery). One small HTML file
//! with plain JavaScript: no framework, nothing fetched from elsewhere.

use std::net::SocketAddr;
use std::sync::LazyLock;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::build::MayHaveToken;
use super::login::Visitor;
use super::{AppState, providers};

const PAGE: &str = include_str!("assets/page.html");
const BADGE: &str = include_str!("assets/badge.svg");
const BADGE_LOGO: &str = include_str!("assets/badge_logo.svg");
const LOGO: &str = include_str!("assets/logo.svg");
const LOGO_SOCIAL: &[u8] = include_bytes!("assets/logo_social.png");

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v2/{provider}/{*spec}", get(launch_page))
        .route("/repo/{user}/{repo}", get(legacy))
        .route("/repo/{user}/{repo}/", get(legacy))
        .route("/repo/{user}/{repo}/{*path}", get(legacy))
        .route("/badge.svg", get(|| async { asset(SVG, BADGE.as_bytes()) }))
        .route(
            "/assets/images/badge.svg",
            get(|| async { asset(SVG, BADGE.as_bytes()) }),
        )
        .route(
            "/badge_logo.svg",
            get(|| async { asset(SVG, BADGE_LOGO.as_bytes()) }),
        )
        .route("/logo.svg", get(|| async { asset(SVG, LOGO.as_bytes()) }))
        .route(
            "/logo_social.png",
            get(|| async { asset("image/png", LOGO_SOCIAL) }),
        )
        .fallback(get(form_page))
}

const SVG: &str = "image/svg+xml";

fn asset(content_type: &'static str, body: &'static [u8]) -> Response {
    (
        [
            (CONTENT_TYPE, content_type),
            (CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response()
}

/// Who asks for a page, and for what: the public base URL previews link
/// to, and the launch (provider, raw spec) on `/v2/…`.
struct Asked<'a> {
    visitor: &'a Visitor,
    public_base: String,
    launch: Option<(&'a str, &'a str)>,
}

impl<'a> Asked<'a> {
    fn new(state: &AppState, visitor: &'a Visitor, headers: &HeaderMap, peer: SocketAddr) -> Self {
        Asked {
            visitor,
            public_base: super::launch_host(state, headers, peer.ip()),
            launch: None,
        }
    }
}

fn page(state: &AppState, asked: &Asked, build_token: Option<String>) -> Response {
    let web = &state.config.web;
    let providers = providers::list(state);
    let social = social_tags(&asked.public_base, asked.launch, &providers);
    let mut config = json!({
        "baseUrl": web.base_url,
        "badgeBaseUrl": web.badge_base_url.clone().unwrap_or_default(),
        "logoUrl": format!("{}logo.svg", web.base_url),
        "logoWidth": "28px",
        "repoProviders": providers,
        "aboutMessage": web.about_message,
        "bannerHtml": web.banner_html,
        "footerHtml": web.footer_html,
        "binderVersion": crate::VERSION,
    });
    if let Some(token) = build_token {
        config["buildToken"] = Value::String(token);
    }
    // A logged-in visitor's `/build` request proves it comes from this page.
    if let Visitor(Some(session)) = asked.visitor {
        config["xsrf"] = Value::String(session.xsrf.clone());
    }
    // `<` escaped so nothing in a spec can close the script element.
    let script = format!(
        "window.pageConfig = {};",
        config.to_string().replace('<', "\\u003c")
    );
    let policy = format!(
        "default-src 'none'; script-src '{}' '{}'; {POLICY_REST}",
        script_hash(&script),
        *APP_SCRIPT_HASH
    );
    (
        [(CONTENT_SECURITY_POLICY, policy)],
        Html(
            PAGE.replace("__PAGE_CONFIG__", &script)
                .replace("__SOCIAL__", &social),
        ),
    )
        .into_response()
}

/// Link previews, which crawlers read without running script: upstream's
/// Open Graph and Twitter card tags, titled "<provider>: <spec>" on a
/// launch page.
fn social_tags(public_base: &str, launch: Option<(&str, &str)>, providers: &[Value]) -> String {
    let title = match launch {
        Some((id, spec)) => {
            let name = providers
                .iter()
                .find(|p| p["id"] == id)
                .and_then(|p| p["displayName"].as_str())
                .unwrap_or(id);
            format!("{name}: {}", percent_decode_str(spec).decode_utf8_lossy())
        }
        None => "Binder".into(),
    };
    let tags = [
        ("property", "og:title", title.as_str()),
        ("property", "og:description", SOCIAL_DESCRIPTION),
        (
            "property",
            "og:image",
            &format!("{public_base}logo_social.png"),
        ),
        ("property", "og:image:width", "160"),
        ("property", "og:image:height", "160"),
        ("property", "og:image:alt", "The Binder Project logo"),
        ("name", "twitter:card", "summary"),
    ];
    tags.iter()
        .map(|(attribute, name, content)| {
            format!(
                "<meta {attribute}=\"{name}\" content=\"{}\">",
                escape(content)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

const SOCIAL_DESCRIPTION: &str = "Click to run this interactive environment. From the Binder Project: Reproducible, sharable, interactive computing environments.";

/// Text as an HTML attribute value.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The pages' Content-Security-Policy lets two scripts run, by their
/// hashes: the page's configuration, in `<head>` where upstream's is, and
/// the application. Nothing else runs in Bindery's origin: not a
/// `javascript:` URL, not a script in the operator's banner or in anything
/// a link carries.
const POLICY_REST: &str = "style-src 'unsafe-inline'; img-src * data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'";

static APP_SCRIPT_HASH: LazyLock<String> = LazyLock::new(|| {
    let body = PAGE.split("<body>").nth(1).expect("the page has a body");
    let script = body
        .split("<script>")
        .nth(1)
        .and_then(|s| s.split("</script>").next())
        .expect("the page has its script");
    script_hash(script)
});

fn script_hash(script: &str) -> String {
    let digest = Sha256::digest(script);
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// Upstream serves its single-page app, 200, for every other path.
/// In authenticated mode, only for a logged-in visitor.
async fn form_page(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    visitor: Visitor,
) -> Response {
    page(&state, &Asked::new(&state, &visitor, &headers, peer), None)
}

async fn launch_page(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    visitor: Visitor,
    MayHaveToken(may): MayHaveToken,
) -> Response {
    let mut asked = Asked::new(&state, &visitor, &headers, peer);
    // The token's audience is the raw path, as the page's /build request will send it.
    let Some(audience) = uri.path().strip_prefix("/v2/") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (provider, spec) = audience.split_once('/').unwrap_or((audience, ""));
    if !state.resolver.knows(provider).await {
        return (StatusCode::NOT_FOUND, page(&state, &asked, None)).into_response();
    }
    asked.launch = Some((provider, spec));
    // Over the limit, the page goes without a token, and its `/build`
    // request hears why from the rate limit.
    let token = may.then(|| {
        state
            .web
            .tokens
            .issue(audience, &super::build::request_origin(&headers))
    });
    page(&state, &asked, token)
}

/// `/repo/<user>/<repo>[/path]` → `/v2/gh/<user>/<repo>/master`, with the
/// path (decoded, leading `/` kept) as `urlpath`, encoded as Python's
/// `urlencode`, and without `base_url`: upstream's `LegacyRedirectHandler`.
async fn legacy(uri: Uri) -> Response {
    let mut parts = uri.path().trim_start_matches('/').splitn(4, '/').skip(1);
    let (user, repo) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let mut target = format!("/v2/gh/{user}/{repo}/master");
    let path = parts
        .next()
        .map(|p| percent_decode_str(p).decode_utf8_lossy());
    if let Some(path) = path.filter(|p| !p.trim_matches('/').is_empty()) {
        target.push_str("?urlpath=");
        target.push_str(&quote_plus(&format!("/{path}")));
    }
    (StatusCode::FOUND, [(LOCATION, target)]).into_response()
}

/// Python's `urllib.parse.quote_plus`: all but letters, digits and `_.-~`
/// percent-encoded, spaces as `+`.
fn quote_plus(value: &str) -> String {
    const RESERVED: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'_')
        .remove(b'.')
        .remove(b'-')
        .remove(b'~');
    utf8_percent_encode(value, RESERVED)
        .to_string()
        .replace("%20", "+")
}
