//! The `http` capability: outbound requests through the host's client.
//!
//! Each plugin gets its own client whose DNS resolver applies the plugin's
//! egress policy, so the addresses checked are the addresses connected to.
//! Redirects are followed here, hop by hop, under the same rules. Bodies are
//! capped while they stream in. Successful GETs with an ETag are cached and
//! revalidated with `If-None-Match`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use url::Url;

use super::CallState;
use crate::bindings::http::{Host, HttpError, Method, Request, Response};
use crate::config::HttpLimits;
use crate::egress::{EgressDenied, EgressPolicy, PolicyResolver};
use crate::limits::CallLimits;

/// Cached bodies larger than this are not kept.
const MAX_CACHED_BODY: usize = 256 * 1024;

pub(super) struct HttpClient {
    /// Built at first use: loading the TLS roots costs tens of milliseconds,
    /// which plugins that never fetch should not add to start-up.
    client: std::sync::OnceLock<Result<reqwest::Client, String>>,
    user_agent: String,
    egress: Arc<EgressPolicy>,
    limits: HttpLimits,
    etags: Mutex<EtagCache>,
    /// The latest `x-ratelimit-remaining` an upstream answered with (a
    /// forge API's request budget); `u64::MAX` before any.
    rate_limit_remaining: AtomicU64,
}

impl HttpClient {
    pub(super) fn new(plugin: &str, egress: Arc<EgressPolicy>, limits: &HttpLimits) -> Self {
        HttpClient {
            client: std::sync::OnceLock::new(),
            user_agent: format!("bindery/{} (plugin {plugin})", env!("CARGO_PKG_VERSION")),
            egress,
            limits: limits.clone(),
            etags: Mutex::new(EtagCache::new(
                limits.etag_cache_entries,
                usize::try_from(limits.etag_cache_mib.saturating_mul(1 << 20))
                    .unwrap_or(usize::MAX),
            )),
            rate_limit_remaining: AtomicU64::new(u64::MAX),
        }
    }

    /// The latest `x-ratelimit-remaining` this plugin's upstream sent.
    pub(super) fn rate_limit_remaining(&self) -> Option<u64> {
        Some(self.rate_limit_remaining.load(Ordering::Relaxed)).filter(|&n| n != u64::MAX)
    }

    fn client(&self) -> Result<&reqwest::Client, HttpError> {
        self.client
            .get_or_init(|| {
                reqwest::Client::builder()
                    // A proxy would connect on our behalf to addresses we never checked.
                    .no_proxy()
                    .redirect(reqwest::redirect::Policy::none())
                    .connect_timeout(Duration::from_millis(
                        self.limits.default_timeout_ms.min(10_000),
                    ))
                    .user_agent(self.user_agent.clone())
                    .dns_resolver(PolicyResolver(self.egress.clone()))
                    .build()
                    .map_err(|e| format!("cannot build the HTTP client: {e}"))
            })
            .as_ref()
            .map_err(|e| HttpError::Connect(e.clone()))
    }

    /// Checks a URL's scheme and host before any connection.
    fn check_url(&self, url: &str) -> Result<Url, HttpError> {
        let url = Url::parse(url).map_err(|e| HttpError::InvalidUrl(format!("{url}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HttpError::InvalidUrl(format!(
                "{url}: only http and https are allowed"
            )));
        }
        let host = url
            .host_str()
            .ok_or_else(|| HttpError::InvalidUrl(format!("{url}: no host")))?;
        self.egress.check_host(host).map_err(denied)?;
        Ok(url)
    }

    /// Fetches `req`; its body counts against the call's `limits` while the
    /// call lasts.
    pub(super) async fn fetch(
        &self,
        req: Request,
        limits: &mut CallLimits,
    ) -> Result<Response, HttpError> {
        let timeout = Duration::from_millis(
            req.timeout_ms
                .map_or(self.limits.default_timeout_ms, u64::from)
                .min(self.limits.max_timeout_ms),
        );
        let cache_key = (req.method == Method::Get && req.body.is_none()).then(|| cache_key(&req));
        let cached = cache_key
            .as_ref()
            .and_then(|k| self.etags.lock().expect("etag lock").get(k));
        let has_conditional = req
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("if-none-match"));

        let client = self.client()?;
        let mut url = self.check_url(&req.url)?;
        let origin = url.origin();
        let mut method = req.method;
        let mut body = req.body;
        let mut hops = 0;
        let work = async {
            loop {
                let mut rb = client.request(to_reqwest(method), url.clone());
                // Credentials go only to the origin they were written for:
                // a redirect elsewhere (an API to its CDN, or to a host an
                // attacker controls) does not carry them.
                let elsewhere = url.origin() != origin;
                for (k, v) in req
                    .headers
                    .iter()
                    .filter(|(k, _)| !(is_host_controlled(k) || elsewhere && is_credential(k)))
                {
                    rb = rb.header(k.as_str(), v.as_str());
                }
                if let (Some(c), false) = (&cached, has_conditional) {
                    rb = rb.header("if-none-match", c.etag.as_str());
                }
                if let Some(b) = &body {
                    rb = rb.body(b.clone());
                }
                let resp = rb.send().await.map_err(transport_error)?;
                let status = resp.status().as_u16();
                if req.follow_redirects && resp.status().is_redirection() && status != 304 {
                    let Some(location) =
                        resp.headers().get("location").and_then(|l| l.to_str().ok())
                    else {
                        return self.read(resp, &url, limits).await;
                    };
                    hops += 1;
                    if hops > self.limits.max_redirects {
                        return Err(HttpError::RedirectLoop);
                    }
                    let next = url.join(location).map_err(|e| {
                        HttpError::InvalidUrl(format!("redirect to {location}: {e}"))
                    })?;
                    url = self.check_url(next.as_str())?;
                    if matches!(status, 301..=303) {
                        method = Method::Get;
                        body = None;
                    }
                    continue;
                }
                if status == 304
                    && let Some(c) = &cached
                {
                    let size = c.response.body.len();
                    limits
                        .hold(size)
                        .map_err(|_| HttpError::TooLarge(size as u64))?;
                    return Ok(Response {
                        revalidated: true,
                        final_url: url.to_string(),
                        ..c.response.clone()
                    });
                }
                return self.read(resp, &url, limits).await;
            }
        };
        let response = tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| HttpError::Timeout)??;
        if let Some(key) = cache_key
            && response.status == 200
            && response.body.len() <= MAX_CACHED_BODY
            && !response.revalidated
            && let Some(etag) = response
                .headers
                .iter()
                .find(|(k, _)| k == "etag")
                .map(|(_, v)| v.clone())
        {
            self.etags
                .lock()
                .expect("etag lock")
                .put(key, etag, response.clone());
        }
        Ok(response)
    }

    async fn read(
        &self,
        mut resp: reqwest::Response,
        url: &Url,
        limits: &mut CallLimits,
    ) -> Result<Response, HttpError> {
        let cap = self.limits.max_response_bytes;
        if resp.content_length().is_some_and(|n| n > cap) {
            return Err(HttpError::TooLarge(cap));
        }
        let status = resp.status().as_u16();
        if let Some(remaining) = resp
            .headers()
            .get("x-ratelimit-remaining")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            self.rate_limit_remaining
                .store(remaining.min(u64::MAX - 1), Ordering::Relaxed);
        }
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport_error)? {
            if body.len() as u64 + chunk.len() as u64 > cap {
                return Err(HttpError::TooLarge(cap));
            }
            // Past the call's memory: the call fails with which limit it hit.
            limits
                .hold(chunk.len())
                .map_err(|_| HttpError::TooLarge((body.len() + chunk.len()) as u64))?;
            body.extend_from_slice(&chunk);
        }
        Ok(Response {
            status,
            headers,
            body,
            final_url: url.to_string(),
            revalidated: false,
        })
    }
}

/// Headers the host sets itself. A plugin-chosen `Host` would let it address
/// another virtual host at a granted address than the name it was granted.
fn is_host_controlled(name: &str) -> bool {
    [
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "upgrade",
        "te",
        "trailer",
        "proxy-authorization",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// Headers that prove who the plugin is, dropped on a redirect to another origin.
fn is_credential(name: &str) -> bool {
    ["authorization", "cookie", "private-token", "x-api-key"]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
}

fn to_reqwest(m: Method) -> reqwest::Method {
    match m {
        Method::Get => reqwest::Method::GET,
        Method::Head => reqwest::Method::HEAD,
        Method::Post => reqwest::Method::POST,
        Method::Put => reqwest::Method::PUT,
        Method::Delete => reqwest::Method::DELETE,
        Method::Patch => reqwest::Method::PATCH,
    }
}

fn denied(d: EgressDenied) -> HttpError {
    match d {
        EgressDenied::HostNotGranted(h) => HttpError::HostNotGranted(h),
        d @ EgressDenied::AddressDenied { .. } => HttpError::AddressDenied(d.to_string()),
    }
}

/// Finds our resolver's refusal in reqwest's error chain; anything else is a
/// connection failure with the whole chain as its message.
fn transport_error(e: reqwest::Error) -> HttpError {
    if e.is_timeout() {
        return HttpError::Timeout;
    }
    let denial = crate::egress::denial_in(&e);
    match denial {
        Some(d) => denied(d),
        None => HttpError::Connect(crate::error_chain(&e)),
    }
}

/// Requests with different headers (say, credentials) never share an entry.
fn cache_key(req: &Request) -> String {
    let mut headers: Vec<String> = req
        .headers
        .iter()
        .map(|(k, v)| format!("{}:{v}", k.to_ascii_lowercase()))
        .collect();
    headers.sort();
    format!("{}\n{}", req.url, headers.join("\n"))
}

struct CachedResponse {
    etag: String,
    response: Response,
    used: u64,
    size: usize,
}

/// A small least-recently-used map of ETag-validated responses, bounded in
/// entries and in bytes.
struct EtagCache {
    entries: HashMap<String, CachedResponse>,
    capacity: usize,
    max_bytes: usize,
    bytes: usize,
    clock: u64,
}

#[derive(Clone)]
struct Hit {
    etag: String,
    response: Response,
}

impl EtagCache {
    fn new(capacity: usize, max_bytes: usize) -> Self {
        EtagCache {
            entries: HashMap::new(),
            capacity,
            max_bytes,
            bytes: 0,
            clock: 0,
        }
    }

    fn get(&mut self, key: &str) -> Option<Hit> {
        self.clock += 1;
        let e = self.entries.get_mut(key)?;
        e.used = self.clock;
        Some(Hit {
            etag: e.etag.clone(),
            response: e.response.clone(),
        })
    }

    fn put(&mut self, key: String, etag: String, response: Response) {
        let size = key.len()
            + etag.len()
            + response.body.len()
            + response.final_url.len()
            + response
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        if self.capacity == 0 || size > self.max_bytes {
            return;
        }
        self.clock += 1;
        if let Some(old) = self.entries.remove(&key) {
            self.bytes -= old.size;
        }
        while self.entries.len() >= self.capacity || self.bytes + size > self.max_bytes {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(gone) = self.entries.remove(&oldest) {
                self.bytes -= gone.size;
            }
        }
        self.bytes += size;
        self.entries.insert(
            key,
            CachedResponse {
                etag,
                response,
                used: self.clock,
                size,
            },
        );
    }
}

impl Host for CallState {
    async fn fetch(&mut self, req: Request) -> Result<Response, HttpError> {
        let result = self.grants.http.fetch(req, &mut self.limits).await;
        if let Err(e) = &result {
            tracing::debug!(plugin = %self.plugin, "http fetch failed: {e:?}");
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(body: usize) -> Response {
        Response {
            status: 200,
            headers: vec![("etag".into(), "\"x\"".into())],
            body: vec![b'x'; body],
            final_url: "https://api.example.org/x".into(),
            revalidated: false,
        }
    }

    #[test]
    fn the_etag_cache_is_bounded_in_bytes_as_well_as_entries() {
        let mut cache = EtagCache::new(1024, 100 << 10);
        for i in 0..50 {
            cache.put(format!("k{i}"), "e".into(), response(10 << 10));
            assert!(cache.bytes <= 100 << 10, "{} bytes held", cache.bytes);
        }
        assert!(cache.entries.len() < 10, "{}", cache.entries.len());
        assert!(cache.get("k49").is_some() && cache.get("k0").is_none());
        // Replacing an entry does not count it twice; one too big is not kept.
        cache.put("k49".into(), "e2".into(), response(10 << 10));
        assert_eq!(
            cache.bytes,
            cache.entries.values().map(|e| e.size).sum::<usize>()
        );
        cache.put("huge".into(), "e".into(), response(200 << 10));
        assert!(cache.get("huge").is_none());
    }
}
