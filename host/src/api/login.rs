//! Logging in through JupyterHub (authenticated mode), as upstream's
//! `HubOAuth` does it: Bindery is the hub's OAuth client. A browser without
//! a session is sent to the hub's authorize page and comes back to
//! `oauth_callback` with a code, which Bindery exchanges (its service token
//! is the client secret) for a token of the user's. The session cookie
//! carries that token, signed; each use asks the hub whose it is (the answer
//! cached a few minutes, as upstream's `cache_max_age`), so a token the hub
//! revokes ends the session. Requests made with the cookie must also carry
//! the session's XSRF token (`_xsrf` or `X-XSRFToken`), which only Bindery's
//! own pages can read.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, OriginalUri, Query, State};
use axum::http::header::{COOKIE, LOCATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cookie::{Cookie, SameSite};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use url::Url;

use super::AppState;
use crate::config::HubConfig;
use crate::jupyterhub::{Hub, HubError};

/// The session cookie: the user's hub token, signed.
const SESSION: &str = "bindery-session";
/// The login in progress: where to return, and the `state` the hub echoes.
const LOGIN: &str = "bindery-oauth-state";
/// Upstream's XSRF cookie, which its JavaScript client reads.
const XSRF: &str = "_xsrf";
/// A login not finished within this is started again.
const LOGIN_SECS: u64 = 600;
/// Sessions last this long at most, whatever the hub's token says.
const SESSION_SECS: u64 = 14 * 24 * 3600;
/// How long the hub's word on a token is trusted (upstream's `cache_max_age`).
const CHECKED_FOR: Duration = Duration::from_secs(300);
/// Tokens whose owner is remembered; beyond this the oldest are forgotten.
const REMEMBERED: usize = 10_000;

/// What a login ended with, or why a request is not logged in.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// No session, or one that is expired, forged or revoked.
    #[error("not logged in")]
    NoSession,
    /// A request made with the session cookie but without its XSRF token.
    #[error(
        "'_xsrf' argument missing from the request, or it does not match the session's: reload the page"
    )]
    Xsrf,
    /// The hub's callback does not belong to the login this browser started.
    #[error(
        "this login was not started here, or took longer than {LOGIN_SECS} s: open the page again to log in"
    )]
    State,
    /// The hub refused the code, or could not be asked.
    #[error("JupyterHub did not complete the login: {0}")]
    Hub(#[from] HubError),
}

#[derive(Serialize, Deserialize)]
struct SessionClaims {
    aud: String,
    exp: u64,
    /// The hub user.
    sub: String,
    /// Their token, from the OAuth exchange.
    tok: String,
    xsrf: String,
}

#[derive(Serialize, Deserialize)]
struct LoginClaims {
    aud: String,
    exp: u64,
    state: String,
    /// The path to return to, under `base_url`.
    next: String,
}

/// A request's logged-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The hub user's name.
    pub user: String,
    /// The session's XSRF token, for the page to send back.
    pub xsrf: String,
}

/// The logged-in user, for the extractors that run after the one that
/// found them (the rate limit counts users, not addresses).
#[derive(Clone)]
pub(super) struct LoggedIn(pub(super) String);

/// A page's visitor: in authenticated mode, logged in (else sent to log in
/// first); `None` otherwise.
pub(super) struct Visitor(pub(super) Option<Session>);

impl FromRequestParts<AppState> for Visitor {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Some(login) = &state.web.login else {
            return Ok(Visitor(None));
        };
        match login.session(&parts.headers).await {
            Ok(session) => {
                parts.extensions.insert(LoggedIn(session.user.clone()));
                Ok(Visitor(Some(session)))
            }
            Err(LoginError::Hub(e)) => Err((
                StatusCode::SERVICE_UNAVAILABLE,
                format!("Cannot check the login with the hub: {e}"),
            )
                .into_response()),
            Err(_) => {
                let peer = parts
                    .extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |c| c.0.ip());
                let base = super::request_base(state, &parts.headers, peer);
                // The path as the browser asked for it, `base_url` and all.
                let uri = parts
                    .extensions
                    .get::<OriginalUri>()
                    .map_or(&parts.uri, |o| &o.0);
                let next = uri.path_and_query().map_or("/", |p| p.as_str());
                Err(login.start(&base, next))
            }
        }
    }
}

/// The OAuth client and its sessions.
pub struct Login {
    hub: Arc<Hub>,
    client_id: String,
    redirect_uri: Option<Url>,
    base_url: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    owners: Mutex<HashMap<[u8; 32], (String, Instant)>>,
}

impl Login {
    /// The login `hub` runs, its cookies signed with a key derived from
    /// `secret` (the build tokens' key, so replicas that share one share
    /// sessions).
    pub fn new(hub: Arc<Hub>, config: &HubConfig, base_url: &str, secret: &[u8]) -> Login {
        let key = Sha256::new()
            .chain_update(b"bindery login session\0")
            .chain_update(secret)
            .finalize();
        Login {
            hub,
            client_id: config.oauth_client_id.clone(),
            redirect_uri: config.oauth_redirect_uri.clone(),
            base_url: base_url.into(),
            encoding: EncodingKey::from_secret(&key),
            decoding: DecodingKey::from_secret(&key),
            owners: Mutex::default(),
        }
    }

    /// The hub user a token belongs to, from the cache or the hub.
    pub async fn owner(&self, token: &str) -> Result<Option<String>, HubError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some((user, at)) = self.owners.lock().expect("owners").get(&key)
            && at.elapsed() < CHECKED_FOR
        {
            return Ok(Some(user.clone()));
        }
        let user = self.hub.whoami(token).await?;
        let mut owners = self.owners.lock().expect("owners");
        match &user {
            Some(user) => {
                if owners.len() >= REMEMBERED {
                    owners.retain(|_, (_, at)| at.elapsed() < CHECKED_FOR);
                }
                if owners.len() < REMEMBERED {
                    owners.insert(key, (user.clone(), Instant::now()));
                }
            }
            None => {
                owners.remove(&key);
            }
        }
        Ok(user)
    }

    /// The session the request's cookie holds, checked with the hub.
    pub async fn session(&self, headers: &HeaderMap) -> Result<Session, LoginError> {
        let claims = cookie(headers, SESSION)
            .and_then(|c| self.decode::<SessionClaims>(&c, SESSION))
            .ok_or(LoginError::NoSession)?;
        match self.owner(&claims.tok).await? {
            Some(user) if user == claims.sub => Ok(Session {
                user,
                xsrf: claims.xsrf,
            }),
            _ => Err(LoginError::NoSession),
        }
    }

    /// The session, for a request that acts (`/build`): its XSRF token must
    /// come with it, as `_xsrf` in the query or an `X-XSRFToken` header.
    pub async fn acting_session(&self, parts: &Parts) -> Result<Session, LoginError> {
        let session = self.session(&parts.headers).await?;
        let header = parts
            .headers
            .get("x-xsrftoken")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let sent = header.or_else(|| {
            Query::<XsrfQuery>::try_from_uri(&parts.uri)
                .ok()
                .and_then(|q| q.0._xsrf)
        });
        match sent {
            Some(sent) if same(sent.as_bytes(), session.xsrf.as_bytes()) => Ok(session),
            _ => Err(LoginError::Xsrf),
        }
    }

    /// Sends the browser to the hub's login, to come back to `next` (a path
    /// of this service's).
    pub fn start(&self, base: &str, next: &str) -> Response {
        let state = random_token();
        let redirect = self.redirect_uri(base);
        let mut authorize = self.hub.authorize_url();
        authorize
            .query_pairs_mut()
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", redirect.as_str())
            .append_pair("response_type", "code")
            .append_pair("state", &state);
        // Only a path of this origin: `//elsewhere` would leave it.
        let next = if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') {
            next
        } else {
            &self.base_url
        };
        let claims = LoginClaims {
            aud: LOGIN.into(),
            exp: now() + LOGIN_SECS,
            state,
            next: next.into(),
        };
        let secure = redirect.scheme() == "https";
        let mut response = (StatusCode::FOUND, [(LOCATION, authorize.to_string())]).into_response();
        self.set_cookie(
            &mut response,
            LOGIN,
            self.encode(&claims),
            LOGIN_SECS,
            true,
            secure,
        );
        response
    }

    /// The hub's redirect back: the code exchanged for the user's token,
    /// the session cookie set, the browser sent where it was going.
    pub async fn finish(
        &self,
        headers: &HeaderMap,
        base: &str,
        code: &str,
        state: &str,
    ) -> Result<Response, LoginError> {
        let login = cookie(headers, LOGIN)
            .and_then(|c| self.decode::<LoginClaims>(&c, LOGIN))
            .filter(|l| same(l.state.as_bytes(), state.as_bytes()))
            .ok_or(LoginError::State)?;
        let redirect = self.redirect_uri(base);
        let granted = self
            .hub
            .oauth_token(&self.client_id, code, redirect.as_str())
            .await?;
        let user = self.owner(&granted.token).await?.ok_or_else(|| {
            LoginError::Hub(HubError::Invalid {
                what: "GET user".into(),
                reason: "the token the login gave is not a user's".into(),
            })
        })?;
        let lifetime = granted
            .expires_in
            .filter(|s| *s > 0)
            .map_or(SESSION_SECS, |s| s.min(SESSION_SECS));
        let xsrf = random_token();
        let claims = SessionClaims {
            aud: SESSION.into(),
            exp: now() + lifetime,
            sub: user.clone(),
            tok: granted.token,
            xsrf: xsrf.clone(),
        };
        tracing::info!(user, "logged in through the hub");
        let secure = redirect.scheme() == "https";
        let mut response = (StatusCode::FOUND, [(LOCATION, login.next)]).into_response();
        self.set_cookie(
            &mut response,
            SESSION,
            self.encode(&claims),
            lifetime,
            true,
            secure,
        );
        // Readable by scripts: upstream's client sends it back as a header.
        self.set_cookie(&mut response, XSRF, xsrf, lifetime, false, secure);
        self.set_cookie(&mut response, LOGIN, String::new(), 0, true, secure);
        Ok(response)
    }

    /// Where the hub sends the browser back: `hub.oauth_redirect_uri`, else
    /// `oauth_callback` under `base`, the address the request came to.
    fn redirect_uri(&self, base: &str) -> Url {
        self.redirect_uri.clone().unwrap_or_else(|| {
            Url::parse(&format!("{base}oauth_callback"))
                .unwrap_or_else(|_| Url::parse("http://localhost/oauth_callback").expect("url"))
        })
    }

    fn encode<T: Serialize>(&self, claims: &T) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    fn decode<T: for<'de> Deserialize<'de>>(&self, token: &str, audience: &str) -> Option<T> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[audience]);
        validation.leeway = 0;
        jsonwebtoken::decode::<T>(token, &self.decoding, &validation)
            .ok()
            .map(|d| d.claims)
    }

    fn set_cookie(
        &self,
        response: &mut Response,
        name: &'static str,
        value: String,
        max_age: u64,
        http_only: bool,
        secure: bool,
    ) {
        let cookie = Cookie::build((name, value))
            .path(self.base_url.clone())
            .http_only(http_only)
            .secure(secure)
            .same_site(SameSite::Lax)
            .max_age(cookie::time::Duration::seconds(
                i64::try_from(max_age).unwrap_or(i64::MAX),
            ))
            .build();
        if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
            response.headers_mut().append(SET_COOKIE, value);
        }
    }
}

#[derive(Deserialize)]
struct XsrfQuery {
    _xsrf: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `oauth_callback`: where the hub sends the browser after its login.
pub(super) async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(callback): Query<Callback>,
) -> Response {
    let Some(login) = &state.web.login else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (Some(code), Some(oauth_state)) = (callback.code, callback.state) else {
        let why = callback
            .error
            .unwrap_or_else(|| "no code in the hub's answer".into());
        return (
            StatusCode::BAD_REQUEST,
            format!("JupyterHub did not complete the login: {why}"),
        )
            .into_response();
    };
    let base = super::request_base(&state, &headers, peer.ip());
    match login.finish(&headers, &base, &code, &oauth_state).await {
        Ok(response) => response,
        Err(e @ LoginError::State) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        Err(e) => {
            tracing::warn!("a login failed: {e}");
            (StatusCode::FORBIDDEN, e.to_string()).into_response()
        }
    }
}

/// The value of cookie `name` in the request.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
}

/// Compares secrets in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random_token() -> String {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).expect("the system's random source");
    hex::encode(bytes)
}

fn now() -> u64 {
    crate::now_ms() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(secret: &[u8]) -> Login {
        let token = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(token.path(), "service-token").unwrap();
        let config = HubConfig {
            url: Some("http://hub.example/".parse().unwrap()),
            api_token: Some(crate::config::SecretSource::File(token.path().into())),
            ..HubConfig::default()
        };
        let hub = Hub::new(&config).unwrap().unwrap();
        Login::new(Arc::new(hub), &config, "/binder/", secret)
    }

    fn location(response: &Response) -> String {
        response.headers()[LOCATION].to_str().unwrap().to_string()
    }

    fn set_cookies(response: &Response) -> Vec<Cookie<'static>> {
        response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| Cookie::parse(v.to_str().unwrap().to_string()).unwrap())
            .collect()
    }

    #[test]
    fn a_login_goes_to_the_hubs_authorize_page_and_remembers_where_it_was_going() {
        let l = login(b"k");
        let response = l.start(
            "https://binder.example/binder/",
            "/binder/v2/gh/a/b/HEAD?x=1",
        );
        let to = Url::parse(&location(&response)).unwrap();
        assert_eq!(to.path(), "/hub/api/oauth2/authorize");
        let query: HashMap<_, _> = to.query_pairs().into_owned().collect();
        assert_eq!(query["client_id"], "service-binder");
        assert_eq!(
            query["redirect_uri"],
            "https://binder.example/binder/oauth_callback"
        );
        assert_eq!(query["response_type"], "code");
        let cookies = set_cookies(&response);
        assert_eq!(cookies.len(), 1);
        let state = &cookies[0];
        assert_eq!(state.name(), LOGIN);
        assert_eq!(state.path(), Some("/binder/"));
        assert_eq!(state.http_only(), Some(true));
        assert_eq!(state.secure(), Some(true), "the callback is https");
        let claims: LoginClaims = l.decode(state.value(), LOGIN).unwrap();
        assert_eq!(claims.state, query["state"]);
        assert_eq!(claims.next, "/binder/v2/gh/a/b/HEAD?x=1");
    }

    #[test]
    fn a_login_returns_only_to_a_path_of_this_origin() {
        let l = login(b"k");
        for next in [
            "//evil.example/x",
            "/\\evil.example",
            "https://evil.example/",
        ] {
            let response = l.start("http://b.example/binder/", next);
            let claims: LoginClaims = l.decode(set_cookies(&response)[0].value(), LOGIN).unwrap();
            assert_eq!(claims.next, "/binder/", "{next}");
        }
    }

    #[test]
    fn sessions_are_only_what_this_key_signed_for_sessions() {
        let l = login(b"k");
        let session = SessionClaims {
            aud: SESSION.into(),
            exp: now() + 60,
            sub: "alice".into(),
            tok: "t".into(),
            xsrf: "x".into(),
        };
        let signed = l.encode(&session);
        assert!(l.decode::<SessionClaims>(&signed, SESSION).is_some());
        assert!(
            login(b"other")
                .decode::<SessionClaims>(&signed, SESSION)
                .is_none(),
            "another key"
        );
        assert!(
            l.decode::<SessionClaims>(&signed, LOGIN).is_none(),
            "a session is not a login state"
        );
        let state = l.encode(&LoginClaims {
            aud: LOGIN.into(),
            exp: now() + 60,
            state: "s".into(),
            next: "/".into(),
        });
        assert!(
            l.decode::<SessionClaims>(&state, SESSION).is_none(),
            "a login state is not a session"
        );
        let expired = l.encode(&SessionClaims {
            exp: now() - 1,
            ..session
        });
        assert!(l.decode::<SessionClaims>(&expired, SESSION).is_none());
        let mut tampered = signed.clone();
        tampered.insert(signed.find('.').unwrap() + 3, 'A');
        assert!(l.decode::<SessionClaims>(&tampered, SESSION).is_none());
    }

    #[test]
    fn cookies_are_read_from_any_cookie_header() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1; _xsrf=abc"));
        headers.append(COOKIE, HeaderValue::from_static("bindery-session=s.t.u"));
        assert_eq!(cookie(&headers, XSRF).as_deref(), Some("abc"));
        assert_eq!(cookie(&headers, SESSION).as_deref(), Some("s.t.u"));
        assert_eq!(cookie(&headers, LOGIN), None);
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
    }
}
