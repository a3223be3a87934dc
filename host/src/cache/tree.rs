//! One sled tree of JSON values. Decoding, encoding and errors that name the
//! database are here once for every tree of the cache.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::Tree;

use super::{CacheError, database_error};

/// A tree whose values are JSON. A value that no longer decodes (written by
/// an older version) reads as absent: the cache is never the only copy.
#[derive(Clone)]
pub(super) struct JsonTree {
    pub(super) tree: Tree,
    path: PathBuf,
}

impl JsonTree {
    pub(super) fn open(db: &sled::Db, path: &Path, name: &str) -> Result<JsonTree, sled::Error> {
        Ok(JsonTree {
            tree: db.open_tree(name)?,
            path: path.to_path_buf(),
        })
    }

    /// The value at `key`.
    pub(super) fn get<T: DeserializeOwned>(
        &self,
        key: impl AsRef<[u8]>,
    ) -> Result<Option<T>, CacheError> {
        let bytes = self.tree.get(key).map_err(|e| self.error(e))?;
        Ok(bytes.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// Stores `value` at `key`.
    pub(super) fn put<T: Serialize + ?Sized>(
        &self,
        key: impl AsRef<[u8]>,
        value: &T,
    ) -> Result<(), CacheError> {
        let bytes = serde_json::to_vec(value)?;
        self.tree
            .insert(key.as_ref(), bytes)
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Removes `key`.
    pub(super) fn remove(&self, key: impl AsRef<[u8]>) -> Result<(), CacheError> {
        self.tree.remove(key).map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Waits until every write so far is on disk.
    pub(super) fn flush(&self) -> Result<(), CacheError> {
        self.tree.flush().map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Every value that decodes.
    pub(super) fn values<T: DeserializeOwned>(&self) -> Result<Vec<T>, CacheError> {
        let mut values = Vec::new();
        for item in &self.tree {
            let (_, v) = item.map_err(|e| self.error(e))?;
            values.extend(serde_json::from_slice(&v).ok());
        }
        Ok(values)
    }

    /// Removes every entry `doomed` says should go, and every entry that no
    /// longer decodes (it reads as absent anyway); how many went.
    pub(super) fn remove_where<T: DeserializeOwned>(
        &self,
        doomed: impl Fn(&T) -> bool,
    ) -> Result<usize, CacheError> {
        let mut gone = Vec::new();
        for item in &self.tree {
            let (k, v) = item.map_err(|e| self.error(e))?;
            if serde_json::from_slice::<T>(&v).map_or(true, |value| doomed(&value)) {
                gone.push(k);
            }
        }
        for k in &gone {
            self.tree.remove(k).map_err(|e| self.error(e))?;
        }
        Ok(gone.len())
    }

    /// How many entries (sled counts them by a full scan).
    pub(super) fn len(&self) -> usize {
        self.tree.len()
    }

    /// Replaces the value at `key` atomically with `change` of the current
    /// one (absent, or undecodable, as `T::default()`); `None` removes the key.
    pub(super) fn update<T: DeserializeOwned + Serialize + Default>(
        &self,
        key: impl AsRef<[u8]>,
        change: impl Fn(T) -> Option<T>,
    ) -> Result<(), CacheError> {
        let mut encode_error = None;
        self.tree
            .fetch_and_update(key, |old| {
                let current = old
                    .and_then(|b| serde_json::from_slice(b).ok())
                    .unwrap_or_default();
                let next = change(current)?;
                match serde_json::to_vec(&next) {
                    Ok(bytes) => Some(bytes),
                    // Keep the old value rather than lose it to a failed encoding.
                    Err(e) => {
                        encode_error = Some(e);
                        old.map(<[u8]>::to_vec)
                    }
                }
            })
            .map_err(|e| self.error(e))?;
        encode_error.map_or(Ok(()), |e| Err(e.into()))
    }

    /// A sled failure of this tree, naming the database.
    pub(super) fn error(&self, source: sled::Error) -> CacheError {
        database_error(&self.path, source)
    }
}
