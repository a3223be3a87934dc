//! The `repo-files` capability: a build strategy reads the repository it plans,
//! and nothing else.

use std::path::{Component, Path, PathBuf};

use super::CallState;
use crate::bindings::build_strategy::bindery::plugin::repo_files::Host;

/// Files larger than this read as absent: strategies ask for small config files.
pub const MAX_REPO_FILE_BYTES: u64 = 1 << 20;

/// A repository's files, as a build strategy may read them.
pub trait RepoFiles: Send + Sync {
    /// The file at `path` (relative, already checked to stay inside the repository).
    fn read(&self, path: &Path) -> Option<Vec<u8>>;
}

/// A checked-out repository in a directory.
pub struct DirRepo {
    root: PathBuf,
}

impl DirRepo {
    /// The repository rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirRepo { root: root.into() }
    }
}

impl RepoFiles for DirRepo {
    fn read(&self, path: &Path) -> Option<Vec<u8>> {
        let full = self.root.join(path);
        // Symlinks could point outside the checkout: resolve and re-check.
        let real = full.canonicalize().ok()?;
        let root = self.root.canonicalize().ok()?;
        if !real.starts_with(&root) {
            return None;
        }
        let meta = std::fs::metadata(&real).ok()?;
        if !meta.is_file() || meta.len() > MAX_REPO_FILE_BYTES {
            return None;
        }
        std::fs::read(&real).ok()
    }
}

/// `path` as a relative path inside the repository, or none if it climbs out.
fn inside(path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

impl Host for CallState {
    fn read(&mut self, path: String) -> Option<Vec<u8>> {
        let rel = inside(&path)?;
        self.repo.as_ref()?.read(&rel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stay_inside_the_repository() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(repo.join("binder")).unwrap();
        std::fs::write(repo.join("binder/environment.yml"), "name: x\n").unwrap();
        std::fs::write(dir.path().join("outside"), "secret").unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside"), repo.join("link")).unwrap();
        let r = DirRepo::new(&repo);
        let read = |p: &str| inside(p).and_then(|p| r.read(&p));
        assert_eq!(read("binder/environment.yml").unwrap(), b"name: x\n");
        assert_eq!(read("./binder/environment.yml").unwrap(), b"name: x\n");
        assert!(read("../outside").is_none());
        assert!(read("/etc/passwd").is_none());
        assert!(read("link").is_none());
        assert!(read("binder").is_none());
        assert!(read("").is_none());
    }
}
