//! Keeps the database bounded while Bindery runs, not only at start-up: every
//! few minutes it drops images not seen within `registry.found_ttl_secs`
//! (they are asked of the registry again anyway), finished build records
//! older than a day, and the environment images of all but the
//! `cache.max_environment_repos` repositories built most recently. The
//! `refs` tree bounds itself on every write (`cache.max_refs`).

use std::time::Duration;

use super::{BuildLog, CacheError, Environments, ImageCache, RECORD_RETENTION_MS, Trees};
use crate::config::Config;

/// How often the janitor sweeps.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(300);

/// What one sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Image entries.
    pub images: usize,
    /// Build records.
    pub builds: usize,
    /// Repositories' environment lists.
    pub environments: usize,
}

/// Sweeps the trees it was given.
#[derive(Clone)]
pub struct Janitor {
    images: Option<ImageCache>,
    builds: Option<BuildLog>,
    environments: Option<Environments>,
    image_ttl_ms: u64,
    max_environment_repos: usize,
}

impl Janitor {
    /// A janitor for `trees`, by `config`'s limits.
    pub fn new(trees: &Trees, config: &Config) -> Janitor {
        Janitor {
            images: trees.images.clone(),
            builds: trees.builds.clone(),
            environments: trees.environments.clone(),
            image_ttl_ms: config.registry.found_ttl_secs.saturating_mul(1000),
            max_environment_repos: config.cache.max_environment_repos,
        }
    }

    /// One sweep as of `now_ms`.
    pub fn sweep(&self, now_ms: u64) -> Result<Swept, CacheError> {
        let mut swept = Swept::default();
        if let Some(images) = &self.images {
            swept.images = images.prune(now_ms.saturating_sub(self.image_ttl_ms))?;
        }
        if let Some(builds) = &self.builds {
            swept.builds = builds.prune(now_ms.saturating_sub(RECORD_RETENTION_MS))?;
        }
        if let Some(environments) = &self.environments {
            swept.environments = environments.prune(self.max_environment_repos)?;
        }
        Ok(swept)
    }

    /// Sweeps now, then every [`SWEEP_INTERVAL`], off the async threads.
    pub async fn run(self) {
        loop {
            let janitor = self.clone();
            match tokio::task::spawn_blocking(move || janitor.sweep(crate::now_ms())).await {
                Ok(Ok(swept)) if swept != Swept::default() => {
                    tracing::info!(?swept, "pruned the cache");
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!("cannot prune the cache: {e}"),
                Err(e) => tracing::error!("the cache janitor failed: {e}"),
            }
            tokio::time::sleep(SWEEP_INTERVAL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::builds::tests::record;
    use crate::cache::{BuildState, Cache, Environment};

    const HOUR: u64 = 3600 * 1000;

    fn environment(image: &str, at: u64) -> Environment {
        Environment {
            image: image.into(),
            hash: image.into(),
            resolved_ref: "a".repeat(40),
            built_ms: at,
            listing: None,
        }
    }

    #[test]
    fn a_sweep_bounds_every_tree_that_grows_with_launches() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let mut config = Config::load(None).unwrap();
        config.registry.found_ttl_secs = 600;
        config.cache.max_environment_repos = 3;
        let trees = Trees {
            images: Some(cache.images().unwrap()),
            builds: Some(cache.builds().unwrap()),
            environments: Some(cache.environments().unwrap()),
            refs: None,
            demand: None,
        };
        let now = 100 * HOUR;
        let (images, builds, environments) = (
            trees.images.as_ref().unwrap(),
            trees.builds.as_ref().unwrap(),
            trees.environments.as_ref().unwrap(),
        );
        for i in 0..1000 {
            images
                .put(&format!("old:{i}"), "sha256:aa", now - HOUR)
                .unwrap();
        }
        images.put("fresh:1", "sha256:bb", now - 1000).unwrap();
        builds
            .put(&record("old", BuildState::Failed, now - 25 * HOUR))
            .unwrap();
        builds
            .put(&record("stuck", BuildState::Running, now - 25 * HOUR))
            .unwrap();
        builds
            .put(&record("recent", BuildState::Built, now - HOUR))
            .unwrap();
        for repo in 0..10 {
            environments
                .put(
                    &format!("repo{repo}"),
                    environment(&format!("r{repo}:1"), repo),
                )
                .unwrap();
        }

        let swept = Janitor::new(&trees, &config).sweep(now).unwrap();
        assert_eq!(
            swept,
            Swept {
                images: 1000,
                builds: 1,
                environments: 7
            }
        );
        assert_eq!(
            images.get("fresh:1", now, 600_000).unwrap().as_deref(),
            Some("sha256:bb")
        );
        let kept: Vec<String> = builds.all().unwrap().into_iter().map(|r| r.image).collect();
        assert_eq!(kept, ["stuck", "recent"], "a running build's record stays");
        for repo in 0..10 {
            assert_eq!(
                environments.get(&format!("repo{repo}")).unwrap().is_empty(),
                repo < 7,
                "repo{repo}"
            );
        }
        assert_eq!(
            Janitor::new(&trees, &config).sweep(now).unwrap(),
            Swept::default()
        );
    }
}
