//! The `images` tree: image name → manifest digest, with when it was last
//! seen. A found image is believed for `registry.found_ttl_secs`; a missing
//! one is never cached, so a finished build is seen at once.

use super::CacheError;
use super::tree::JsonTree;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Entry {
    digest: String,
    checked_at_ms: u64,
}

/// Known images.
#[derive(Clone)]
pub struct ImageCache {
    tree: JsonTree,
}

impl ImageCache {
    pub(super) fn open(db: &sled::Db, path: &std::path::Path) -> Result<ImageCache, sled::Error> {
        Ok(ImageCache {
            tree: JsonTree::open(db, path, "images")?,
        })
    }

    /// The digest of `image` if it was seen within `ttl_ms` of `now_ms`.
    pub fn get(&self, image: &str, now_ms: u64, ttl_ms: u64) -> Result<Option<String>, CacheError> {
        let entry: Option<Entry> = self.tree.get(image)?;
        Ok(entry
            .filter(|e| now_ms.saturating_sub(e.checked_at_ms) < ttl_ms)
            .map(|e| e.digest))
    }

    /// Records `image` as present with `digest` at `now_ms`.
    pub fn put(&self, image: &str, digest: &str, now_ms: u64) -> Result<(), CacheError> {
        let entry = Entry {
            digest: digest.into(),
            checked_at_ms: now_ms,
        };
        self.tree.put(image, &entry)
    }

    /// Forgets images last seen before `before_ms`: they are asked of the
    /// registry again anyway.
    pub fn prune(&self, before_ms: u64) -> Result<usize, CacheError> {
        self.tree
            .remove_where(|e: &Entry| e.checked_at_ms < before_ms)
    }

    /// Forgets `image` (the registry no longer has it).
    pub fn remove(&self, image: &str) -> Result<(), CacheError> {
        self.tree.remove(image)
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
