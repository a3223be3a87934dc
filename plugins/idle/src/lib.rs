//! The `idle` cull policy: jupyterhub-idle-culler's semantics, so a Bindery
//! deployment culls as a BinderHub with the z2jh culler does (mybinder.org:
//! `timeout_secs = 600`, `max_age_secs = 21600`, `cull_users = true`).
use bindery_sdk::idle::IdleRules;
use bindery_sdk::prelude::*;

pub struct Idle;

impl CullPolicy for Idle {
    fn metadata() -> PluginMetadata {
        PluginMetadata {
            name: "idle".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: PluginKind::CullPolicy,
            description: "stops servers idle past a timeout or older than a maximum age".into(),
            requests: CapabilityRequests {
                hosts: vec![],
                config_keys: IdleRules::config_keys(),
                secrets: vec![],
            },
        }
    }

    fn decide(
        ctx: &impl Context,
        now_ms: u64,
        servers: Vec<Server>,
    ) -> Result<Vec<Decision>, PluginError> {
        let rules = IdleRules::from_config(ctx)?;
        Ok(servers.iter().map(|s| rules.decide(now_ms, s)).collect())
    }
}

bindery_sdk::export_cull_policy!(Idle);
