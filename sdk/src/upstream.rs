//! Talking to an upstream API through the host's `http` capability, with
//! failures mapped to the [`PluginError`] a user or operator can act on.

use serde::de::DeserializeOwned;

use crate::context::ProviderContext;
use crate::http::{HttpError, Request, Response};
use crate::secrets::SecretError;
use crate::types::{LogLevel, PluginError, RateLimit, UpstreamFailure};

/// An [`PluginError::Upstream`] from `service`.
pub fn failure(service: &str, status: Option<u16>, message: impl Into<String>) -> PluginError {
    PluginError::Upstream(UpstreamFailure {
        service: service.into(),
        status,
        message: message.into(),
    })
}

/// Maps a failed request: a refused grant is the operator's to fix, the rest is the upstream's.
pub fn http_error(service: &str, url: &str, e: HttpError) -> PluginError {
    match e {
        HttpError::HostNotGranted(h) => PluginError::InvalidConfig(format!(
            "{service}: this plugin may not reach {h}; add it to the plugin's `hosts` in the Bindery configuration"
        )),
        HttpError::AddressDenied(a) => PluginError::InvalidConfig(format!(
            "{service}: {url} resolves to a non-public address ({a}); grant it in the plugin's `private_networks` if it is meant to be reached"
        )),
        HttpError::InvalidUrl(u) => failure(
            service,
            None,
            format!("cannot request {u}: not an http(s) URL"),
        ),
        HttpError::Timeout => failure(service, None, format!("{url} did not answer in time")),
        HttpError::TooLarge(n) => failure(
            service,
            None,
            format!("the answer from {url} is larger than {n} bytes"),
        ),
        HttpError::Connect(m) => failure(service, None, format!("cannot reach {url}: {m}")),
        HttpError::RedirectLoop => {
            failure(service, None, format!("{url} redirects too many times"))
        }
    }
}

/// Sends `request`, mapping transport failures with [`http_error`]. Any status comes back.
pub fn send(
    ctx: &impl ProviderContext,
    service: &str,
    request: &Request,
) -> Result<Response, PluginError> {
    ctx.fetch(request)
        .map_err(|e| http_error(service, &request.url, e))
}

/// A rate-limit refusal, recognised as GitHub, GitLab and Software Heritage
/// send it: 403 or 429 with `x-ratelimit-remaining: 0` and an epoch
/// `x-ratelimit-reset`, or 429 (or 403) with `Retry-After` seconds. The message
/// is upstream BinderHub's: "{service} rate limit exceeded. Try again in N
/// minutes.", N rounded up to the next 5 minutes.
pub fn rate_limit(
    ctx: &impl ProviderContext,
    service: &str,
    response: &Response,
) -> Option<PluginError> {
    if !matches!(response.status, 403 | 429) {
        return None;
    }
    let number = |name: &str| {
        response
            .header(name)
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let now_secs = ctx.now_ms() / 1000;
    let secs = if number("x-ratelimit-remaining") == Some(0) {
        number("x-ratelimit-reset").map_or(60, |reset| reset.saturating_sub(now_secs))
    } else if let Some(after) = number("retry-after") {
        after
    } else if response.status == 429 {
        60
    } else {
        return None;
    };
    let minutes = 5 * (1 + secs / 60 / 5);
    ctx.log(
        LogLevel::Error,
        &format!("{service} rate limit exceeded; it resets in {secs}s"),
    );
    Some(PluginError::RateLimited(RateLimit {
        retry_after_secs: secs,
        message: format!("{service} rate limit exceeded. Try again in {minutes} minutes."),
    }))
}

/// Logs the remaining `x-ratelimit-*` budget, louder as it runs out.
pub fn log_rate_limit(ctx: &impl ProviderContext, service: &str, response: &Response) {
    let number = |name: &str| {
        response
            .header(name)
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    if let (Some(remaining), Some(limit)) =
        (number("x-ratelimit-remaining"), number("x-ratelimit-limit"))
    {
        let level = match remaining * 10 / limit.max(1) {
            0 | 1 => LogLevel::Warn,
            2..=4 => LogLevel::Info,
            _ => LogLevel::Debug,
        };
        ctx.log(
            level,
            &format!("{service} rate limit remaining {remaining}/{limit}"),
        );
    }
}

/// The error for an unexpected status: a rate limit (see [`rate_limit`]), 401
/// and 403 are credentials, the rest an upstream failure.
pub fn status_error(ctx: &impl ProviderContext, service: &str, response: &Response) -> PluginError {
    if let Some(limited) = rate_limit(ctx, service, response) {
        return limited;
    }
    match response.status {
        401 | 403 => PluginError::Unauthorized(format!(
            "{service} refused the request ({}); check the credentials configured for this provider",
            response.status
        )),
        status => failure(
            service,
            Some(status),
            format!("{} answered {status}", response.final_url),
        ),
    }
}

/// A secret the plugin can do without: absent when not granted; a granted
/// secret with no value is logged, since the operator meant to set it.
pub fn optional_secret(ctx: &impl ProviderContext, name: &str) -> Option<String> {
    match ctx.secret(name) {
        Ok(v) if !v.is_empty() => Some(v),
        Ok(_) | Err(SecretError::NotGranted(_)) => None,
        Err(SecretError::Missing(m)) => {
            ctx.warn(&format!(
                "secret `{name}` is granted but has no value ({m}); going on without it"
            ));
            None
        }
    }
}

/// Seconds since the Unix epoch of an ISO 8601 UTC time such as
/// `2019-09-16T17:39:17.593906Z`; fractions and the zone suffix are ignored,
/// as upstream BinderHub ignores them.
pub fn iso8601_epoch(s: &str) -> Option<i64> {
    let s = s.get(..19)?;
    let b = s.as_bytes();
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hh, mm, ss) = (n(11..13)?, n(14..16)?, n(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Parses a JSON body into `T`; a body of another shape is an upstream failure.
pub fn json<T: DeserializeOwned>(service: &str, response: &Response) -> Result<T, PluginError> {
    serde_json::from_slice(&response.body).map_err(|e| {
        failure(
            service,
            Some(response.status),
            format!("unexpected answer from {}: {e}", response.final_url),
        )
    })
}

/// Basic authentication of the host's fetch with `username` and the secret
/// `secret` as the password, when that secret is granted and set. The plugin
/// names the secret; the host reads it, so its value is in no content source.
pub fn basic_auth(
    ctx: &impl ProviderContext,
    username: &str,
    secret: &str,
) -> Option<crate::provider::BasicAuth> {
    optional_secret(ctx, secret).map(|_| crate::provider::BasicAuth {
        username: username.into(),
        password_secret: secret.into(),
    })
}

/// GETs `url` as JSON (`Accept: application/json`, redirects followed) and
/// parses the answer into `T`. A 404 is [`PluginError::NotFound`] with
/// `missing` as its hint; any other non-2xx status is [`status_error`].
pub fn get_json<T: DeserializeOwned>(
    ctx: &impl ProviderContext,
    service: &str,
    url: &str,
    missing: &str,
) -> Result<T, PluginError> {
    let request = Request::get(url).header("Accept", "application/json");
    let response = send(ctx, service, &request)?;
    match response.status {
        200..=299 => json(service, &response),
        404 => Err(PluginError::NotFound(missing.into())),
        _ => Err(status_error(ctx, service, &response)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MockContext;

    fn response(status: u16, headers: &[(&str, &str)]) -> Response {
        Response {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            body: vec![],
            final_url: "https://api.example.org/x".into(),
            revalidated: false,
        }
    }

    #[test]
    fn github_style_rate_limits_round_up_to_five_minutes() {
        let ctx = MockContext::new().with_now_ms(1_000_000_000_000);
        let r = response(
            403,
            &[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "1000000420"),
            ],
        );
        match status_error(&ctx, "GitHub", &r) {
            PluginError::RateLimited(l) => {
                assert_eq!(l.retry_after_secs, 420);
                assert_eq!(
                    l.message,
                    "GitHub rate limit exceeded. Try again in 10 minutes."
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            status_error(&ctx, "GitHub", &response(403, &[])),
            PluginError::Unauthorized(_)
        ));
        assert!(matches!(
            status_error(&ctx, "X", &response(429, &[("retry-after", "5")])),
            PluginError::RateLimited(_)
        ));
        assert!(matches!(
            status_error(&ctx, "X", &response(500, &[])),
            PluginError::Upstream(_)
        ));
    }

    #[test]
    fn iso_dates() {
        assert_eq!(iso8601_epoch("1970-01-01T00:00:00"), Some(0));
        assert_eq!(
            iso8601_epoch("2019-09-16T17:39:17.593906Z"),
            Some(1_568_655_557)
        );
        assert_eq!(iso8601_epoch("2000-02-29T12:00:00"), Some(951_825_600));
        assert_eq!(iso8601_epoch("2019-13-01T00:00:00"), None);
        assert_eq!(iso8601_epoch("yesterday"), None);
    }
}
