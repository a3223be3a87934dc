//! Egress rules, shared by the plugins' `http` and `git` capabilities and by
//! the builder's fetch: which hosts may be named, and which addresses those
//! names may resolve to.
//!
//! Both are checked: a granted name that resolves to loopback, link-local
//! (cloud metadata), private or other non-public space is refused unless the
//! operator granted that network too. Checking the resolved addresses, not just
//! the name, is what stops DNS rebinding and `localtest.me`-style tricks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, LazyLock};

use ipnet::IpNet;

/// Networks that are never public. Anything in them needs an explicit grant.
static NON_PUBLIC: LazyLock<Vec<IpNet>> = LazyLock::new(|| {
    [
        "0.0.0.0/8",       // "this network"
        "10.0.0.0/8",      // private
        "100.64.0.0/10",   // carrier-grade NAT
        "127.0.0.0/8",     // loopback
        "169.254.0.0/16",  // link-local, cloud metadata
        "172.16.0.0/12",   // private
        "192.0.0.0/24",    // IETF protocol assignments
        "192.0.2.0/24",    // documentation
        "192.168.0.0/16",  // private
        "198.18.0.0/15",   // benchmarking
        "198.51.100.0/24", // documentation
        "203.0.113.0/24",  // documentation
        "224.0.0.0/4",     // multicast
        "240.0.0.0/4",     // reserved, broadcast
        "::/128",          // unspecified
        "::1/128",         // loopback
        "64:ff9b:1::/48",  // local-use NAT64
        "100::/64",        // discard
        "2001:db8::/32",   // documentation
        "fc00::/7",        // unique local
        "fe80::/10",       // link-local
        "ff00::/8",        // multicast
    ]
    .iter()
    .map(|n| n.parse().expect("static network literal"))
    .collect()
});

/// Why an egress attempt was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressDenied {
    /// The name is not in the plugin's `hosts` grant.
    #[error("host `{0}` is not granted to this plugin")]
    HostNotGranted(String),
    /// The address is non-public and not in the plugin's `private_networks` grant.
    #[error("`{host}` resolves to {addr}, a non-public address this plugin was not granted")]
    AddressDenied {
        /// The name as requested.
        host: String,
        /// The offending address.
        addr: IpAddr,
    },
}

/// A host pattern from the operator's grant.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// `*`: any name (addresses are still checked).
    Any,
    /// `*.example.org`: any subdomain, not the apex.
    Subdomains(String),
    /// `api.example.org`.
    Exact(String),
}

impl HostPattern {
    fn parse(pattern: &str) -> Self {
        let p = pattern.trim().trim_end_matches('.').to_ascii_lowercase();
        if p == "*" {
            HostPattern::Any
        } else if let Some(rest) = p.strip_prefix("*.") {
            HostPattern::Subdomains(format!(".{rest}"))
        } else {
            HostPattern::Exact(p)
        }
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Any => true,
            HostPattern::Subdomains(suffix) => host.ends_with(suffix.as_str()),
            HostPattern::Exact(name) => host == name,
        }
    }
}

/// A plugin's egress grant.
#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    hosts: Vec<HostPattern>,
    private_networks: Vec<IpNet>,
}

impl EgressPolicy {
    /// A policy from the operator's `hosts` and `private_networks` grants.
    pub fn new(hosts: &[String], private_networks: &[IpNet]) -> Self {
        EgressPolicy {
            hosts: hosts.iter().map(|h| HostPattern::parse(h)).collect(),
            private_networks: private_networks.to_vec(),
        }
    }

    /// True when the plugin may reach no host at all.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Whether a requested host (a name or a pattern from plugin metadata) is
    /// covered by the grant, comparing names only.
    pub fn covers(&self, requested: &str) -> bool {
        let requested = normalise_host(requested);
        self.hosts
            .iter()
            .any(|p| p == &HostPattern::parse(&requested) || p.matches(&requested))
    }

    /// Checks a host name (or IP literal) against the grant. IP literals are
    /// also checked as addresses.
    pub fn check_host(&self, host: &str) -> Result<(), EgressDenied> {
        let host = normalise_host(host);
        if !self.hosts.iter().any(|p| p.matches(&host)) {
            return Err(EgressDenied::HostNotGranted(host));
        }
        if let Ok(addr) = host.parse::<IpAddr>() {
            self.check_addr(&host, addr)?;
        }
        Ok(())
    }

    /// Checks one resolved address of `host`.
    pub fn check_addr(&self, host: &str, addr: IpAddr) -> Result<(), EgressDenied> {
        let addr = canonical(addr);
        if is_public(addr) || self.private_networks.iter().any(|n| n.contains(&addr)) {
            Ok(())
        } else {
            Err(EgressDenied::AddressDenied {
                host: normalise_host(host),
                addr,
            })
        }
    }

    /// Resolves `host` and checks every address: one forbidden address refuses
    /// the whole name, so a mixed answer cannot be used to rebind.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, EgressError> {
        let name = normalise_host(host);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), port))
            .await
            .map_err(|e| EgressError::Lookup(format!("cannot resolve `{name}`: {e}")))?
            .collect();
        if addrs.is_empty() {
            return Err(EgressError::Lookup(format!("`{name}` has no addresses")));
        }
        for a in &addrs {
            self.check_addr(&name, a.ip())
                .map_err(EgressError::Denied)?;
        }
        Ok(addrs)
    }
}

/// Our resolver's refusal, found in an error's chain (reqwest wraps it).
pub(crate) fn denial_in(e: &(dyn std::error::Error + 'static)) -> Option<EgressDenied> {
    std::iter::successors(Some(e), |s| s.source()).find_map(|s| {
        match s.downcast_ref::<EgressError>() {
            Some(EgressError::Denied(d)) => Some(d.clone()),
            _ => None,
        }
    })
}

/// A DNS resolver for reqwest that refuses forbidden addresses, so the
/// addresses checked are the addresses connected to.
pub(crate) struct PolicyResolver(pub(crate) Arc<EgressPolicy>);

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let addrs = policy.resolve(name.as_str(), 0).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// A git remote URL, parsed once. The host and port checked are the ones
/// connected to, because libgit2 and repo2docker are given this URL's
/// serialisation, never the text it was parsed from.
#[derive(Clone)]
pub struct GitRemote {
    url: url::Url,
    port: u16,
    /// Basic credentials the wire sends with every request (HTTP only).
    auth: Option<Arc<(String, String)>>,
}

impl std::fmt::Debug for GitRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitRemote")
            .field("url", &self.url.as_str())
            .field("authenticated", &self.auth.is_some())
            .finish()
    }
}

/// Why a text is not a git remote Bindery fetches.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitUrlError {
    /// Not a URL with a host.
    #[error("not a URL with a host")]
    Invalid,
    /// A scheme other than http, https and git.
    #[error("Bindery fetches git repositories over http, https and git, not {0}")]
    Scheme(String),
    /// A form parsers read differently.
    #[error(
        "a git URL has no query, fragment or backslash (parsers disagree on where its host ends)"
    )]
    Ambiguous,
}

impl GitRemote {
    /// Parses `raw`. A query, a fragment or a backslash is refused, not
    /// normalised away: in `http://a.example?@127.0.0.1/x` URL parsers find
    /// the host `a.example`, while libgit2 found `127.0.0.1`.
    pub fn parse(raw: &str) -> Result<GitRemote, GitUrlError> {
        let url = url::Url::parse(raw).map_err(|_| GitUrlError::Invalid)?;
        let port = match url.scheme() {
            "http" => 80,
            "https" => 443,
            "git" => 9418,
            other => return Err(GitUrlError::Scheme(other.into())),
        };
        if raw.contains('\\') || url.query().is_some() || url.fragment().is_some() {
            return Err(GitUrlError::Ambiguous);
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(GitUrlError::Invalid);
        }
        let port = url.port().unwrap_or(port);
        Ok(GitRemote {
            url,
            port,
            auth: None,
        })
    }

    /// The remote, fetched with HTTP basic authentication. The wire sends
    /// the credentials to this remote only (it follows no redirects); they
    /// are in no URL, so neither libgit2's messages nor a repository's
    /// config can show them.
    pub fn with_basic_auth(mut self, username: String, password: String) -> GitRemote {
        self.auth = Some(Arc::new((username, password)));
        self
    }

    /// The basic credentials, if any.
    pub fn basic_auth(&self) -> Option<(&str, &str)> {
        self.auth.as_deref().map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// The host connected to.
    pub fn host(&self) -> &str {
        self.url.host_str().unwrap_or_default()
    }

    /// The port connected to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http`, `https` or `git`.
    pub fn scheme(&self) -> &str {
        self.url.scheme()
    }

    /// The repository's path on its host.
    pub fn path(&self) -> &str {
        self.url.path()
    }

    /// The URL to hand to libgit2 and repo2docker.
    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }
}

/// Resolution failed or was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EgressError {
    /// Refused by policy.
    #[error(transparent)]
    Denied(EgressDenied),
    /// DNS failed.
    #[error("{0}")]
    Lookup(String),
}

fn normalise_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// IPv4-mapped and NAT64 addresses are judged by the IPv4 address they carry.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                return IpAddr::V4(Ipv4Addr::new(
                    (s[6] >> 8) as u8,
                    s[6] as u8,
                    (s[7] >> 8) as u8,
                    s[7] as u8,
                ));
            }
            IpAddr::V6(v6)
        }
        v4 => v4,
    }
}

/// True for addresses reachable on the public internet.
pub fn is_public(addr: IpAddr) -> bool {
    let addr = canonical(addr);
    if addr == IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
        return false;
    }
    !NON_PUBLIC.iter().any(|n| n.contains(&addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_remotes_are_parsed_once_and_ambiguous_forms_refused() {
        for raw in [
            "http://public.example?@127.0.0.1:8585/x",
            "http://public.example#@127.0.0.1:8585/x",
            "http://public.example\\@127.0.0.1:8585/x",
            "git://public.example\\@127.0.0.1:8585/x",
            "https://public.example/x.git?ref=main",
        ] {
            assert_eq!(
                GitRemote::parse(raw).unwrap_err(),
                GitUrlError::Ambiguous,
                "{raw}"
            );
        }
        assert_eq!(
            GitRemote::parse("file:///etc/x.git").unwrap_err(),
            GitUrlError::Scheme("file".into())
        );
        assert_eq!(
            GitRemote::parse("git:///x.git").unwrap_err(),
            GitUrlError::Invalid
        );
        let r = GitRemote::parse("HTTPS://User@Example.ORG./x.git").unwrap();
        assert_eq!((r.host(), r.port()), ("example.org.", 443));
        assert_eq!(r.as_str(), "https://User@example.org./x.git");
        let r = GitRemote::parse("git://127.0.0.1:9419/repo.git").unwrap();
        assert_eq!(
            (r.host(), r.port(), r.as_str()),
            ("127.0.0.1", 9419, "git://127.0.0.1:9419/repo.git")
        );
        // The userinfo trick without a delimiter before it is plain userinfo:
        // the host checked is the one connected to.
        let r = GitRemote::parse("http://public.example:80@127.0.0.1:8585/x").unwrap();
        assert_eq!((r.host(), r.port()), ("127.0.0.1", 8585));
    }

    fn policy(hosts: &[&str], private: &[&str]) -> EgressPolicy {
        EgressPolicy::new(
            &hosts
                .iter()
                .map(std::string::ToString::to_string)
                .collect::<Vec<_>>(),
            &private
                .iter()
                .map(|s| s.parse().unwrap())
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn non_public_ranges_are_recognised() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.20.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "224.0.0.1",
            "255.255.255.255",
        ] {
            assert!(
                !is_public(a.parse().unwrap()),
                "{a} must not count as public"
            );
        }
        for a in [
            "93.184.216.34",
            "140.82.112.3",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(a.parse().unwrap()), "{a} is public");
        }
    }

    #[test]
    fn host_patterns() {
        let p = policy(&["api.github.com", "*.zenodo.org"], &[]);
        assert!(p.check_host("API.GitHub.com.").is_ok());
        assert!(p.check_host("sandbox.zenodo.org").is_ok());
        assert_eq!(
            p.check_host("zenodo.org"),
            Err(EgressDenied::HostNotGranted("zenodo.org".into()))
        );
        assert!(p.check_host("evilgithub.com").is_err());
        assert!(p.check_host("api.github.com.evil.org").is_err());
        assert!(
            p.covers("api.zenodo.org") && p.covers("*.zenodo.org") && p.covers("API.github.com")
        );
        assert!(!p.covers("*") && !p.covers("zenodo.org") && !p.covers("*.github.com"));
    }

    #[test]
    fn ip_literals_are_checked_as_addresses() {
        let open = policy(&["*"], &[]);
        assert!(matches!(
            open.check_host("127.0.0.1"),
            Err(EgressDenied::AddressDenied { .. })
        ));
        assert!(matches!(
            open.check_host("[::1]"),
            Err(EgressDenied::AddressDenied { .. })
        ));
        let granted = policy(&["*"], &["127.0.0.0/8"]);
        assert!(granted.check_host("127.0.0.1").is_ok());
        assert!(granted.check_host("10.0.0.1").is_err());
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_are_denied() {
        let p = policy(&["localhost"], &[]);
        match p.resolve("localhost", 80).await {
            Err(EgressError::Denied(EgressDenied::AddressDenied { host, .. })) => {
                assert_eq!(host, "localhost");
            }
            other => panic!("expected a denial, got {other:?}"),
        }
        let granted = policy(&["localhost"], &["127.0.0.0/8", "::1/128"]);
        assert!(granted.resolve("localhost", 80).await.is_ok());
    }
}
