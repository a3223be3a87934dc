//! A cull policy written with the SDK: during a workshop's hours (UTC), its
//! servers are kept however idle they are; outside them, and for every other
//! repository, the next policy in the chain decides. Config: `spec` (a
//! `provider/spec` pattern), `from_hour` and `to_hour` (0-24).
use bindery_sdk::idle::glob_match;
use bindery_sdk::prelude::*;

pub struct WorkshopHours;

impl CullPolicy for WorkshopHours {
    fn metadata() -> PluginMetadata {
        let key = ConfigKey::required;
        PluginMetadata {
            name: "workshop-hours".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: PluginKind::CullPolicy,
            description: "keeps a workshop's servers during its hours".into(),
            requests: CapabilityRequests {
                hosts: vec![],
                config_keys: vec![
                    key("spec", "provider/spec pattern"),
                    key("from_hour", "UTC hour it starts"),
                    key("to_hour", "UTC hour it ends"),
                ],
                secrets: vec![],
            },
        }
    }

    fn decide(
        ctx: &impl Context,
        now_ms: u64,
        servers: Vec<Server>,
    ) -> Result<Vec<Decision>, PluginError> {
        let spec = ctx.required_config("spec")?;
        let (from, to): (u64, u64) = (
            ctx.config_or("from_hour", 9)?,
            ctx.config_or("to_hour", 17)?,
        );
        let hour = now_ms / 3_600_000 % 24;
        let open = from <= hour && hour < to;
        Ok(servers
            .iter()
            .map(
                |s| match open && glob_match(&spec, &format!("{}/{}", s.provider, s.spec)) {
                    true => Decision::Keep,
                    false => Decision::Pass,
                },
            )
            .collect())
    }
}

bindery_sdk::export_cull_policy!(WorkshopHours);
