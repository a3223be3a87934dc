//! The sled database in the data directory. Nothing in it is the only copy of
//! anything: a corrupt database is moved aside and started afresh, and one that
//! cannot be opened at all leaves Bindery running without a cache.

mod refs;

use std::path::{Path, PathBuf};

pub use refs::{Freshness, RefCache};

use crate::config::{CacheConfig, Config};

/// The ref cache in the configured data directory, or none when it cannot be
/// opened: Bindery then resolves every launch afresh rather than not starting.
pub fn open_refs(config: &Config) -> Option<RefCache> {
    match Cache::open(&config.data_dir).and_then(|c| c.refs(&config.cache)) {
        Ok(refs) => Some(refs),
        Err(e) => {
            tracing::error!("running without a ref cache: {e}");
            None
        }
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
    /// An entry could not be encoded.
    #[error("cache entry: {0}")]
    Encode(#[from] serde_json::Error),
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
        let open = || sled::Config::new().path(&path).mode(sled::Mode::HighThroughput).open();
        let db = match open() {
            Ok(db) => db,
            Err(source @ sled::Error::Io(_)) => return Err(CacheError::Database { path, source }),
            Err(first) => {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                let aside = data_dir.join(format!("cache.corrupt-{now}"));
                tracing::error!(path = %path.display(), "cannot open the cache ({first}); moving it to {} and starting empty", aside.display());
                std::fs::rename(&path, &aside).map_err(|e| CacheError::Database { path: path.clone(), source: e.into() })?;
                open().map_err(|source| CacheError::Database { path: path.clone(), source })?
            }
        };
        Ok(Cache { db, path })
    }

    /// The `refs` tree: resolutions by (provider, spec).
    pub fn refs(&self, config: &CacheConfig) -> Result<RefCache, CacheError> {
        RefCache::open(&self.db, &self.path, config.clone())
            .map_err(|source| CacheError::Database { path: self.path.clone(), source })
    }
}
