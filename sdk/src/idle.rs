//! jupyterhub-idle-culler's rules (v2.0.0), for cull policies to reuse: a
//! server inactive for `timeout` is stopped (if the default/named toggle
//! allows), one older than `max_age` is stopped whatever its activity, and
//! with `cull_users` its temporary user is deleted too. Pending servers are
//! left alone, as the idle culler skips them.
//!
//! ```
//! use bindery_sdk::config::PluginConfig;
//! use bindery_sdk::idle::IdleRules;
//! use bindery_sdk::prelude::*;
//! use bindery_sdk::testing::MockContext;
//!
//! let rules = IdleRules::read(&MockContext::new().with_config("timeout_secs", "60")).unwrap();
//! let server = Server {
//!     user: "u".into(), server_name: "".into(), image: "i".into(), repo_url: "r".into(),
//!     provider: "gh".into(), spec: "a/b/HEAD".into(), started_ms: 0,
//!     last_activity_ms: Some(1_000), state: ServerState::Ready, user_options_json: "{}".into(),
//! };
//! assert!(matches!(rules.decide(62_000, &server), Decision::Stop(_)));
//! assert_eq!(rules.decide(30_000, &server), Decision::Keep);
//! ```

use crate::cull_policy::{Decision, Server, ServerState};

crate::config! {
    /// The idle culler's options, from config keys of the same names.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct IdleRules {
        /// stop a server inactive this long (`--timeout`; default 600; 0: never)
        timeout_secs: u64 = 600,
        /// stop a server this old, active or not (`--max-age`; default 0: never)
        max_age_secs: u64 = 0,
        /// true (default): idle default servers are stopped
        cull_default_servers: bool = true,
        /// true (default): idle named servers are stopped
        cull_named_servers: bool = true,
        /// true: also delete the server's user (`--cull-users`; default false)
        cull_users: bool = false,
    }
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
    use crate::config::PluginConfig;
    use crate::testing::MockContext;
    use crate::types::PluginError;

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
        let rules = IdleRules::read(&ctx).unwrap();
        assert_eq!(
            (rules.timeout_secs, rules.max_age_secs, rules.cull_users),
            (120, 0, true)
        );
        let bad = MockContext::new().with_config("timeout_secs", "ten minutes");
        assert!(
            matches!(IdleRules::read(&bad), Err(PluginError::InvalidConfig(m)) if m.contains("timeout_secs"))
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
