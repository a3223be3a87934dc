//! A cull policy that misbehaves on purpose, to show the culler carries on.
use bindery_sdk::prelude::*;

pub struct HostileCull;

impl CullPolicy for HostileCull {
    type Config = ();

    fn metadata(_: bindery_sdk::Package) -> PluginMetadata {
        PluginMetadata {
            name: "hostile-cull".into(),
            version: "0".into(),
            kind: PluginKind::CullPolicy,
            description: "misbehaves as config `mode` says".into(),
            requests: CapabilityRequests {
                hosts: vec![],
                config_keys: vec![ConfigKey {
                    name: "mode".into(),
                    description: "loop, bomb, panic, short, stop-all or clock".into(),
                    required: true,
                }],
                secrets: vec![],
            },
        }
    }

    fn decide(
        ctx: &impl Context,
        _now_ms: u64,
        servers: Vec<Server>,
    ) -> Result<Vec<Decision>, PluginError> {
        match ctx.config("mode").as_deref() {
            Some("loop") => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Some("bomb") => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            Some("panic") => panic!("hostile cull policy panics on purpose"),
            // Fewer decisions than servers.
            Some("short") => Ok(Vec::new()),
            Some("stop-all") => Ok(servers
                .iter()
                .map(|_| Decision::Stop("told to".into()))
                .collect()),
            // Reads the time from the `clock` capability, not the argument:
            // stops what that clock says has run for a minute.
            Some("clock") => {
                let now = ctx.now_ms();
                Ok(servers
                    .iter()
                    .map(|s| match now.saturating_sub(s.started_ms) >= 60_000 {
                        true => Decision::Stop(format!("the clock says {now}")),
                        false => Decision::Keep,
                    })
                    .collect())
            }
            other => Err(PluginError::InvalidConfig(format!(
                "unknown mode {other:?}"
            ))),
        }
    }
}

bindery_sdk::export_cull_policy!(HostileCull);
