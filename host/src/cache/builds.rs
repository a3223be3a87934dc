//! The `builds` tree: image name → the state and log tail of a build in
//! flight or recently finished, so a restarted host can report builds that
//! were running and, where the executor allows, watch them again.

use super::tree::JsonTree;
use serde::{Deserialize, Serialize};

use super::CacheError;

/// Log lines kept per build (upstream tails 100 lines of a running build pod).
pub const LOG_TAIL_LINES: usize = 100;

/// Where a build is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildState {
    /// Running on its executor.
    Running,
    /// The image was built and pushed.
    Built,
    /// The build failed.
    Failed,
    /// The host stopped while it ran and its executor cannot be watched again.
    Lost,
}

/// One build, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildRecord {
    /// The image it produces.
    pub image: String,
    /// The executor running it.
    pub executor: String,
    /// The executor's handle on it (a pod name), for watching it again.
    pub handle: Option<String>,
    /// What was resolved, for the log.
    pub repo_url: String,
    /// The revision.
    pub resolved_ref: String,
    /// Where it is.
    pub state: BuildState,
    /// Unix milliseconds.
    pub started_at_ms: u64,
    /// Unix milliseconds of the last change.
    pub updated_at_ms: u64,
    /// The last [`LOG_TAIL_LINES`] event-stream messages, as JSON.
    pub log_tail: Vec<String>,
}

/// How long a finished build's record is kept.
pub const RECORD_RETENTION_MS: u64 = 24 * 3600 * 1000;

/// Build records.
#[derive(Clone)]
pub struct BuildLog {
    tree: JsonTree,
}

impl BuildLog {
    pub(super) fn open(db: &sled::Db, path: &std::path::Path) -> Result<BuildLog, sled::Error> {
        Ok(BuildLog {
            tree: JsonTree::open(db, path, "builds")?,
        })
    }

    /// Stores `record`, replacing the image's previous one.
    pub fn put(&self, record: &BuildRecord) -> Result<(), CacheError> {
        self.tree.put(&record.image, record)
    }

    /// Stores `record` and waits until it is on disk: a build's start and
    /// end must survive the host being killed (sled writes back every 500 ms).
    pub fn put_durably(&self, record: &BuildRecord) -> Result<(), CacheError> {
        self.put(record)?;
        self.tree.flush()
    }

    /// The record of `image`'s latest build.
    pub fn get(&self, image: &str) -> Result<Option<BuildRecord>, CacheError> {
        self.tree.get(image)
    }

    /// Every record, oldest start first; records that no longer decode are skipped.
    pub fn all(&self) -> Result<Vec<BuildRecord>, CacheError> {
        let mut records: Vec<BuildRecord> = self.tree.values()?;
        records.sort_by_key(|r| r.started_at_ms);
        Ok(records)
    }

    /// Drops finished records last changed before `before_ms`.
    pub fn prune(&self, before_ms: u64) -> Result<usize, CacheError> {
        self.tree.remove_where(|r: &BuildRecord| {
            r.state != BuildState::Running && r.updated_at_ms < before_ms
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cache::Cache;

    /// A record of `image` in `state`, last changed `at`.
    pub(crate) fn record(image: &str, state: BuildState, at: u64) -> BuildRecord {
        BuildRecord {
            image: image.into(),
            executor: "local".into(),
            handle: None,
            repo_url: "https://example.org/r".into(),
            resolved_ref: "abc".into(),
            state,
            started_at_ms: at,
            updated_at_ms: at,
            log_tail: vec![r#"{"phase":"building","message":"Step 1\n"}"#.into()],
        }
    }

    #[test]
    fn records_survive_a_restart_and_old_finished_ones_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        {
            let builds = Cache::open(dir.path()).unwrap().builds().unwrap();
            builds.put(&record("i:1", BuildState::Running, 10)).unwrap();
            builds.put(&record("i:2", BuildState::Built, 5)).unwrap();
            builds.put(&record("i:3", BuildState::Failed, 50)).unwrap();
        }
        let builds = Cache::open(dir.path()).unwrap().builds().unwrap();
        assert_eq!(
            builds.get("i:1").unwrap().unwrap().state,
            BuildState::Running
        );
        assert_eq!(
            builds.prune(20).unwrap(),
            1,
            "only the old finished build goes"
        );
        let left: Vec<String> = builds.all().unwrap().into_iter().map(|r| r.image).collect();
        assert_eq!(left, ["i:1", "i:3"]);
    }
}
