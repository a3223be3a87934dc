//! The sled database in the data directory. Nothing in it is the only copy of
//! anything: a corrupt database is moved aside and started afresh, and one that
//! cannot be opened at all leaves Bindery running without a cache.

mod builds;
mod demand;
mod environments;
mod images;
pub mod janitor;
mod refs;
mod tree;

use std::path::{Path, PathBuf};

pub use builds::{BuildLog, BuildRecord, BuildState, LOG_TAIL_LINES, RECORD_RETENTION_MS};
pub use demand::{Demand, LaunchDemand, ranked};
pub use environments::{Environment, Environments};
pub use images::ImageCache;
pub use refs::{Freshness, RefCache};

use crate::config::{CacheConfig, Config};

/// The trees of the database in the configured data directory. Each is `None`
/// when the database cannot be opened: Bindery then resolves every launch
/// afresh and asks the registry every time, rather than not starting.
#[derive(Default)]
pub struct Trees {
    /// Resolutions.
    pub refs: Option<RefCache>,
    /// Images known to exist.
    pub images: Option<ImageCache>,
    /// Builds in flight and recently finished.
    pub builds: Option<BuildLog>,
    /// Environment images, for layer builds.
    pub environments: Option<Environments>,
    /// Recent launches per image, for the warm pool.
    pub demand: Option<LaunchDemand>,
}

/// Opens the database and its trees, logging (not failing) when it cannot.
pub fn open(config: &Config) -> Result<Trees, CacheError> {
    let opened = Cache::open(&config.data_dir).and_then(|c| {
        Ok(Trees {
            refs: Some(c.refs(&config.cache)?),
            images: Some(c.images()?),
            builds: Some(c.builds()?),
            environments: Some(c.environments()?),
            demand: Some(c.demand(config.warm_pool.half_life_secs.saturating_mul(1000))?),
        })
    });
    match opened {
        // Two processes on one data directory would each think they own its
        // builds: the second one does not start.
        Err(e @ CacheError::Locked { .. }) => Err(e),
        Err(e) => {
            tracing::error!("running without a cache: {e}");
            Ok(Trees::default())
        }
        trees => trees,
    }
}

/// The cache could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// sled failed (I/O, a full disk, corruption).
    #[error("cache database {}: {source}", .path.display())]
    Database {
        /// The database directory.
        path: PathBuf,
        /// What sled said.
        source: sled::Error,
    },
    /// Another process holds the database.
    #[error("the cache {} is in use by another Bindery process: give each process a data_dir of its own", .path.display())]
    Locked {
        /// The database directory.
        path: PathBuf,
    },
    /// An entry could not be encoded.
    #[error("cache entry: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Bytes of sled's page cache.
const CACHE_CAPACITY: u64 = 16 << 20;

/// How long opening waits for a lock held by a database being closed: sled's
/// flusher thread lets go of the file shortly after the last handle is
/// dropped (a restart in the same process, or a predecessor still exiting).
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

fn is_locked(e: &std::io::Error) -> bool {
    e.to_string().contains("could not acquire lock")
}

fn retry_while_locked(open: impl Fn() -> sled::Result<sled::Db>) -> sled::Result<sled::Db> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match open() {
            Err(sled::Error::Io(e)) if is_locked(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// The opened database.
pub struct Cache {
    db: sled::Db,
    path: PathBuf,
}

impl Cache {
    /// Opens `<data_dir>/cache`. A database sled finds corrupt or cannot read
    /// is renamed to `cache.corrupt-<unix time>` and replaced by an empty one;
    /// an I/O failure (another process holds it, no permission) is returned,
    /// since the database may be fine.
    pub fn open(data_dir: &Path) -> Result<Cache, CacheError> {
        let path = data_dir.join("cache");
        let open = || {
            sled::Config::new()
                .path(&path)
                .mode(sled::Mode::HighThroughput)
                // sled's page cache defaults to 1 GiB; this is its share of
                // the memory budget (README, "Memory budget").
                .cache_capacity(CACHE_CAPACITY)
                .open()
        };
        let db = match retry_while_locked(open) {
            Ok(db) => db,
            Err(sled::Error::Io(e)) if is_locked(&e) => return Err(CacheError::Locked { path }),
            Err(source @ sled::Error::Io(_)) => return Err(database_error(&path, source)),
            Err(first) => {
                let now = crate::now_ms() / 1000;
                let aside = data_dir.join(format!("cache.corrupt-{now}"));
                tracing::error!(path = %path.display(), "cannot open the cache ({first}); moving it to {} and starting empty", aside.display());
                std::fs::rename(&path, &aside).map_err(|e| database_error(&path, e.into()))?;
                open().map_err(|source| database_error(&path, source))?
            }
        };
        Ok(Cache { db, path })
    }

    /// The `refs` tree: resolutions by (provider, spec).
    pub fn refs(&self, config: &CacheConfig) -> Result<RefCache, CacheError> {
        RefCache::open(&self.db, &self.path, config.clone()).map_err(|source| self.error(source))
    }

    /// The `images` tree: image name → digest.
    pub fn images(&self) -> Result<ImageCache, CacheError> {
        ImageCache::open(&self.db, &self.path).map_err(|source| self.error(source))
    }

    /// The `builds` tree: image name → build state and log tail.
    pub fn builds(&self) -> Result<BuildLog, CacheError> {
        BuildLog::open(&self.db, &self.path).map_err(|source| self.error(source))
    }

    /// The `environments` tree: repository → environment images.
    pub fn environments(&self) -> Result<Environments, CacheError> {
        Environments::open(&self.db, &self.path).map_err(|source| self.error(source))
    }

    /// The `demand` tree: image → recent launches, halving every `half_life_ms`.
    pub fn demand(&self, half_life_ms: u64) -> Result<LaunchDemand, CacheError> {
        LaunchDemand::open(&self.db, &self.path, half_life_ms).map_err(|source| self.error(source))
    }

    fn error(&self, source: sled::Error) -> CacheError {
        database_error(&self.path, source)
    }
}

fn database_error(path: &Path, source: sled::Error) -> CacheError {
    CacheError::Database {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_process_on_the_data_dir_does_not_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::load(None).unwrap();
        config.data_dir = dir.path().to_path_buf();
        let first = open(&config).unwrap();
        assert!(first.images.is_some());
        // sled's lock is a file lock: a second open in this process is refused
        // as another process's would be.
        let e = open(&config).err().expect("the second open is refused");
        assert_eq!(
            e.to_string(),
            format!(
                "the cache {} is in use by another Bindery process: give each process a data_dir of its own",
                dir.path().join("cache").display()
            )
        );
        drop(first);
        assert!(
            open(&config).unwrap().images.is_some(),
            "free again once closed"
        );
    }

    #[test]
    fn a_database_closed_a_moment_ago_opens_again() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..30u64 {
            let images = Cache::open(dir.path()).unwrap().images().unwrap();
            images.put(&format!("i:{i}"), "sha256:00", i).unwrap();
        }
        let images = Cache::open(dir.path()).unwrap().images().unwrap();
        assert_eq!(
            images.get("i:29", 29, 1).unwrap().as_deref(),
            Some("sha256:00")
        );
    }
}
