//! The `environments` tree: per repository, the images built from plans that
//! named an environment hash, newest first. Build strategies see them in
//! `repo-facts.environments`; a layer build starts from one.

use super::tree::JsonTree;
use serde::{Deserialize, Serialize};

use super::CacheError;

/// Images remembered per repository: enough for a few environments in use at
/// once (branches with different requirements).
pub const PER_REPO: usize = 8;

/// An image and the environment it was built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    /// The image reference.
    pub image: String,
    /// The strategy's hash of the environment files.
    pub hash: String,
    /// The revision whose content the image carries.
    pub resolved_ref: String,
    /// When it was built.
    pub built_ms: u64,
    /// The content's paths (folders end in `/`), for content that is no git
    /// history: what a layer on this image whites out when a later version
    /// lacks it. None for git repositories, and for listings too long to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listing: Option<Vec<String>>,
}

/// Environment images by repository URL.
#[derive(Clone)]
pub struct Environments {
    tree: JsonTree,
}

impl Environments {
    pub(super) fn open(db: &sled::Db, path: &std::path::Path) -> Result<Environments, sled::Error> {
        Ok(Environments {
            tree: JsonTree::open(db, path, "environments")?,
        })
    }

    /// `repo_url`'s environment images, newest first.
    pub fn get(&self, repo_url: &str) -> Result<Vec<Environment>, CacheError> {
        Ok(self.tree.get(repo_url)?.unwrap_or_default())
    }

    /// Remembers `environment` for `repo_url`, replacing one of the same hash.
    pub fn put(&self, repo_url: &str, environment: Environment) -> Result<(), CacheError> {
        self.update(repo_url, |list| {
            list.retain(|e| e.hash != environment.hash);
            list.insert(0, environment.clone());
            list.truncate(PER_REPO);
        })
    }

    /// Forgets `image` (gone from the registry, or its base revision unreachable).
    pub fn remove(&self, repo_url: &str, image: &str) -> Result<(), CacheError> {
        self.update(repo_url, |list| list.retain(|e| e.image != image))
    }

    /// Keeps the `max_repos` repositories built most recently, forgetting
    /// the rest (their next build is a full one); how many went.
    pub fn prune(&self, max_repos: usize) -> Result<usize, CacheError> {
        let len = self.tree.len();
        if len <= max_repos {
            return Ok(0);
        }
        let mut newest: Vec<u64> = self
            .tree
            .values::<Vec<Environment>>()?
            .iter()
            .map(|list| newest_build(list))
            .collect();
        newest.sort_unstable();
        let Some(&cutoff) = newest.get((len - max_repos).saturating_sub(1)) else {
            return Ok(0);
        };
        self.tree
            .remove_where(|list: &Vec<Environment>| newest_build(list) <= cutoff)
    }

    fn update(
        &self,
        repo_url: &str,
        change: impl Fn(&mut Vec<Environment>),
    ) -> Result<(), CacheError> {
        self.tree.update(repo_url, |mut list: Vec<Environment>| {
            change(&mut list);
            (!list.is_empty()).then_some(list)
        })
    }
}

fn newest_build(list: &[Environment]) -> u64 {
    list.iter().map(|e| e.built_ms).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Cache;

    fn env(image: &str, hash: &str, at: u64) -> Environment {
        Environment {
            image: image.into(),
            hash: hash.into(),
            resolved_ref: "a".repeat(40),
            built_ms: at,
            listing: None,
        }
    }

    #[test]
    fn newest_first_one_per_hash_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let e = Cache::open(dir.path()).unwrap().environments().unwrap();
        e.put("r", env("r:1", "h1", 1)).unwrap();
        e.put("r", env("r:2", "h2", 2)).unwrap();
        e.put("r", env("r:3", "h1", 3)).unwrap();
        let got: Vec<_> = e.get("r").unwrap().into_iter().map(|e| e.image).collect();
        assert_eq!(got, ["r:3", "r:2"]);
        assert!(e.get("other").unwrap().is_empty());
        for i in 0..20 {
            e.put("r", env(&format!("r:{i}"), &format!("x{i}"), i))
                .unwrap();
        }
        assert_eq!(e.get("r").unwrap().len(), PER_REPO);
        e.remove("r", "r:19").unwrap();
        assert_eq!(e.get("r").unwrap()[0].image, "r:18");
    }
}
