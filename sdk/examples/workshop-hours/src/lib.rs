//! A cull policy written with the SDK: during a workshop's hours (UTC), its
//! servers are kept however idle they are; outside them, and for every other
//! repository, the next policy in the chain decides. Config: `spec` (a
//! `provider/spec` pattern), `from_hour` and `to_hour` (0-24).
use bindery_sdk::idle::glob_match;
use bindery_sdk::prelude::*;

bindery_sdk::config! {
    pub struct Workshop {
        /// provider/spec pattern
        spec: String,
        /// UTC hour it starts (default 9)
        from_hour: u64 = 9,
        /// UTC hour it ends (default 17)
        to_hour: u64 = 17,
    }
}

pub struct WorkshopHours;

impl CullPolicy for WorkshopHours {
    type Config = Workshop;

    fn decide(
        ctx: &impl Context,
        now_ms: u64,
        servers: Vec<Server>,
    ) -> Result<Vec<Decision>, PluginError> {
        let Workshop {
            spec,
            from_hour: from,
            to_hour: to,
        } = Workshop::read(ctx)?;
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
