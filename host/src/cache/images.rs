//! The `images` tree: image name → manifest digest, with when it was last
//! seen. A found image is believed for `registry.found_ttl_secs`; a missing
//! one is never cached, so a finished build is seen at once.

use serde::{Deserialize, Serialize};
use sled::Tree;

use super::CacheError;

#[derive(Serialize, Deserialize)]
struct Entry {
    digest: String,
    checked_at_ms: u64,
}

/// Known images.
pub struct ImageCache {
    path: std::path::PathBuf,
    tree: Tree,
}

impl ImageCache {
    pub(super) fn open(db: &sled::Db, path: &std::path::Path) -> Result<ImageCache, sled::Error> {
        Ok(ImageCache {
            path: path.to_path_buf(),
            tree: db.open_tree("images")?,
        })
    }

    /// The digest of `image` if it was seen within `ttl_ms` of `now_ms`.
    pub fn get(&self, image: &str, now_ms: u64, ttl_ms: u64) -> Result<Option<String>, CacheError> {
        let Some(bytes) = self.tree.get(image).map_err(|e| self.error(e))? else {
            return Ok(None);
        };
        let Ok(entry) = serde_json::from_slice::<Entry>(&bytes) else {
            return Ok(None);
        };
        Ok((now_ms.saturating_sub(entry.checked_at_ms) < ttl_ms).then_some(entry.digest))
    }

    /// Records `image` as present with `digest` at `now_ms`.
    pub fn put(&self, image: &str, digest: &str, now_ms: u64) -> Result<(), CacheError> {
        let bytes = serde_json::to_vec(&Entry {
            digest: digest.into(),
            checked_at_ms: now_ms,
        })?;
        self.tree.insert(image, bytes).map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Forgets `image` (the registry no longer has it).
    pub fn remove(&self, image: &str) -> Result<(), CacheError> {
        self.tree.remove(image).map_err(|e| self.error(e))?;
        Ok(())
    }

    fn error(&self, source: sled::Error) -> CacheError {
        CacheError::Database {
            path: self.path.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::cache::Cache;

    #[test]
    fn found_images_expire_and_can_be_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::open(dir.path()).unwrap().images().unwrap();
        c.put("r/i:1", "sha256:aa", 1_000).unwrap();
        assert_eq!(
            c.get("r/i:1", 1_999, 1_000).unwrap().as_deref(),
            Some("sha256:aa")
        );
        assert_eq!(c.get("r/i:1", 2_000, 1_000).unwrap(), None);
        assert_eq!(c.get("r/i:2", 1_000, 1_000).unwrap(), None);
        c.remove("r/i:1").unwrap();
        assert_eq!(c.get("r/i:1", 1_000, 1_000).unwrap(), None);
    }
}
