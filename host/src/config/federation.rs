//! `[federation]`: Bindery deployments that share one launch link, as
//! mybinder.org's clusters do behind its redirector; here any member, or a
//! Bindery that is a front only, takes the click and sends `/build` where
//! the repository's image already is.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use url::Url;

/// The members and how they are checked. Without members, no federation.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FederationConfig {
    /// This Bindery's own name in `members`: its launches are served here,
    /// not redirected. Unset: a front only, which redirects every launch.
    pub member: Option<String>,
    /// The members by name.
    pub members: BTreeMap<String, MemberConfig>,
    /// How members are checked.
    pub check: CheckConfig,
    /// A member with a total quota stops taking new launches while fewer
    /// than this many servers are left below it (upstream's `pod_headroom`).
    pub pod_headroom: u64,
    /// How long the browser's cookie keeps a repository's launches on the
    /// member it was sent to (upstream's `host_cookie_age_hours`).
    pub cookie_age_hours: u64,
}

impl Default for FederationConfig {
    fn default() -> Self {
        FederationConfig {
            member: None,
            members: BTreeMap::new(),
            check: CheckConfig::default(),
            pod_headroom: 10,
            cookie_age_hours: 4,
        }
    }
}

/// One member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    /// Its public URL, e.g. `https://gesis.mybinder.org/` (its `base_url` included).
    pub url: Url,
    /// Its share of repositories, relative to the others' (positive).
    #[serde(default = "one")]
    pub weight: f64,
    /// Its `/versions` is the one every member must match. At most one
    /// member is the prime; without one, this Bindery's own is the reference.
    #[serde(default)]
    pub prime: bool,
}

fn one() -> f64 {
    1.0
}

/// The members' health checks: `/versions` then `/health`, every period.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CheckConfig {
    /// Seconds between checks of a member in the set.
    pub period_secs: f64,
    /// Seconds a member that failed stays out before it is checked again.
    pub failed_period_secs: f64,
    /// Each request's deadline, in seconds.
    pub timeout_secs: f64,
    /// Attempts of a check that cannot reach the member, 1 s apart; a
    /// check that gets an answer is not repeated.
    pub retries: u32,
    /// Each period is stretched or shrunk by up to half this fraction, so
    /// that fronts' checks do not fall in step.
    pub jitter: f64,
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            period_secs: 10.0,
            failed_period_secs: 90.0,
            timeout_secs: 5.0,
            retries: 3,
            jitter: 0.1,
        }
    }
}

impl FederationConfig {
    /// Whether this Bindery is in a federation.
    pub fn enabled(&self) -> bool {
        !self.members.is_empty()
    }

    /// What is wrong with the federation's settings, for an operator to fix.
    /// `build_token_secret` and `cors`: whether `web` sets them.
    pub fn problem(&self, build_token_secret: bool, cors: bool) -> Option<String> {
        if !self.enabled() {
            return self
                .member
                .as_ref()
                .map(|m| format!("federation.member is {m:?}, but federation.members is empty"));
        }
        if let Some(member) = &self.member
            && !self.members.contains_key(member)
        {
            return Some(format!(
                "federation.member {member:?} is not one of federation.members ({})",
                self.members.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        for (name, m) in &self.members {
            if !m.weight.is_finite() || m.weight <= 0.0 {
                return Some(format!(
                    "federation.members.{name}.weight must be positive (got {}); remove a member to take it out",
                    m.weight
                ));
            }
            if !matches!(m.url.scheme(), "http" | "https") || !m.url.path().ends_with('/') {
                return Some(format!(
                    "federation.members.{name}.url must be an http(s) URL ending in `/` (got {})",
                    m.url
                ));
            }
        }
        match (
            self.members.values().filter(|m| m.prime).count(),
            &self.member,
        ) {
            (0, None) => {
                return Some(
                    "federation: a front (no federation.member) needs a prime member, whose /versions the others must match"
                        .into(),
                );
            }
            (2.., _) => return Some("federation: at most one member is the prime".into()),
            _ => {}
        }
        if self.member.is_some() && !cors {
            return Some(
                "federation: set web.cors_allow_origin (\"*\", or the fronts' origin): launches come to this member redirected from another origin"
                    .into(),
            );
        }
        let c = &self.check;
        if !(c.period_secs > 0.0 && c.failed_period_secs > 0.0 && c.timeout_secs > 0.0)
            || c.retries == 0
            || !(0.0..1.0).contains(&c.jitter)
        {
            return Some(
                "federation.check: period_secs, failed_period_secs, timeout_secs and retries must be positive, and jitter in [0, 1)"
                    .into(),
            );
        }
        if !build_token_secret {
            return Some(
                "federation: set web.build_token_secret, the same on every member and front, so that a build token one issues is accepted by the member a launch goes to"
                    .into(),
            );
        }
        None
    }
}
