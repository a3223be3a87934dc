//! The `per-repo` cull policy: the idle culler's rules with limits chosen by
//! the server's `provider/spec`, e.g. a longer session for a workshop's
//! repository. Servers no rule matches are passed on to the next policy.
//!
//! ```toml
//! [plugins.per-repo.config]
//! rules = [
//!   { spec = "gh/org/workshop-*", timeout_secs = 3600, max_age_secs = 28800 },
//!   { spec = "gh/petlja/*", timeout_secs = 300 },
//! ]
//! cull_users = true   # and the other toggles of `idle`, for every rule
//! ```
use bindery_sdk::config::Toml;
use bindery_sdk::idle::{IdleRules, glob_match};
use bindery_sdk::prelude::*;
use serde::Deserialize;

pub struct PerRepo;

/// One rule; the first whose `spec` matches decides.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// A pattern over `provider/spec`; `*` matches anything.
    spec: String,
    timeout_secs: Option<u64>,
    max_age_secs: Option<u64>,
}

bindery_sdk::config! {
    pub struct Config {
        /// list of { spec = "<provider>/<spec pattern>", timeout_secs, max_age_secs }; the first match decides
        rules: Toml<Vec<Rule>>,
        /// true (default): idle default servers are stopped
        cull_default_servers: bool = true,
        /// true (default): idle named servers are stopped
        cull_named_servers: bool = true,
        /// true: also delete the server's user (default false)
        cull_users: bool = false,
    }
}

impl CullPolicy for PerRepo {
    type Config = Config;

    fn decide(
        ctx: &impl Context,
        now_ms: u64,
        servers: Vec<Server>,
    ) -> Result<Vec<Decision>, PluginError> {
        let Config {
            rules,
            cull_default_servers,
            cull_named_servers,
            cull_users,
        } = Config::read(ctx)?;
        let base = IdleRules {
            cull_default_servers,
            cull_named_servers,
            cull_users,
            ..IdleRules::default()
        };
        Ok(servers
            .iter()
            .map(|s| {
                let key = format!("{}/{}", s.provider, s.spec);
                match rules.0.iter().find(|r| glob_match(&r.spec, &key)) {
                    Some(rule) => IdleRules {
                        timeout_secs: rule.timeout_secs.unwrap_or(0),
                        max_age_secs: rule.max_age_secs.unwrap_or(0),
                        ..base.clone()
                    }
                    .decide(now_ms, s),
                    None => Decision::Pass,
                }
            })
            .collect())
    }
}

bindery_sdk::export_cull_policy!(PerRepo);

#[cfg(test)]
mod tests {
    use super::*;
    use bindery_sdk::testing::MockContext;

    fn server(spec: &str, idle_s: u64) -> Server {
        Server {
            user: "u".into(),
            server_name: String::new(),
            image: "i".into(),
            repo_url: "r".into(),
            provider: "gh".into(),
            spec: spec.into(),
            started_ms: 0,
            last_activity_ms: Some(100_000_000 - idle_s * 1000),
            state: ServerState::Ready,
            user_options_json: "{}".into(),
        }
    }

    #[test]
    fn limits_by_spec() {
        let ctx = MockContext::new().with_config("rules", r#"[{ spec = "gh/org/workshop-*", timeout_secs = 3600 }, { spec = "gh/petlja/*", timeout_secs = 300 }]"#);
        let got = PerRepo::decide(
            &ctx,
            100_000_000,
            vec![
                server("org/workshop-1/main", 1000),
                server("petlja/x/main", 1000),
                server("other/x/main", 99_000),
            ],
        )
        .unwrap();
        assert_eq!(got[0], Decision::Keep, "the workshop's hour is not up");
        assert!(matches!(&got[1], Decision::Stop(r) if r.contains("limit 300 s")));
        assert_eq!(got[2], Decision::Pass, "no rule: the next policy decides");
    }

    #[test]
    fn bad_rules_are_a_config_error() {
        let ctx = MockContext::new().with_config("rules", r#"[{ spec = "gh/*", timeout = 5 }]"#);
        assert!(
            matches!(PerRepo::decide(&ctx, 0, vec![]), Err(PluginError::InvalidConfig(m)) if m.contains("rules must be"))
        );
    }
}
