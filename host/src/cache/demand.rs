//! The `demand` tree: per image, its recent launches as a count that halves
//! every half-life, which is what a pool policy sizes the warm pool by. A
//! burst fades by itself, and one number per image is all that is kept.

use serde::{Deserialize, Serialize};

use super::CacheError;
use super::tree::JsonTree;

/// Below this, an image's launches are forgotten: about ten half-lives
/// after a single launch.
const FORGOTTEN: f64 = 1e-3;

/// One image's recent launches.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Demand {
    /// The image as launches name it.
    pub image: String,
    /// The repository, provider and spec of its latest launch.
    pub repo_url: String,
    /// The provider's prefix, e.g. `gh`.
    pub provider: String,
    /// The spec after the prefix.
    pub spec: String,
    /// The `user_options` of its latest launch but the client's address:
    /// what a server started for the pool is started with.
    #[serde(default)]
    pub options: serde_json::Map<String, serde_json::Value>,
    /// The count at `at_ms`.
    pub launches: f64,
    /// When the count was last brought up to date (the latest launch).
    pub at_ms: u64,
}

impl Demand {
    /// The count at `now_ms`: halved for every `half_life_ms` since `at_ms`.
    pub fn launches_at(&self, now_ms: u64, half_life_ms: u64) -> f64 {
        let age = now_ms.saturating_sub(self.at_ms) as f64;
        self.launches * (-age / half_life_ms.max(1) as f64).exp2()
    }
}

impl Demand {
    /// This count (of `launch.image`, or the default for a first launch)
    /// with `launch` at `now_ms` added, and `launch`'s description.
    pub fn counted(&self, launch: &Demand, now_ms: u64, half_life_ms: u64) -> Demand {
        Demand {
            launches: self.launches_at(now_ms, half_life_ms) + 1.0,
            at_ms: now_ms.max(self.at_ms),
            ..launch.clone()
        }
    }
}

/// The keys of `counts` with launches left at `now_ms`, each with its
/// count as of then, the most launched first (a stable sort: ties keep the
/// order of `counts`).
pub fn ranked<'a, K>(
    counts: impl IntoIterator<Item = (K, &'a Demand)>,
    now_ms: u64,
    half_life_ms: u64,
) -> Vec<(K, f64)> {
    let mut all: Vec<(K, f64)> = counts
        .into_iter()
        .map(|(key, d)| (key, d.launches_at(now_ms, half_life_ms)))
        .filter(|(_, launches)| *launches >= FORGOTTEN)
        .collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1));
    all
}

/// Recent launches by image.
#[derive(Clone)]
pub struct LaunchDemand {
    tree: JsonTree,
    half_life_ms: u64,
}

impl LaunchDemand {
    pub(super) fn open(
        db: &sled::Db,
        path: &std::path::Path,
        half_life_ms: u64,
    ) -> Result<LaunchDemand, sled::Error> {
        Ok(LaunchDemand {
            tree: JsonTree::open(db, path, "demand")?,
            half_life_ms,
        })
    }

    /// Counts a launch of `launch.image` at `now_ms` (atomically: launches
    /// at once all count).
    pub fn record(&self, launch: &Demand, now_ms: u64) -> Result<(), CacheError> {
        let half_life_ms = self.half_life_ms;
        self.tree.update(&launch.image, |old: Demand| {
            Some(old.counted(launch, now_ms, half_life_ms))
        })
    }

    /// Every image with launches left at `now_ms`, counts as of then, the
    /// most launched first.
    /// (`launches` is the count as of `now_ms`; `at_ms` stays the latest
    /// launch, a pool policy's `last-launch-ms`.)
    pub fn at(&self, now_ms: u64) -> Result<Vec<Demand>, CacheError> {
        let counts = self.tree.values::<Demand>()?;
        Ok(
            ranked(counts.iter().map(|d| (d, d)), now_ms, self.half_life_ms)
                .into_iter()
                .map(|(d, launches)| Demand {
                    launches,
                    ..d.clone()
                })
                .collect(),
        )
    }

    /// Forgets images whose launches have faded out, and all but the
    /// `max_images` most launched; how many went. (An image first launched
    /// during the sweep may go too: its count starts again.)
    pub fn prune(&self, now_ms: u64, max_images: usize) -> Result<usize, CacheError> {
        let kept: std::collections::HashSet<String> = self
            .at(now_ms)?
            .into_iter()
            .take(max_images)
            .map(|d| d.image)
            .collect();
        self.tree
            .remove_where(|d: &Demand| !kept.contains(&d.image))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Cache;

    const HOUR: u64 = 3_600_000;

    fn launch(image: &str) -> Demand {
        Demand {
            image: image.into(),
            repo_url: format!("https://github.com/a/{image}"),
            provider: "gh".into(),
            spec: format!("a/{image}/HEAD"),
            ..Demand::default()
        }
    }

    fn demand(dir: &std::path::Path) -> LaunchDemand {
        Cache::open(dir).unwrap().demand(HOUR).unwrap()
    }

    #[test]
    fn launches_count_one_each_and_halve_every_half_life() {
        let dir = tempfile::tempdir().unwrap();
        let d = demand(dir.path());
        for _ in 0..4 {
            d.record(&launch("x"), 0).unwrap();
        }
        d.record(&launch("y"), HOUR).unwrap();
        let now = d.at(HOUR).unwrap();
        assert_eq!(now[0].image, "x");
        assert!((now[0].launches - 2.0).abs() < 1e-9, "{now:?}");
        assert!((now[1].launches - 1.0).abs() < 1e-9, "{now:?}");
        // A launch adds to what is left of the earlier ones.
        d.record(&launch("x"), 2 * HOUR).unwrap();
        let later = d.at(2 * HOUR).unwrap();
        assert!((later[0].launches - 2.0).abs() < 1e-9, "{later:?}");
        assert_eq!(later[0].spec, "a/x/HEAD");
        // A pool policy's `last-launch-ms`: the latest launch, not the time asked.
        assert_eq!(d.at(3 * HOUR).unwrap()[0].at_ms, 2 * HOUR);
        // Long after, nothing is left.
        assert!(d.at(30 * HOUR).unwrap().is_empty());
    }

    #[test]
    fn a_launch_recorded_late_does_not_move_the_clock_back() {
        let dir = tempfile::tempdir().unwrap();
        let d = demand(dir.path());
        d.record(&launch("x"), HOUR).unwrap();
        // Another replica's clock, or a slow writer, a moment behind.
        d.record(&launch("x"), HOUR - 1000).unwrap();
        let now = d.at(HOUR).unwrap();
        assert!((now[0].launches - 2.0).abs() < 1e-3, "{now:?}");
    }

    #[test]
    fn pruning_keeps_the_most_launched_and_forgets_the_faded() {
        let dir = tempfile::tempdir().unwrap();
        let d = demand(dir.path());
        for (i, image) in ["a", "b", "c", "d"].into_iter().enumerate() {
            for _ in 0..=i {
                d.record(&launch(image), 0).unwrap();
            }
        }
        assert_eq!(d.prune(0, 2).unwrap(), 2);
        let kept: Vec<String> = d.at(0).unwrap().into_iter().map(|d| d.image).collect();
        assert_eq!(kept, ["d", "c"]);
        assert_eq!(d.prune(40 * HOUR, 10).unwrap(), 2);
        assert!(d.at(0).unwrap().is_empty());
    }
}
