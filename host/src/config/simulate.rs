//! `[simulate]`: the model `bindery simulate` replays a launch trace with.
//! Everything the plugins decide is theirs; this is the rest of the world.

use serde::{Deserialize, Serialize};

/// What `bindery simulate` assumes of the world around the policies.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SimulateConfig {
    /// Seed of the model's draws: one trace, configuration and seed give one report.
    pub seed: u64,
    /// Time to build an image, drawn once per image; the first launch of a ref builds it.
    pub build: Spread,
    /// Time from the spawn request to a ready server (default: the hub
    /// spawn measured in `BENCHMARKS.md`, about 2.3 s).
    pub spawn: Spread,
    /// How long a user works once the server is ready; a trace's own
    /// `session_secs` wins.
    pub session: Spread,
    /// How often the hub records a server's activity (JupyterHub's
    /// `last_activity_interval`): a policy sees activity as of the last record.
    pub activity_interval_secs: u64,
    /// true: every image the trace launches is in the registry before it starts.
    pub prebuilt: bool,
}

impl Default for SimulateConfig {
    fn default() -> Self {
        SimulateConfig {
            seed: 1,
            build: Spread {
                median_secs: 240.0,
                p90_secs: 900.0,
            },
            spawn: Spread {
                median_secs: 2.3,
                p90_secs: 3.0,
            },
            session: Spread {
                median_secs: 900.0,
                p90_secs: 3600.0,
            },
            activity_interval_secs: 300,
            prebuilt: false,
        }
    }
}

/// A duration drawn from a log-normal distribution with this median and
/// 90th percentile (equal: always the median).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spread {
    /// Half the draws are shorter.
    pub median_secs: f64,
    /// Nine in ten draws are shorter.
    pub p90_secs: f64,
}

impl SimulateConfig {
    /// What is wrong with the model, if anything.
    pub fn problem(&self) -> Option<String> {
        [
            ("build", self.build),
            ("spawn", self.spawn),
            ("session", self.session),
        ]
        .into_iter()
        .find_map(|(name, s)| {
            let ok = s.median_secs.is_finite()
                && s.median_secs >= 0.0
                && s.p90_secs.is_finite()
                && s.p90_secs >= s.median_secs
                && (s.median_secs > 0.0 || s.p90_secs == 0.0);
            (!ok).then(|| {
                format!(
                    "simulate.{name}: median_secs ({}) and p90_secs ({}) must be finite, with 0 <= median <= p90 (a median of 0 only with a p90 of 0)",
                    s.median_secs, s.p90_secs
                )
            })
        })
    }
}
