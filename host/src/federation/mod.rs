//! A federation of Bindery deployments behind one launch link, without a
//! separate redirector: any member, or a Bindery that is a front only, takes
//! the click, and `/build` goes (307) to the member the repository is
//! placed on ([`placement`]), or is served here when that is this member.
//! Each Bindery checks the members itself ([`checks`]); they share nothing
//! but their list and the build-token secret.

pub mod checks;
pub mod placement;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde_json::{Value, json};
use url::Url;

use crate::config::{FederationConfig, MemberConfig};
use crate::metrics::Metrics;

/// The members, and which of them take launches now.
pub struct Federation {
    config: FederationConfig,
    /// Why each member is out of the set; absent: in it.
    out: RwLock<BTreeMap<String, String>>,
    /// The `/versions` every member must answer: the prime's, or this
    /// Bindery's own without a prime.
    reference: RwLock<Option<Value>>,
    metrics: Arc<Metrics>,
}

/// Where a launch goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// This member serves it.
    Here,
    /// Another member does.
    There {
        /// Its name.
        member: String,
        /// Where the browser is sent: the launch's path and query on its URL.
        location: Url,
        /// How it was chosen, for the metrics: `rendezvous`, `next` (the
        /// first choice is out of the set) or `cookie`.
        reason: &'static str,
    },
    /// No member is in the set.
    Nowhere,
}

/// The cookie that keeps a browser's launches of one repository on the
/// member they went to, as upstream's `host` cookie keeps them on a host.
pub const COOKIE: &str = "binder_member";

impl Federation {
    /// The federation `config` describes, every member in the set until a
    /// check says otherwise (as upstream's redirector starts).
    pub fn new(config: &FederationConfig, metrics: Arc<Metrics>) -> Option<Arc<Federation>> {
        if !config.enabled() {
            return None;
        }
        for name in config.members.keys() {
            metrics.federation_member(name, None, "");
        }
        Some(Arc::new(Federation {
            config: config.clone(),
            out: RwLock::default(),
            reference: RwLock::default(),
            metrics,
        }))
    }

    /// The members by name.
    pub fn members(&self) -> &BTreeMap<String, MemberConfig> {
        &self.config.members
    }

    /// Where the launch of `key` (a [`placement::key`]) goes, the browser's
    /// `cookie` honoured when it names a member in the set for this key.
    /// `path_and_query` is appended to the member's URL.
    pub fn place(&self, key: &str, cookie: Option<&str>, path_and_query: &str) -> Placement {
        let out = self.out.read().expect("federation state");
        let in_set = |name: &str| self.config.members.contains_key(name) && !out.contains_key(name);
        let ranked = placement::ranked(
            key,
            self.config
                .members
                .iter()
                .map(|(name, m)| (name.as_str(), m.weight)),
        );
        let remembered = cookie
            .and_then(|c| c.split_once(':'))
            .filter(|(for_key, member)| *for_key == cookie_key(key) && in_set(member))
            .map(|(_, member)| member.to_string());
        let (member, reason) = match remembered {
            Some(member) => (member, "cookie"),
            None => match ranked.iter().position(|m| in_set(m)) {
                Some(0) => (ranked[0].to_string(), "rendezvous"),
                Some(i) => (ranked[i].to_string(), "next"),
                None => return Placement::Nowhere,
            },
        };
        if self.config.member.as_deref() == Some(member.as_str()) {
            return Placement::Here;
        }
        let base = &self.config.members[&member].url;
        let location = base
            .join(path_and_query.trim_start_matches('/'))
            .unwrap_or_else(|_| base.clone());
        Placement::There {
            member,
            location,
            reason,
        }
    }

    /// The cookie to set for a launch of `key` sent to `member`: its path is
    /// the launch's, as upstream's.
    pub fn cookie(&self, key: &str, member: &str, path: &str) -> String {
        format!(
            "{COOKIE}={}:{member}; Path={path}; Max-Age={}; HttpOnly; SameSite=Lax",
            cookie_key(key),
            self.config.cookie_age_hours * 3600
        )
    }

    /// A launch was sent to `member`.
    pub fn sent(&self, member: &str, reason: &str) {
        self.metrics.federation_redirect(member, reason);
    }

    /// `/active_hosts`: the members in the set, as upstream's redirector lists them.
    pub fn active_hosts(&self) -> Value {
        let out = self.out.read().expect("federation state");
        let active: serde_json::Map<String, Value> = self
            .config
            .members
            .iter()
            .filter(|(name, _)| !out.contains_key(*name))
            .map(|(name, m)| {
                (
                    name.clone(),
                    json!({ "url": m.url, "weight": m.weight, "prime": m.prime }),
                )
            })
            .collect();
        json!({ "active_hosts": active })
    }

    /// Without a prime, this Bindery's own `/versions` is the reference.
    pub fn own_versions(&self, versions: &[u8]) {
        if self.config.members.values().any(|m| m.prime) {
            return;
        }
        if let Ok(v) = serde_json::from_slice(versions) {
            *self.reference.write().expect("federation state") = Some(v);
        }
    }

    /// Records a check's verdict on `member`; `None` puts it in the set.
    fn judged(&self, member: &str, out: Option<String>) {
        let mut state = self.out.write().expect("federation state");
        let was = state.get(member).cloned();
        if was == out {
            return;
        }
        match &out {
            Some(reason) => {
                tracing::warn!(member, reason, "federation: a member leaves the set");
                state.insert(member.to_string(), reason.clone());
            }
            None => {
                tracing::info!(member, "federation: a member is back in the set");
                state.remove(member);
            }
        }
        drop(state);
        self.metrics.federation_member(
            member,
            Some(was.as_deref().unwrap_or("")),
            out.as_deref().unwrap_or(""),
        );
    }
}

/// A short, stable name of `key` for the cookie (which holds no spec).
fn cookie_key(key: &str) -> String {
    format!("{:016x}", placement::hash(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn federation(me: Option<&str>) -> Arc<Federation> {
        let member = |port: u16, prime: bool| MemberConfig {
            url: format!("http://127.0.0.1:{port}/binder/").parse().unwrap(),
            weight: 1.0,
            prime,
        };
        let config = FederationConfig {
            member: me.map(String::from),
            members: [
                ("a".into(), member(1, true)),
                ("b".into(), member(2, false)),
            ]
            .into(),
            ..FederationConfig::default()
        };
        Federation::new(&config, Arc::new(Metrics::default())).unwrap()
    }

    fn member_of(placement: &Placement) -> &str {
        match placement {
            Placement::There { member, .. } => member,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_cookie_keeps_its_own_repository_only_and_this_member_serves_its_own() {
        let f = federation(None);
        let key = "gh/lab/repo";
        let placed = f.place(key, None, "build/gh/lab/repo/main?x=1");
        let Placement::There {
            member, location, ..
        } = &placed
        else {
            panic!("{placed:?}")
        };
        assert_eq!(
            location.as_str(),
            format!(
                "http://127.0.0.1:{}/binder/build/gh/lab/repo/main?x=1",
                if member == "a" { 1 } else { 2 }
            )
        );
        let other = if member == "a" { "b" } else { "a" };
        // The browser's cookie for this repository sends it where it went before.
        let cookie = format!("{}:{other}", cookie_key(key));
        let kept = f.place(key, Some(&cookie), "build/gh/lab/repo/main");
        assert_eq!(member_of(&kept), other);
        assert!(matches!(
            kept,
            Placement::There {
                reason: "cookie",
                ..
            }
        ));
        // The same cookie does not move another repository.
        let another = "gh/lab/another";
        let placed_another = member_of(&f.place(another, None, "x")).to_string();
        assert_eq!(
            member_of(&f.place(another, Some(&cookie), "x")),
            placed_another
        );
        // A cookie naming a member out of the set is not followed.
        f.judged(other, Some("versions".into()));
        assert_eq!(member_of(&f.place(key, Some(&cookie), "x")), member);
        // With none in the set, nowhere; a member serves what is placed on it.
        f.judged(member, Some("versions".into()));
        assert_eq!(f.place(key, None, "x"), Placement::Nowhere);
        let here = federation(Some(member));
        assert_eq!(here.place(key, None, "x"), Placement::Here);
        assert!(
            f.cookie(key, member, "/build/gh/lab/repo/main")
                .starts_with(&format!(
                    "{COOKIE}={}:{member}; Path=/build/gh/lab/repo/main; Max-Age=14400",
                    cookie_key(key)
                ))
        );
    }
}
