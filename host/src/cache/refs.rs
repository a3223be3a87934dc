//! The `refs` tree: (provider, spec) → a resolution or a "not found", with the
//! time it was fetched. Freshness is decided when an entry is read, so a changed
//! TTL applies to entries already stored. A second tree orders keys by fetch
//! time, so the oldest go first when the size bound is reached.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::{Transactional, Tree};

use super::CacheError;
use super::tree::JsonTree;
use crate::config::CacheConfig;

/// How long an entry may be reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Freshness {
    /// A commit sha or a versioned record: until evicted.
    Immutable,
    /// A branch, tag, `HEAD` or unversioned record: `moving_ref_revalidate_ms`,
    /// and as a stand-in while the provider fails, `moving_ref_ttl_secs`.
    Moving,
    /// The upstream said it does not exist: `not_found_ttl_secs`.
    NotFound,
}

#[derive(Serialize, Deserialize)]
struct Entry<T> {
    fetched_at_ms: u64,
    freshness: Freshness,
    value: T,
}

/// The resolution cache.
pub struct RefCache {
    refs: JsonTree,
    by_age: Tree,
    len: AtomicUsize,
    config: CacheConfig,
}

fn key(provider: &str, spec: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(provider.len() + 1 + spec.len());
    k.extend_from_slice(provider.as_bytes());
    k.push(0);
    k.extend_from_slice(spec.as_bytes());
    k
}

fn age_key(fetched_at_ms: u64, key: &[u8]) -> Vec<u8> {
    let mut k = fetched_at_ms.to_be_bytes().to_vec();
    k.extend_from_slice(key);
    k
}

/// The fetch time an entry was stored with, without decoding its value.
fn fetched_at(bytes: &[u8]) -> Option<u64> {
    #[derive(Deserialize)]
    struct Head {
        fetched_at_ms: u64,
    }
    serde_json::from_slice::<Head>(bytes)
        .ok()
        .map(|h| h.fetched_at_ms)
}

fn flatten(e: TransactionError<sled::Error>) -> sled::Error {
    match e {
        TransactionError::Abort(e) | TransactionError::Storage(e) => e,
    }
}

impl RefCache {
    pub(super) fn open(
        db: &sled::Db,
        path: &std::path::Path,
        config: CacheConfig,
    ) -> Result<RefCache, sled::Error> {
        let refs = JsonTree::open(db, path, "refs")?;
        let by_age = db.open_tree("refs_by_age")?;
        // A crash between the two trees' writes cannot happen (writes are
        // transactional), but an older or foreign database may disagree: rebuild.
        if refs.tree.len() != by_age.len() {
            by_age.clear()?;
            for item in &refs.tree {
                let (k, v) = item?;
                by_age.insert(age_key(fetched_at(&v).unwrap_or(0), &k), &[])?;
            }
        }
        let len = AtomicUsize::new(refs.tree.len());
        Ok(RefCache {
            refs,
            by_age,
            len,
            config,
        })
    }

    /// The cached value for (provider, spec) if it is still fresh at `now_ms`.
    /// An entry that no longer decodes (an older format) counts as absent.
    pub fn get<T: DeserializeOwned>(
        &self,
        provider: &str,
        spec: &str,
        now_ms: u64,
    ) -> Result<Option<(T, Freshness)>, CacheError> {
        let Some(entry) = self.refs.get::<Entry<T>>(key(provider, spec))? else {
            return Ok(None);
        };
        let ttl_ms = match entry.freshness {
            Freshness::Immutable => return Ok(Some((entry.value, entry.freshness))),
            Freshness::Moving => self.config.moving_ref_revalidate_ms,
            Freshness::NotFound => self.config.not_found_ttl_secs * 1000,
        };
        let fresh = now_ms.saturating_sub(entry.fetched_at_ms) < ttl_ms;
        Ok(fresh.then_some((entry.value, entry.freshness)))
    }

    /// A moving ref's last value, no longer fresh but within
    /// `moving_ref_ttl_secs`: what serves while the provider cannot answer.
    pub fn stand_in<T: DeserializeOwned>(
        &self,
        provider: &str,
        spec: &str,
        now_ms: u64,
    ) -> Result<Option<T>, CacheError> {
        let Some(entry) = self.refs.get::<Entry<T>>(key(provider, spec))? else {
            return Ok(None);
        };
        let within =
            now_ms.saturating_sub(entry.fetched_at_ms) < self.config.moving_ref_ttl_secs * 1000;
        Ok((entry.freshness == Freshness::Moving && within).then_some(entry.value))
    }

    /// Stores a value fetched at `now_ms`, replacing any older one, and evicts
    /// the oldest entries past the size bound.
    pub fn put<T: Serialize>(
        &self,
        provider: &str,
        spec: &str,
        value: &T,
        freshness: Freshness,
        now_ms: u64,
    ) -> Result<(), CacheError> {
        let k = key(provider, spec);
        let bytes = serde_json::to_vec(&Entry {
            fetched_at_ms: now_ms,
            freshness,
            value,
        })?;
        let replaced = (&self.refs.tree, &self.by_age)
            .transaction(|(refs, by_age)| {
                let old = refs.insert(k.as_slice(), bytes.as_slice())?;
                if let Some(old) = &old {
                    by_age.remove(age_key(fetched_at(old).unwrap_or(0), &k))?;
                }
                by_age.insert(age_key(now_ms, &k), &[])?;
                Ok::<_, ConflictableTransactionError<sled::Error>>(old.is_some())
            })
            .map_err(|e| self.error(flatten(e)))?;
        if !replaced {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
        self.evict()
    }

    fn evict(&self) -> Result<(), CacheError> {
        while self.len.load(Ordering::Relaxed) > self.config.max_refs {
            let Some((age, _)) = self.by_age.first().map_err(|e| self.error(e))? else {
                break;
            };
            let k = age[8..].to_vec();
            let removed = (&self.refs.tree, &self.by_age)
                .transaction(|(refs, by_age)| {
                    by_age.remove(&age)?;
                    Ok::<_, ConflictableTransactionError<sled::Error>>(
                        refs.remove(k.as_slice())?.is_some(),
                    )
                })
                .map_err(|e| self.error(flatten(e)))?;
            if removed {
                self.len.fetch_sub(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Entries stored.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn error(&self, source: sled::Error) -> CacheError {
        self.refs.error(source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Cache;

    fn cache(dir: &std::path::Path, max_refs: usize) -> RefCache {
        let config = CacheConfig {
            moving_ref_revalidate_ms: 1_000,
            moving_ref_ttl_secs: 60,
            not_found_ttl_secs: 300,
            max_refs,
            ..CacheConfig::default()
        };
        Cache::open(dir).unwrap().refs(&config).unwrap()
    }

    #[test]
    fn freshness_decides_reuse() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path(), 100);
        c.put("gh", "a/b/main", &"sha1", Freshness::Moving, 1_000)
            .unwrap();
        c.put("gh", "a/b/0123", &"sha2", Freshness::Immutable, 1_000)
            .unwrap();
        c.put("gh", "a/b/nope", &"", Freshness::NotFound, 1_000)
            .unwrap();
        let get = |spec: &str, now: u64| c.get::<String>("gh", spec, now).unwrap().map(|(v, _)| v);
        assert_eq!(get("a/b/main", 1_999).as_deref(), Some("sha1"));
        assert_eq!(get("a/b/main", 2_000), None);
        // Past that, it stands in only while the provider fails, and only so long.
        let stand_in = |spec: &str, now: u64| c.stand_in::<String>("gh", spec, now).unwrap();
        assert_eq!(stand_in("a/b/main", 60_999).as_deref(), Some("sha1"));
        assert_eq!(stand_in("a/b/main", 61_000), None);
        assert_eq!(
            stand_in("a/b/nope", 2_000),
            None,
            "only a moving ref stands in"
        );
        assert_eq!(get("a/b/0123", u64::MAX).as_deref(), Some("sha2"));
        assert!(get("a/b/nope", 300_999).is_some());
        assert!(get("a/b/nope", 301_000).is_none());
        assert!(
            c.get::<String>("gl", "a/b/main", 1_000).unwrap().is_none(),
            "providers do not share entries"
        );
        assert!(
            c.get::<u64>("gh", "a/b/main", 1_000).unwrap().is_none(),
            "an entry of another shape is a miss"
        );
    }

    #[test]
    fn the_oldest_are_evicted_past_the_bound_and_the_count_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = cache(dir.path(), 3);
            for (i, spec) in ["a", "b", "c", "d"].iter().enumerate() {
                c.put("p", spec, &i, Freshness::Immutable, i as u64)
                    .unwrap();
            }
            c.put("p", "b", &9, Freshness::Immutable, 10).unwrap();
            assert_eq!(c.len(), 3);
            assert!(c.get::<usize>("p", "a", 0).unwrap().is_none());
            c.put("p", "e", &5, Freshness::Immutable, 11).unwrap();
            assert!(
                c.get::<usize>("p", "c", 0).unwrap().is_none(),
                "c is now the oldest"
            );
            assert_eq!(
                c.get::<usize>("p", "b", 0).unwrap().map(|v| v.0),
                Some(9),
                "b was refreshed"
            );
        }
        let c = cache(dir.path(), 3);
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn a_corrupt_database_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("cache")).unwrap();
        std::fs::write(dir.path().join("cache/conf"), b"\xff\xfe not a sled config").unwrap();
        std::fs::write(dir.path().join("cache/db"), vec![0xAB; 4096]).unwrap();
        let c = cache(dir.path(), 10);
        c.put("p", "s", &1, Freshness::Immutable, 0).unwrap();
        assert!(std::fs::read_dir(dir.path()).unwrap().flatten().any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("cache.corrupt-")
        }));
    }
}
