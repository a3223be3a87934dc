//! The `idle` cull policy: jupyterhub-idle-culler's semantics, so a Bindery
//! deployment culls as a BinderHub with the z2jh culler does (mybinder.org:
//! `timeout_secs = 600`, `max_age_secs = 21600`, `cull_users = true`).
use bindery_sdk::idle::IdleRules;
use bindery_sdk::prelude::*;

pub struct Idle;

impl CullPolicy for Idle {
    type Config = IdleRules;

    fn decide(
        ctx: &impl Context,
        now_ms: u64,
        servers: Vec<Server>,
    ) -> Result<Vec<Decision>, PluginError> {
        let rules = IdleRules::read(ctx)?;
        Ok(servers.iter().map(|s| rules.decide(now_ms, s)).collect())
    }
}

bindery_sdk::export_cull_policy!(Idle);
