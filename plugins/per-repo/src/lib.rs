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
use bindery_sdk::idle::{IdleRules, glob_match};
use bindery_sdk::prelude::*;
use serde::Deserialize;

pub struct PerRepo;

/// One rule; the first whose `spec` matches decides.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    /// A pattern over `provider/spec`; `*` matches anything.
    spec: String,
    timeout_secs: Option<u64>,
    max_age_secs: Option<u64>,
}

#[derive(Deserialize)]
struct Rules {
    rules: Vec<Rule>,
}

/// The rules from the `rules` key (the host hands a TOML array as its TOML text).
fn rules(ctx: &impl Context) -> Result<Vec<Rule>, PluginError> {
    let Some(text) = ctx.config("rules") else {
        return Ok(Vec::new());
    };
    let parsed: Rules = toml::from_str(&format!("rules = {text}")).map_err(|e| {
        PluginError::InvalidConfig(format!(
            "rules must be a list of {{ spec, timeout_secs, max_age_secs }} tables: {e}"
        ))
    })?;
    Ok(parsed.rules)
}

impl CullPolicy for PerRepo {
    fn metadata() -> PluginMetadata {
        let mut config_keys = IdleRules::config_keys();
        config_keys.retain(|k| k.name != "timeout_secs" && k.name != "max_age_secs");
        config_keys.push(ConfigKey::required("rules", "list of { spec = \"<provider>/<spec pattern>\", timeout_secs, max_age_secs }; the first match decides"));
        PluginMetadata {
            name: "per-repo".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: PluginKind::CullPolicy,
            description: "idle timeouts and maximum ages by repository".into(),
            requests: CapabilityRequests {
                hosts: vec![],
                config_keys,
                secrets: vec![],
            },
        }
    }

    fn decide(
        ctx: &impl Context,
        now_ms: u64,
        servers: Vec<Server>,
    ) -> Result<Vec<Decision>, PluginError> {
        let (rules, base) = (rules(ctx)?, IdleRules::from_config(ctx)?);
        Ok(servers
            .iter()
            .map(|s| {
                let key = format!("{}/{}", s.provider, s.spec);
                match rules.iter().find(|r| glob_match(&r.spec, &key)) {
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
