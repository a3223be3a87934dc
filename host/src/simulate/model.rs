//! The model's draws. Each is tied to what it is drawn for (a launch, an
//! image, the pool's n-th spawn) rather than to the order of events, so two
//! configurations replayed on one trace meet the same builds, spawns and
//! sessions, and differ only by what their policies decide.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, LogNormal};

use crate::config::{SimulateConfig, Spread};

/// z of the normal distribution's 90th percentile.
const Z90: f64 = 1.281_551_565_544_600_4;

/// Draws durations in milliseconds from a [`Spread`].
#[derive(Debug, Clone, Copy)]
enum Draw {
    Fixed(f64),
    LogNormal(LogNormal<f64>),
}

impl Draw {
    fn of(spread: Spread) -> Draw {
        if spread.p90_secs <= spread.median_secs || spread.median_secs <= 0.0 {
            return Draw::Fixed(spread.median_secs);
        }
        let sigma = (spread.p90_secs / spread.median_secs).ln() / Z90;
        match LogNormal::new(spread.median_secs.ln(), sigma) {
            Ok(d) => Draw::LogNormal(d),
            Err(_) => Draw::Fixed(spread.median_secs),
        }
    }

    fn ms(&self, rng: &mut StdRng) -> u64 {
        let secs = match self {
            Draw::Fixed(s) => *s,
            Draw::LogNormal(d) => d.sample(rng),
        };
        ms(secs)
    }
}

/// `secs` in whole milliseconds, clamped to what a replay can hold.
fn ms(secs: f64) -> u64 {
    (secs * 1000.0).round().clamp(0.0, 1e15) as u64
}

/// The durations of one replay.
pub struct Model {
    seed: u64,
    build: Draw,
    spawn: Draw,
    session: Draw,
}

/// What a draw is for: each has its own stream.
enum Purpose<'a> {
    Build(&'a str),
    Spawn(usize),
    PoolSpawn(u64),
    Session(usize),
}

impl Purpose<'_> {
    fn name(&self) -> String {
        match self {
            Purpose::Build(image) => format!("build {image}"),
            Purpose::Spawn(launch) => format!("spawn {launch}"),
            Purpose::PoolSpawn(n) => format!("pool spawn {n}"),
            Purpose::Session(launch) => format!("session {launch}"),
        }
    }
}

impl Model {
    /// The model `config` describes.
    pub fn new(config: &SimulateConfig) -> Model {
        Model {
            seed: config.seed,
            build: Draw::of(config.build),
            spawn: Draw::of(config.spawn),
            session: Draw::of(config.session),
        }
    }

    fn rng(&self, purpose: Purpose<'_>) -> StdRng {
        // A hash that is stable across runs, builds and platforms.
        let key = format!("{} {}", self.seed, purpose.name());
        StdRng::seed_from_u64(crate::federation::placement::hash(&key))
    }

    /// How long `image`'s build takes.
    pub fn build_ms(&self, image: &str) -> u64 {
        self.build.ms(&mut self.rng(Purpose::Build(image)))
    }

    /// How long the spawn for launch `launch` takes.
    pub fn spawn_ms(&self, launch: usize) -> u64 {
        self.spawn.ms(&mut self.rng(Purpose::Spawn(launch)))
    }

    /// How long the pool's `n`-th spawn takes.
    pub fn pool_spawn_ms(&self, n: u64) -> u64 {
        self.spawn.ms(&mut self.rng(Purpose::PoolSpawn(n)))
    }

    /// How long the user of launch `launch` works, unless the trace says.
    pub fn session_ms(&self, launch: usize, traced_secs: Option<f64>) -> u64 {
        match traced_secs {
            Some(s) => ms(s),
            None => self.session.ms(&mut self.rng(Purpose::Session(launch))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_follow_the_spread_and_depend_only_on_what_they_are_for() {
        let config = SimulateConfig {
            session: Spread {
                median_secs: 600.0,
                p90_secs: 3000.0,
            },
            spawn: Spread {
                median_secs: 2.0,
                p90_secs: 2.0,
            },
            ..SimulateConfig::default()
        };
        let model = Model::new(&config);
        let mut sessions: Vec<u64> = (0..4000).map(|i| model.session_ms(i, None)).collect();
        sessions.sort_unstable();
        let (median, p90) = (sessions[2000] as f64, sessions[3600] as f64);
        assert!((median / 600_000.0 - 1.0).abs() < 0.1, "{median}");
        assert!((p90 / 3_000_000.0 - 1.0).abs() < 0.15, "{p90}");
        assert_eq!(model.spawn_ms(3), 2000, "median = p90: fixed");
        assert_eq!(model.session_ms(5, Some(1.5)), 1500, "the trace's own");
        assert_eq!(model.build_ms("a"), Model::new(&config).build_ms("a"));
        assert_ne!(model.build_ms("a"), model.build_ms("b"));
    }
}
