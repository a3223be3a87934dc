//! Upstream's per-provider spec rules: `banned_specs`, `allowed_specs`,
//! `high_quota_specs` and `spec_config`, each a regex matched
//! case-insensitively at the start of the raw spec (Python's `re.match`).

use regex::{Regex, RegexBuilder};
use serde_json::{Map, Value};

use crate::config::{ConfigError, PluginConfig, QuotaConfig};

/// One provider's compiled rules.
#[derive(Debug, Default)]
pub struct SpecPolicy {
    banned: Vec<Regex>,
    allowed: Vec<Regex>,
    high_quota: Vec<Regex>,
    spec_config: Vec<(Regex, Map<String, Value>)>,
}

fn compile(provider: &str, field: &str, pattern: &str) -> Result<Regex, ConfigError> {
    RegexBuilder::new(&format!("^(?:{pattern})"))
        .case_insensitive(true)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            ConfigError::Invalid(format!(
                "[plugins.{provider}] {field}: {pattern:?} is not a valid regex: {e}"
            ))
        })
}

fn compile_all(
    provider: &str,
    field: &str,
    patterns: &[String],
) -> Result<Vec<Regex>, ConfigError> {
    patterns
        .iter()
        .map(|p| compile(provider, field, p))
        .collect()
}

impl SpecPolicy {
    /// Compiles the rules of `[plugins.<provider>]`; a bad regex is a config error naming it.
    pub fn new(provider: &str, config: &PluginConfig) -> Result<SpecPolicy, ConfigError> {
        Ok(SpecPolicy {
            banned: compile_all(provider, "banned_specs", &config.banned_specs)?,
            allowed: compile_all(provider, "allowed_specs", &config.allowed_specs)?,
            high_quota: compile_all(provider, "high_quota_specs", &config.high_quota_specs)?,
            spec_config: config
                .spec_config
                .iter()
                .map(|s| {
                    Ok((
                        compile(provider, "spec_config", &s.pattern)?,
                        s.config.clone(),
                    ))
                })
                .collect::<Result<_, ConfigError>>()?,
        })
    }

    /// Banned, or not allowed when an allow-list is set.
    pub fn is_banned(&self, spec: &str) -> bool {
        self.banned.iter().any(|r| r.is_match(spec))
            || (!self.allowed.is_empty() && !self.allowed.iter().any(|r| r.is_match(spec)))
    }

    /// Matches `high_quota_specs`.
    pub fn has_higher_quota(&self, spec: &str) -> bool {
        self.high_quota.iter().any(|r| r.is_match(spec))
    }

    /// `{"quota": …}` from the quota settings, then every matching
    /// `spec_config` item's settings in order, as upstream's `repo_config`.
    pub fn repo_config(&self, spec: &str, quota: &QuotaConfig) -> Map<String, Value> {
        let q = if self.has_higher_quota(spec) {
            quota.per_repo_higher
        } else {
            quota.per_repo
        };
        let mut out = Map::new();
        out.insert("quota".into(), q.map_or(Value::Null, Value::from));
        for (pattern, config) in &self.spec_config {
            if pattern.is_match(spec) {
                out.extend(config.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SpecConfig;

    fn policy(f: impl FnOnce(&mut PluginConfig)) -> SpecPolicy {
        let mut c = PluginConfig::default();
        f(&mut c);
        SpecPolicy::new("gh", &c).unwrap()
    }

    #[test]
    fn bans_match_at_the_start_ignoring_case() {
        let p = policy(|c| c.banned_specs = vec!["^evil/.*".into(), "ds-100/textbook".into()]);
        assert!(p.is_banned("EVIL/x/HEAD"));
        assert!(p.is_banned("DS-100/textbook/main"));
        assert!(
            !p.is_banned("good/evil/HEAD"),
            "re.match anchors at the start only"
        );
        let p = policy(|c| c.allowed_specs = vec!["binder-examples/".into()]);
        assert!(!p.is_banned("binder-examples/requirements/HEAD"));
        assert!(p.is_banned("someone/else/HEAD"));
    }

    #[test]
    fn repo_config_merges_quota_and_spec_config() {
        let p = policy(|c| {
            c.high_quota_specs = vec!["jupyterlab/".into()];
            c.spec_config = vec![SpecConfig {
                pattern: "jupyterlab/jupyterlab-demo".into(),
                config: serde_json::json!({"quota": 500, "node": "big"})
                    .as_object()
                    .unwrap()
                    .clone(),
            }];
        });
        let quota = QuotaConfig {
            per_repo: Some(100),
            per_repo_higher: Some(200),
            ..Default::default()
        };
        assert_eq!(
            Value::Object(p.repo_config("other/x/HEAD", &quota)),
            serde_json::json!({"quota": 100})
        );
        assert_eq!(
            Value::Object(p.repo_config("JupyterLab/other/HEAD", &quota)),
            serde_json::json!({"quota": 200})
        );
        assert_eq!(
            Value::Object(p.repo_config("jupyterlab/jupyterlab-demo/HEAD", &quota)),
            serde_json::json!({"quota": 500, "node": "big"})
        );
    }

    #[test]
    fn bad_patterns_name_the_field() {
        let c = PluginConfig {
            banned_specs: vec!["(unclosed".into()],
            ..PluginConfig::default()
        };
        let e = SpecPolicy::new("gh", &c).unwrap_err().to_string();
        assert!(
            e.contains("[plugins.gh] banned_specs") && e.contains("(unclosed"),
            "{e}"
        );
    }
}
