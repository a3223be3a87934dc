//! jupyterhub-idle-culler's rules (v2.0.0), for cull policies to reuse: a
//! server inactive for `timeout` is stopped (if the default/named toggle
//! allows), one older than `max_age` is stopped whatever its activity, and
//! with `cull_users` its temporary user is deleted too. Pending servers are
//! left alone, as the idle culler skips them.
//!
//! ```
//! use bindery_sdk::idle::IdleRules;
//! use bindery_sdk::prelude::*;
//! use bindery_sdk::testing::MockContext;
//!
//! let rules = IdleRules::from_config(&MockContext::new().with_config("timeout_secs", "60")).unwrap();
//! let server = Server {
//!     user: "u".into(), server_name: "".into(), image: "i".into(), repo_url: "r".into(),
//!     provider: "gh".into(), spec: "a/b/HEAD".into(), started_ms: 0,
//!     last_activity_ms: Some(1_000), state: ServerState::Ready, user_options_json: "{}".into(),
//! };
//! assert!(matches!(rules.decide(62_000, &server), Decision::Stop(_)));
//! assert_eq!(rules.decide(30_000, &server), Decision::Keep);
//! ```

use crate::Context;
use crate::cull_policy::{Decision, Server, ServerState};
use crate::types::{ConfigKey, PluginError};

/// The idle culler's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdleRules {
    /// Inactivity limit in seconds (`--timeout`, default 600); 0: no limit.
    pub timeout_secs: u64,
    /// Age limit in seconds (`--max-age`, default 0: none).
    pub max_age_secs: u64,
    /// Cull idle default servers (`--cull-default-servers`, default true).
    pub cull_default_servers: bool,
    /// Cull idle named servers (`--cull-named-servers`, default true).
    pub cull_named_servers: bool,
    /// Also delete the server's user (`--cull-users`, default false).
    pub cull_users: bool,
}

impl Default for IdleRules {
    fn default() -> Self {
        IdleRules {
            timeout_secs: 600,
            max_age_secs: 0,
            cull_default_servers: true,
            cull_named_servers: true,
            cull_users: false,
        }
    }
}

impl IdleRules {
    /// The options from config keys of the same names.
    pub fn from_config(ctx: &impl Context) -> Result<IdleRules, PluginError> {
        let d = IdleRules::default();
        Ok(IdleRules {
            timeout_secs: ctx.config_or("timeout_secs", d.timeout_secs)?,
            max_age_secs: ctx.config_or("max_age_secs", d.max_age_secs)?,
            cull_default_servers: ctx.config_or("cull_default_servers", d.cull_default_servers)?,
            cull_named_servers: ctx.config_or("cull_named_servers", d.cull_named_servers)?,
            cull_users: ctx.config_or("cull_users", d.cull_users)?,
        })
    }

    /// The config keys [`IdleRules::from_config`] reads, for a plugin's metadata.
    pub fn config_keys() -> Vec<ConfigKey> {
        let key = ConfigKey::optional;
        vec![
            key(
                "timeout_secs",
                "stop a server inactive this long (default 600; 0: never)",
            ),
            key(
                "max_age_secs",
                "stop a server this old, active or not (default 0: never)",
            ),
            key(
                "cull_default_servers",
                "true (default): idle default servers are stopped",
            ),
            key(
                "cull_named_servers",
                "true (default): idle named servers are stopped",
            ),
            key(
                "cull_users",
                "true: also delete the server's user (default false)",
            ),
        ]
    }

    /// The idle culler's decision on `server` at `now_ms`.
    pub fn decide(&self, now_ms: u64, server: &Server) -> Decision {
        if server.state == ServerState::Pending {
            return Decision::Pass;
        }
        let age_secs = now_ms.saturating_sub(server.started_ms) / 1000;
        let inactive_secs =
            now_ms.saturating_sub(server.last_activity_ms.unwrap_or(server.started_ms)) / 1000;
        let allowed = if server.server_name.is_empty() {
            self.cull_default_servers
        } else {
            self.cull_named_servers
        };
        let reason = if self.timeout_secs > 0 && inactive_secs >= self.timeout_secs && allowed {
            format!(
                "inactive for {inactive_secs} s (limit {} s)",
                self.timeout_secs
            )
        } else if self.max_age_secs > 0 && age_secs >= self.max_age_secs {
            // As the idle culler: the age limit ignores the default/named toggles.
            format!("running for {age_secs} s (max age {} s)", self.max_age_secs)
        } else {
            return Decision::Keep;
        };
        if self.cull_users {
            Decision::StopAndDeleteUser(reason)
        } else {
            Decision::Stop(reason)
        }
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first)
        || !text[first.len()..].ends_with(last)
        || text.len() < first.len() + last.len()
    {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MockContext;

    fn server(name: &str, started_s: u64, active_s: Option<u64>, state: ServerState) -> Server {
        Server {
            user: "repo-abc".into(),
            server_name: name.into(),
            image: "reg/binder-x:1".into(),
            repo_url: "https://github.com/a/b".into(),
            provider: "gh".into(),
            spec: "a/b/HEAD".into(),
            started_ms: started_s * 1000,
            last_activity_ms: active_s.map(|s| s * 1000),
            state,
            user_options_json: "{}".into(),
        }
    }

    #[test]
    fn the_idle_cullers_rules() {
        let rules = IdleRules {
            timeout_secs: 600,
            max_age_secs: 3600,
            ..IdleRules::default()
        };
        let now = 10_000_000;
        let s = now / 1000;
        // Idle past the timeout; no activity counts from the start.
        assert_eq!(
            rules.decide(now, &server("", s - 700, Some(s - 601), ServerState::Ready)),
            Decision::Stop("inactive for 601 s (limit 600 s)".into())
        );
        assert!(matches!(
            rules.decide(now, &server("", s - 700, None, ServerState::Ready)),
            Decision::Stop(_)
        ));
        assert_eq!(
            rules.decide(now, &server("", s - 700, Some(s - 10), ServerState::Ready)),
            Decision::Keep
        );
        // Max age stops active servers, whatever the toggles.
        let named_off = IdleRules {
            cull_named_servers: false,
            ..rules.clone()
        };
        assert_eq!(
            named_off.decide(now, &server("x", s - 4000, Some(s - 5), ServerState::Ready)),
            Decision::Stop("running for 4000 s (max age 3600 s)".into())
        );
        assert_eq!(
            named_off.decide(
                now,
                &server("x", s - 700, Some(s - 650), ServerState::Ready)
            ),
            Decision::Keep,
            "idle named servers are kept when told so"
        );
        // Pending servers are skipped; users deleted when asked.
        assert_eq!(
            rules.decide(now, &server("", s - 9000, None, ServerState::Pending)),
            Decision::Pass
        );
        let users = IdleRules {
            cull_users: true,
            ..rules
        };
        assert!(matches!(
            users.decide(now, &server("", s - 700, None, ServerState::Ready)),
            Decision::StopAndDeleteUser(_)
        ));
    }

    #[test]
    fn rules_from_config() {
        let ctx = MockContext::new()
            .with_config("timeout_secs", "120")
            .with_config("cull_users", "true");
        let rules = IdleRules::from_config(&ctx).unwrap();
        assert_eq!(
            (rules.timeout_secs, rules.max_age_secs, rules.cull_users),
            (120, 0, true)
        );
        let bad = MockContext::new().with_config("timeout_secs", "ten minutes");
        assert!(
            matches!(IdleRules::from_config(&bad), Err(PluginError::InvalidConfig(m)) if m.contains("timeout_secs"))
        );
    }

    #[test]
    fn globs() {
        assert!(glob_match(
            "gh/binder-examples/*",
            "gh/binder-examples/requirements/HEAD"
        ));
        assert!(glob_match("gh/*/workshop-*/*", "gh/org/workshop-2026/main"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("gh/a/*", "gl/a/b"));
        assert!(!glob_match("a*a", "a"));
    }
}
