//! Fetching a repository at one revision with git2: the host lists and reads
//! the checkout for the build strategy, and the layer executor writes the
//! revision's tree into an image layer. A fetch is bounded in bytes and time,
//! and says which of those, or which ref, made it fail.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bindery_runtime::gitwire::WireError;
use git2::{FetchOptions, Oid, Repository};
use tokio::sync::Semaphore;

/// MiB of files checkouts may hold at once, process-wide: libgit2 holds each
/// file whole while writing it, so a checkout takes as much of this as its
/// largest file before it starts (README, "Memory budget").
pub const CHECKOUT_MEMORY_MIB: u32 = 100;
static CHECKOUT_MEMORY: Semaphore = Semaphore::const_new(CHECKOUT_MEMORY_MIB as usize);

/// The object cache libgit2 keeps per process (its default is 256 MiB).
const LIBGIT2_CACHE_BYTES: usize = 16 << 20;

/// Why a checkout failed, in words for the person who launched it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckoutError {
    /// Only remote git URLs are fetched by the host.
    #[error("{url} is not a git repository Bindery can fetch (only http, https and git URLs are)")]
    NotGit {
        /// The repository.
        url: String,
    },
    /// The repository, fetched or checked out, is bigger than `build.max_repo_bytes`.
    #[error("The repository {url} is larger than this Bindery's limit of {} (build.max_repo_bytes).", mib(*.limit_bytes))]
    TooLarge {
        /// The repository.
        url: String,
        /// The limit.
        limit_bytes: u64,
    },
    /// The revision has more entries than `build.max_repo_files`.
    #[error(
        "The repository {url} has more than {limit} files and directories, this Bindery's limit (build.max_repo_files)."
    )]
    TooManyFiles {
        /// The repository.
        url: String,
        /// The limit.
        limit: u64,
    },
    /// One file is bigger than `build.max_file_bytes`.
    #[error("{path} in {url} is larger than this Bindery's limit of {} for one file (build.max_file_bytes).", mib(*.limit_bytes))]
    FileTooLarge {
        /// The repository.
        url: String,
        /// The file, from the repository's root.
        path: String,
        /// The limit.
        limit_bytes: u64,
    },
    /// The fetch took longer than `build.fetch_timeout_secs`.
    #[error("Fetching {url} took longer than {secs} s.")]
    TimedOut {
        /// The repository.
        url: String,
        /// The limit.
        secs: u64,
    },
    /// The revision is not (or no longer) in the repository.
    #[error(
        "The revision {reference} is not in {url} (any more): it may have been force-pushed away. Launch the branch again to build its current revision."
    )]
    RefNotFound {
        /// The revision.
        reference: String,
        /// The repository.
        url: String,
    },
    /// The remote refused or failed.
    #[error("Cannot fetch {url}: {message}")]
    Fetch {
        /// The repository.
        url: String,
        /// What git said.
        message: String,
    },
    /// Writing the checkout failed, e.g. the build directory's disk is full.
    #[error("Cannot write the checkout in {dir}: {message}")]
    Disk {
        /// Where.
        dir: String,
        /// What the system said.
        message: String,
    },
}

impl CheckoutError {
    /// What a stop at the wire means for the person who launched `url`.
    pub fn at_wire(url: &str, limits: FetchLimits, e: WireError) -> CheckoutError {
        match e {
            WireError::TimedOut(_) => CheckoutError::TimedOut {
                url: url.into(),
                secs: limits.timeout.as_secs(),
            },
            WireError::TooLarge(_) => CheckoutError::TooLarge {
                url: url.into(),
                limit_bytes: limits.max_bytes,
            },
            other => CheckoutError::Fetch {
                url: url.into(),
                message: other.to_string(),
            },
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1_048_576.0)
}

/// How much a fetch may take, and what its checkout may expand to.
#[derive(Debug, Clone, Copy)]
pub struct FetchLimits {
    /// Bytes received, and bytes the checkout writes.
    pub max_bytes: u64,
    /// Files and directories in the checked-out revision.
    pub max_files: u64,
    /// The largest one file (libgit2 holds a file whole while writing it).
    pub max_file_bytes: u64,
    /// Wall-clock time.
    pub timeout: Duration,
}

/// A repository fetched into a directory, its working tree at one revision.
pub struct Checkout {
    /// The working tree.
    pub dir: PathBuf,
    repo: Repository,
    /// The revision checked out.
    pub commit: Oid,
}

impl Checkout {
    /// Fetches `url` into `dir` (created, must not exist) and checks out `reference`.
    /// Blocking: call from a blocking thread.
    pub fn fetch(
        url: &str,
        reference: &str,
        dir: &Path,
        limits: FetchLimits,
    ) -> Result<Checkout, CheckoutError> {
        let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        if !matches!(scheme.as_deref(), Some("http" | "https" | "git")) {
            return Err(CheckoutError::NotGit { url: url.into() });
        }
        let disk = |e: &dyn std::fmt::Display| CheckoutError::Disk {
            dir: dir.display().to_string(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| disk(&e))?;
        let repo = Repository::init(dir).map_err(|e| disk(&e))?;
        // Branches and tags bring the revision (and any older one a layer
        // build compares with); a bare sha is asked for as well, for servers
        // that allow it and revisions no branch holds any more.
        let mut refspecs = vec![
            "+refs/heads/*:refs/remotes/origin/*".to_string(),
            "+refs/tags/*:refs/tags/*".to_string(),
        ];
        let wanted = Oid::from_str(reference)
            .ok()
            .filter(|_| reference.len() == 40);
        fetch(&repo, url, &refspecs)?;
        if wanted.is_none_or(|oid| repo.find_commit(oid).is_err()) {
            refspecs = vec![reference.to_string()];
            if let Err(e) = fetch(&repo, url, &refspecs)
                && matches!(
                    e,
                    CheckoutError::TooLarge { .. } | CheckoutError::TimedOut { .. }
                )
            {
                return Err(e);
            }
        }
        let commit = match wanted {
            Some(oid) => repo.find_commit(oid).ok(),
            None => repo
                .revparse_single("FETCH_HEAD")
                .ok()
                .and_then(|o| o.peel_to_commit().ok()),
        };
        let Some(oid) = commit.map(|c| c.id()) else {
            return Err(CheckoutError::RefNotFound {
                reference: reference.into(),
                url: url.into(),
            });
        };
        let largest = measure(&repo, url, oid, limits)?;
        {
            let _memory = checkout_memory(largest);
            let object = repo.find_object(oid, None).map_err(|e| disk(&e))?;
            let mut opts = git2::build::CheckoutBuilder::new();
            opts.force();
            repo.checkout_tree(&object, Some(&mut opts))
                .map_err(|e| disk(&e))?;
        }
        repo.set_head_detached(oid).map_err(|e| disk(&e))?;
        Ok(Checkout {
            dir: dir.to_path_buf(),
            repo,
            commit: oid,
        })
    }

    /// Records the files under `dir` as one commit of a repository kept
    /// beside it (`<dir>.git`), so that `dir` holds no git metadata for a
    /// build to copy. `.gitignore` files are content here, not rules.
    /// Blocking.
    pub fn commit_tree(dir: &Path) -> Result<Checkout, git2::Error> {
        let repo = Repository::init_bare(dir.with_extension("git"))?;
        repo.set_workdir(dir, false)?;
        let commit = {
            let mut index = repo.index()?;
            index.add_all(["*"], git2::IndexAddOption::FORCE, None)?;
            let tree = repo.find_tree(index.write_tree()?)?;
            let signature = git2::Signature::now("Bindery", "bindery@localhost")?;
            repo.commit(None, &signature, &signature, "content", &tree, &[])?
        };
        Ok(Checkout {
            dir: dir.to_path_buf(),
            repo,
            commit,
        })
    }

    /// The git repository (for reading trees and blobs).
    pub fn repo(&self) -> &Repository {
        &self.repo
    }
}

/// Waits, on a blocking thread of the runtime, for `largest` bytes of the
/// checkout memory (at most all of it, so a file larger than the budget
/// still goes, alone).
fn checkout_memory(largest: u64) -> tokio::sync::SemaphorePermit<'static> {
    static LIBGIT2_CACHE: std::sync::Once = std::sync::Once::new();
    LIBGIT2_CACHE.call_once(|| {
        // SAFETY: a process-wide setting, made once before any checkout reads objects.
        let bounded =
            unsafe { git2::opts::set_cache_max_size(LIBGIT2_CACHE_BYTES as libc::ssize_t) };
        if let Err(e) = bounded {
            tracing::warn!("cannot bound libgit2's object cache: {e}");
        }
    });
    let mib = u32::try_from(largest.div_ceil(1 << 20))
        .unwrap_or(u32::MAX)
        .clamp(1, CHECKOUT_MEMORY_MIB);
    // Checkouts run on the runtime's blocking threads (`GitWire::run`).
    tokio::runtime::Handle::current()
        .block_on(CHECKOUT_MEMORY.acquire_many(mib))
        .expect("the checkout memory is never closed")
}

/// Refuses a revision whose checkout would exceed `limits`, from object
/// headers alone: a few kilobytes of pack can hold a 300 MB file of zeros or a
/// tree of ten million files, so what crossed the wire says nothing of what a
/// checkout writes. Trees are read (each one checked first), blobs never.
/// The size of its largest file.
fn measure(
    repo: &Repository,
    url: &str,
    commit: Oid,
    limits: FetchLimits,
) -> Result<u64, CheckoutError> {
    let unreadable = |e: git2::Error| CheckoutError::Fetch {
        url: url.into(),
        message: format!("the fetched revision cannot be read: {}", e.message()),
    };
    let odb = repo.odb().map_err(unreadable)?;
    let root = repo
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(unreadable)?
        .id();
    let (mut files, mut bytes, mut largest) = (0u64, 0u64, 0u64);
    // Sizes count before anything of the object is inflated; trees count too,
    // as each is held whole while it is walked.
    let mut add = |path: &str, oid: Oid| -> Result<(), CheckoutError> {
        let (size, _) = odb.read_header(oid).map_err(unreadable)?;
        let size = size as u64;
        if size > limits.max_file_bytes {
            return Err(CheckoutError::FileTooLarge {
                url: url.into(),
                path: if path.is_empty() {
                    "/".into()
                } else {
                    path.into()
                },
                limit_bytes: limits.max_file_bytes,
            });
        }
        bytes += size;
        largest = largest.max(size);
        if bytes > limits.max_bytes {
            return Err(CheckoutError::TooLarge {
                url: url.into(),
                limit_bytes: limits.max_bytes,
            });
        }
        Ok(())
    };
    let mut trees = vec![(String::new(), root)];
    while let Some((dir, oid)) = trees.pop() {
        add(&dir, oid)?;
        let tree = repo.find_tree(oid).map_err(unreadable)?;
        for entry in &tree {
            files += 1;
            if files > limits.max_files {
                return Err(CheckoutError::TooManyFiles {
                    url: url.into(),
                    limit: limits.max_files,
                });
            }
            let path = format!("{dir}{}", String::from_utf8_lossy(entry.name_bytes()));
            match entry.kind() {
                Some(git2::ObjectType::Tree) => trees.push((format!("{path}/"), entry.id())),
                Some(git2::ObjectType::Blob) => add(&path, entry.id())?,
                // Submodules are not fetched; a checkout leaves them empty.
                _ => {}
            }
        }
    }
    Ok(largest)
}

/// Fetches `refspecs`. The wire the caller runs this on holds the time and
/// byte limits (see [`bindery_runtime::gitwire`]).
fn fetch(repo: &Repository, url: &str, refspecs: &[String]) -> Result<(), CheckoutError> {
    let mut options = FetchOptions::new();
    options.download_tags(git2::AutotagOption::None);
    let mut remote = repo
        .remote_anonymous(url)
        .map_err(|e| CheckoutError::Fetch {
            url: url.into(),
            message: e.message().into(),
        })?;
    let outcome = remote.fetch(refspecs, Some(&mut options), None);
    outcome.map_err(|e| match e.class() {
        // Writing the pack failed: the build directory, not the remote.
        git2::ErrorClass::Os
        | git2::ErrorClass::Filesystem
        | git2::ErrorClass::Odb
        | git2::ErrorClass::Indexer => CheckoutError::Disk {
            dir: repo.path().display().to_string(),
            message: e.message().into(),
        },
        _ => CheckoutError::Fetch {
            url: url.into(),
            message: e.message().into(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn a_checkout_waits_for_the_memory_its_largest_file_needs() {
        let big = tokio::task::spawn_blocking(|| checkout_memory(150 << 20))
            .await
            .unwrap();
        assert_eq!(
            big.num_permits(),
            CHECKOUT_MEMORY_MIB as usize,
            "a file past the budget takes all of it, and goes alone"
        );
        let small = tokio::task::spawn_blocking(|| checkout_memory(10).num_permits());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!small.is_finished(), "a second checkout started beside it");
        drop(big);
        assert_eq!(small.await.unwrap(), 1, "a small file takes 1 MiB");
    }
}
