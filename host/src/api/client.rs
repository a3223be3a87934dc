//! Who is asking: the client's address (from `X-Forwarded-For` only when a
//! trusted proxy sent it), the operator's banned networks, and upstream's
//! rate limit: per address, or per user for logged-in users.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use axum::http::HeaderMap;
use ipnet::IpNet;

use crate::config::{BanNetwork, RateLimitConfig};

/// The client's address. `X-Forwarded-For` is read from the right, skipping
/// trusted proxies; the first address not trusted is the client. Addresses
/// added by anyone untrusted are ignored, so a client cannot pick its own.
pub fn client_ip(headers: &HeaderMap, peer: IpAddr, trusted: &[IpNet]) -> IpAddr {
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    let hops: Vec<IpAddr> = forwarded.filter_map(|h| parse_hop(h.trim())).collect();
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        client = hop;
        if !is_trusted(hop, trusted) {
            break;
        }
    }
    client
}

/// Whether `ip` is one of the proxies whose forwarding headers are believed.
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|n| n.contains(&ip))
}

/// A hop as proxies write it: an address, maybe with a port or brackets.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// The label of the banned network `ip` is in.
pub fn banned(ip: IpAddr, bans: &[BanNetwork]) -> Option<&str> {
    bans.iter()
        .find(|b| b.network.contains(&ip))
        .map(|b| b.label.as_str())
}

/// The limiter's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateQuota {
    /// Requests left in this window.
    pub remaining: u32,
    /// When the window ends (Unix seconds).
    pub reset: u64,
    /// The limit.
    pub limit: u32,
}

/// Whom the rate limit counts a request against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Counted {
    /// An anonymous client's address.
    Address(IpAddr),
    /// A logged-in hub user, wherever they connect from.
    User(String),
}

impl Counted {
    /// `ip`, with `::ffff:198.51.100.7` the same client as `198.51.100.7`.
    pub fn address(ip: IpAddr) -> Counted {
        Counted::Address(ip.to_canonical())
    }
}

/// Upstream's fixed-window limiter: `limit` requests per `period` per client.
pub struct RateLimiter {
    config: RateLimitConfig,
    windows: Mutex<Windows>,
}

/// Each client's window, and the windows in the order they end: every
/// window lasts one period from its start, so they end in the order they
/// started, and expired ones are dropped from the front, O(1) per request
/// however many clients are tracked.
#[derive(Default)]
struct Windows {
    by_client: HashMap<Counted, (u64, u32)>,
    ending: VecDeque<(u64, Counted)>,
}

impl RateLimiter {
    /// A limiter; `config.limit == 0` lets everything through.
    pub fn new(config: RateLimitConfig) -> RateLimiter {
        RateLimiter {
            config,
            windows: Mutex::new(Windows::default()),
        }
    }

    /// Whether it limits at all.
    pub fn enabled(&self) -> bool {
        self.config.limit > 0
    }

    /// Counts a request of `who`'s; `Err` carries the seconds until the
    /// window ends when the limit is already reached.
    pub fn check(&self, who: Counted) -> Result<RateQuota, u64> {
        self.check_at(who, crate::now_ms() / 1000)
    }

    fn check_at(&self, who: Counted, now: u64) -> Result<RateQuota, u64> {
        let period = self.config.period_secs.max(1);
        let mut guard = self.windows.lock().expect("rate limiter");
        let windows = &mut *guard;
        while let Some((reset, _)) = windows.ending.front() {
            if *reset > now {
                break;
            }
            let (reset, old) = windows.ending.pop_front().expect("just seen");
            if windows
                .by_client
                .get(&old)
                .is_some_and(|(r, _)| *r == reset)
            {
                windows.by_client.remove(&old);
            }
        }
        let (reset, count) = windows.by_client.entry(who.clone()).or_insert_with(|| {
            windows.ending.push_back((now + period, who));
            (now + period, 0)
        });
        if *count >= self.config.limit {
            return Err(*reset - now);
        }
        *count += 1;
        Ok(RateQuota {
            remaining: self.config.limit - *count,
            reset: *reset,
            limit: self.config.limit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let stranger: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(
            client_ip(&headers(&["203.0.113.9"]), proxy, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(&headers(&["203.0.113.9"]), stranger, &trusted),
            stranger,
            "an untrusted peer cannot pick its address"
        );
        // A client's own spoofed hop sits left of the real one.
        assert_eq!(
            client_ip(
                &headers(&["1.2.3.4, 203.0.113.9, 10.0.0.5"]),
                proxy,
                &trusted
            ),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(&headers(&["[2001:db8::1]:443"]), proxy, &trusted),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(&headers(&["garbage"]), proxy, &trusted), proxy);
    }

    #[test]
    fn bans() {
        let bans = vec![BanNetwork {
            network: "192.0.2.0/24".parse().unwrap(),
            label: "a test network".into(),
        }];
        assert_eq!(
            banned("192.0.2.77".parse().unwrap(), &bans),
            Some("a test network")
        );
        assert_eq!(banned("192.0.3.1".parse().unwrap(), &bans), None);
    }

    #[test]
    fn fixed_windows() {
        let limiter = RateLimiter::new(RateLimitConfig {
            limit: 2,
            period_secs: 100,
        });
        let ip: IpAddr = "203.0.113.1".parse().unwrap();
        assert_eq!(
            limiter.check_at(Counted::address(ip), 1000),
            Ok(RateQuota {
                remaining: 1,
                reset: 1100,
                limit: 2
            })
        );
        assert_eq!(
            limiter.check_at(Counted::address(ip), 1050),
            Ok(RateQuota {
                remaining: 0,
                reset: 1100,
                limit: 2
            })
        );
        assert_eq!(limiter.check_at(Counted::address(ip), 1060), Err(40));
        assert!(
            limiter
                .check_at(Counted::address("203.0.113.2".parse().unwrap()), 1060)
                .is_ok(),
            "per address"
        );
        let alice = || Counted::User("alice".into());
        assert!(limiter.check_at(alice(), 1060).is_ok());
        assert!(limiter.check_at(alice(), 1061).is_ok());
        assert_eq!(
            limiter.check_at(alice(), 1062),
            Err(98),
            "per user, whatever the address"
        );
        assert_eq!(
            limiter
                .check_at(Counted::address(ip), 1100)
                .map(|q| q.remaining),
            Ok(1),
            "a new window"
        );
        // The same client written as an IPv4-mapped IPv6 address.
        let mapped: IpAddr = "::ffff:203.0.113.1".parse().unwrap();
        assert_eq!(
            limiter
                .check_at(Counted::address(mapped), 1101)
                .map(|q| q.remaining),
            Ok(0)
        );
        assert_eq!(limiter.check_at(Counted::address(mapped), 1102), Err(98));
    }

    #[test]
    fn expired_windows_go_as_time_passes() {
        let limiter = RateLimiter::new(RateLimitConfig {
            limit: 1,
            period_secs: 10,
        });
        for i in 0..50_000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            assert!(
                limiter
                    .check_at(Counted::address(ip), 1000 + u64::from(i / 10_000))
                    .is_ok()
            );
        }
        // At 1012 the windows of the first 30,000 addresses (ending by 1012) are gone.
        limiter
            .check_at(Counted::address("192.0.2.1".parse().unwrap()), 1012)
            .unwrap();
        let windows = limiter.windows.lock().unwrap();
        assert_eq!(windows.by_client.len(), 20_001);
        assert_eq!(windows.ending.len(), 20_001);
    }
}
