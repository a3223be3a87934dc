//! `[web]`: the HTTP surface: paths, CORS, bans, the rate limit and build tokens.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::SecretSource;

/// The HTTP surface (upstream's `BinderHub` web settings).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Path every route sits under; starts and ends with `/`.
    pub base_url: String,
    /// Base of badge and launch links (`binder_launch_host`); default
    /// `{proto}://{host}{base_url}` of the request.
    pub badge_base_url: Option<String>,
    /// `Access-Control-Allow-Origin` on every answer (mybinder.org: `*`).
    pub cors_allow_origin: Option<String>,
    /// Serve only `/build`, `/versions`, `/health`, `/metrics` and
    /// `/api/repoproviders`, and allow `build_only=true`.
    pub api_only: bool,
    /// Client networks refused with 403, each with the label the message names.
    pub ban_networks: Vec<BanNetwork>,
    /// Proxies whose `X-Forwarded-For` is believed; from anyone else the
    /// connection's own address is the client's.
    #[schemars(with = "Vec<String>")]
    pub trusted_proxies: Vec<IpNet>,
    /// Launches per client address per window; `limit = 0` turns it off.
    pub rate_limit: RateLimitConfig,
    /// HS256 key of build tokens (hex); a random one per start when unset,
    /// which replicas behind one load balancer must not rely on.
    pub build_token_secret: Option<SecretSource>,
    /// Refuse a build token used from another origin than it was issued to.
    pub build_token_check_origin: bool,
    /// Seconds between `:keepalive` comments on an event stream.
    pub keepalive_secs: u64,
    /// A client must send a request's headers within this many seconds, so
    /// a connection that trickles them (slowloris) is closed.
    pub header_read_timeout_secs: u64,
    /// Connections open at once; more wait to be accepted. Each event
    /// stream holds one for its launch.
    pub max_connections: usize,
    /// Text above the launch form (HTML, trusted: it is the operator's).
    pub banner_html: String,
    /// What the About page (`/about`) says of this deployment: who runs it,
    /// its terms, where to ask (HTML, trusted; upstream's `about_message`).
    pub about_message: String,
    /// The pages' footer (HTML, trusted); empty: Bindery's version and a
    /// link to the About page.
    pub footer_html: String,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            base_url: "/".into(),
            badge_base_url: None,
            cors_allow_origin: None,
            api_only: false,
            ban_networks: Vec::new(),
            trusted_proxies: vec![
                "127.0.0.0/8".parse().expect("net"),
                "::1/128".parse().expect("net"),
            ],
            rate_limit: RateLimitConfig::default(),
            build_token_secret: None,
            build_token_check_origin: true,
            keepalive_secs: 25,
            header_read_timeout_secs: 10,
            max_connections: 1_500,
            banner_html: String::new(),
            about_message: String::new(),
            footer_html: String::new(),
        }
    }
}

/// A client network refused with `Requests from {label} are not allowed`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BanNetwork {
    /// The network, e.g. `192.0.2.0/24`.
    #[schemars(with = "String")]
    pub network: IpNet,
    /// What the refusal calls it.
    pub label: String,
}

/// Upstream's per-address fixed-window limiter.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Requests per window; 0 turns the limiter off.
    pub limit: u32,
    /// The window.
    pub period_secs: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            limit: 10,
            period_secs: 3600,
        }
    }
}
