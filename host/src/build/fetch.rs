//! Fetching content that is not a git remote, as its provider describes it:
//! a data record's files, or a directory cooked by Software Heritage's vault.
//! Downloads go through the provider's grants (egress, credential) within
//! the same limits as a git checkout (bytes, files, one file's size, time),
//! archives are unpacked under the same limits (a zip cannot expand past
//! them, or write outside the build directory), and the result is laid out
//! as repo2docker lays it out. It is then committed to a git repository
//! beside it, so the strategy, the executors and the layer builder read it
//! as they read a git checkout.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bindery_runtime::LoadedPlugin;
use bindery_runtime::bindings::{ContentSource, FilesContent, SwhVaultContent, Unpack};
use bindery_runtime::capabilities::UserSecret;
use bindery_runtime::download::{DownloadError, Downloads};

use super::checkout::{Checkout, CheckoutError, FetchLimits};

/// The vault is polled at growing intervals up to this one.
const VAULT_POLL_MAX: Duration = Duration::from_secs(10);

/// What is being fetched, for messages.
#[derive(Clone)]
struct Fetch {
    what: String,
    limits: FetchLimits,
    /// Where the content goes: the build's working tree.
    root: PathBuf,
}

impl Fetch {
    /// Runs `work` on a blocking thread, with a copy of this fetch.
    async fn blocking(
        &self,
        work: impl FnOnce(&Fetch) -> Result<(), CheckoutError> + Send + 'static,
    ) -> Result<(), CheckoutError> {
        let fetch = self.clone();
        tokio::task::spawn_blocking(move || work(&fetch))
            .await
            .map_err(|e| self.fail(format!("unpacking failed: {e}")))?
    }

    fn fail(&self, message: impl std::fmt::Display) -> CheckoutError {
        CheckoutError::Fetch {
            url: self.what.clone(),
            message: message.to_string(),
        }
    }

    fn disk(&self, e: impl std::fmt::Display) -> CheckoutError {
        CheckoutError::Disk {
            dir: self.root.display().to_string(),
            message: e.to_string(),
        }
    }

    fn too_large(&self) -> CheckoutError {
        CheckoutError::TooLarge {
            url: self.what.clone(),
            limit_bytes: self.limits.max_bytes,
        }
    }

    fn too_many(&self) -> CheckoutError {
        CheckoutError::TooManyFiles {
            url: self.what.clone(),
            limit: self.limits.max_files,
        }
    }

    fn file_too_large(&self, path: &str) -> CheckoutError {
        CheckoutError::FileTooLarge {
            url: self.what.clone(),
            path: path.into(),
            limit_bytes: self.limits.max_file_bytes,
        }
    }

    /// A download error, with the limit it hit when it hit one.
    fn download(&self, path: &str, budget_was_total: bool, e: DownloadError) -> CheckoutError {
        match e {
            DownloadError::TooLarge { .. } if budget_was_total => self.too_large(),
            DownloadError::TooLarge { .. } => self.file_too_large(path),
            DownloadError::Disk { message, .. } => self.disk(message),
            other => self.fail(other),
        }
    }
}

/// Fetches `source` (files or a vault directory; a git remote is the
/// checkout's) into `dir/repo` under `plugin`'s grants, and commits it.
/// `what` names the content in messages (the repository as users know it);
/// `user`'s credential stands in for the plugin's secret it names.
pub async fn data(
    plugin: &LoadedPlugin,
    user: Option<&UserSecret>,
    source: &ContentSource,
    what: &str,
    dir: &Path,
    limits: FetchLimits,
) -> Result<Checkout, CheckoutError> {
    let fetch = Fetch {
        what: what.into(),
        limits,
        root: dir.join("repo"),
    };
    let fetched = tokio::time::timeout(limits.timeout, async {
        match source {
            ContentSource::Files(f) => files(plugin, user, f, &fetch).await,
            ContentSource::SwhVault(v) => vault(plugin, user, v, dir, &fetch).await,
            ContentSource::Git(_) => Err(fetch.fail("a git remote is fetched with git")),
        }?;
        commit(&fetch).await
    })
    .await;
    fetched.unwrap_or_else(|_| {
        Err(CheckoutError::TimedOut {
            url: what.into(),
            secs: limits.timeout.as_secs(),
        })
    })
}

/// Downloads `files` into the root and unpacks them as `files.unpack` says.
async fn files(
    plugin: &LoadedPlugin,
    user: Option<&UserSecret>,
    files: &FilesContent,
    fetch: &Fetch,
) -> Result<(), CheckoutError> {
    let limits = fetch.limits;
    let downloads = Downloads::new(plugin, files.auth.as_ref(), user).map_err(|e| fetch.fail(e))?;
    std::fs::create_dir_all(&fetch.root).map_err(|e| fetch.disk(e))?;
    if files.downloads.len() as u64 > limits.max_files {
        return Err(fetch.too_many());
    }
    let mut paths = std::collections::BTreeSet::new();
    let mut left = limits.max_bytes;
    for d in &files.downloads {
        let relative = safe_path(&d.path)
            .map_err(|why| fetch.fail(format!("the provider named a file {:?}: {why}", d.path)))?;
        if !paths.insert(relative.clone()) {
            return Err(fetch.fail(format!("the provider named {:?} twice", d.path)));
        }
        let target = fetch.root.join(&relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| fetch.disk(e))?;
        }
        let total_bound = left < limits.max_file_bytes;
        let budget = left.min(limits.max_file_bytes);
        let got = downloads
            .to_file(&d.url, &target, budget, d.size)
            .await
            .map_err(|e| fetch.download(&d.path, total_bound, e))?;
        left -= got;
    }
    let single = || match files.downloads.as_slice() {
        [one] => Ok(fetch
            .root
            .join(safe_path(&one.path).expect("checked above"))),
        _ => Err(fetch.fail(format!(
            "the provider asked to unpack one archive but listed {} files",
            files.downloads.len()
        ))),
    };
    match &files.unpack {
        Unpack::AsIs => {}
        Unpack::Zip => {
            let archive = single()?;
            if is_zip(&archive) {
                unpack_zip(fetch, archive, None).await?;
                lift_single_folder(&fetch.root).map_err(|e| fetch.disk(e))?;
            }
        }
        Unpack::ZipFolder(folder) => {
            let archive = single()?;
            let folder = safe_path(folder)
                .map_err(|why| fetch.fail(format!("the folder {folder:?} to unpack: {why}")))?;
            if !is_zip(&archive) {
                return Err(fetch.fail("the download is not a zip archive"));
            }
            unpack_zip(fetch, archive, Some(folder)).await?;
        }
    }
    Ok(())
}

/// Asks Software Heritage's vault to cook `vault.directory`, waits until it
/// is ready, downloads the tarball (beside the root, in `dir`) and unpacks
/// it into the root, its one folder lifted.
async fn vault(
    plugin: &LoadedPlugin,
    user: Option<&UserSecret>,
    vault: &SwhVaultContent,
    dir: &Path,
    fetch: &Fetch,
) -> Result<(), CheckoutError> {
    let limits = fetch.limits;
    if !(vault.directory.len() == 40 && vault.directory.bytes().all(|b| b.is_ascii_hexdigit())) {
        return Err(fetch.fail(format!("{:?} is not a directory id", vault.directory)));
    }
    let downloads = Downloads::new(plugin, vault.auth.as_ref(), user).map_err(|e| fetch.fail(e))?;
    let cook = format!(
        "{}/vault/directory/{}/",
        vault.api.trim_end_matches('/'),
        vault.directory
    );
    let mut pause = Duration::from_millis(500);
    let mut post = true;
    let fetch_url = loop {
        let (status, answer) = downloads
            .json(post, &cook)
            .await
            .map_err(|e| fetch.fail(e))?;
        post = false;
        if !(200..300).contains(&status) {
            return Err(fetch.fail(format!(
                "the vault answered HTTP {status}: {}",
                answer
                    .get("reason")
                    .or(answer.get("detail"))
                    .and_then(|r| r.as_str())
                    .unwrap_or("no reason given")
            )));
        }
        match answer.get("status").and_then(|s| s.as_str()) {
            Some("done") => {
                let Some(url) = answer.get("fetch_url").and_then(|u| u.as_str()) else {
                    return Err(fetch.fail("the vault said done without a fetch_url"));
                };
                break url.to_string();
            }
            Some("failed") => {
                let why = answer
                    .get("progress_message")
                    .and_then(|m| m.as_str())
                    .unwrap_or("no reason given");
                return Err(fetch.fail(format!("the vault could not prepare the directory: {why}")));
            }
            Some("new" | "pending") => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(VAULT_POLL_MAX);
            }
            other => {
                return Err(fetch.fail(format!("the vault answered an unknown status {other:?}")));
            }
        }
    };
    // As upstream: every API URL ends in `/`, the fetch URL too.
    let fetch_url = if fetch_url.ends_with('/') {
        fetch_url
    } else {
        format!("{fetch_url}/")
    };
    std::fs::create_dir_all(&fetch.root).map_err(|e| fetch.disk(e))?;
    let tarball = dir.join("vault.tar");
    downloads
        .to_file(&fetch_url, &tarball, limits.max_bytes, None)
        .await
        .map_err(|e| fetch.download("the vault's tarball", true, e))?;
    unpack_tar(fetch, tarball).await?;
    lift_single_folder(&fetch.root).map_err(|e| fetch.disk(e))
}

/// `path` as a relative path of plain components: no `..`, no root, no
/// `.git` (a record cannot plant git metadata in the build).
fn safe_path(path: &str) -> Result<PathBuf, &'static str> {
    let mut out = PathBuf::new();
    for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
        if part == ".." {
            return Err("it leads out of the content");
        }
        if part.eq_ignore_ascii_case(".git") {
            return Err("git metadata is not content");
        }
        if part.contains(['\0', '\\']) {
            return Err("it has a NUL or a backslash");
        }
        out.push(part);
    }
    if out.as_os_str().is_empty() {
        return Err("it is empty");
    }
    Ok(out)
}

fn is_zip(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| magic == *b"PK\x03\x04" || magic == *b"PK\x05\x06")
}

/// Counts what unpacking writes against the limits.
struct Budget<'a> {
    fetch: &'a Fetch,
    files: u64,
    bytes: u64,
}

impl Budget<'_> {
    fn entry(&mut self) -> Result<(), CheckoutError> {
        self.files += 1;
        if self.files > self.fetch.limits.max_files {
            return Err(self.fetch.too_many());
        }
        Ok(())
    }

    /// Copies `from` to a new file `to`, counting every byte really read
    /// (an archive's stated sizes can lie).
    fn copy(&mut self, name: &str, mut from: impl Read, to: &Path) -> Result<(), CheckoutError> {
        self.entry()?;
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| self.fetch.disk(e))?;
        }
        let mut out = std::fs::File::create(to).map_err(|e| self.fetch.disk(e))?;
        let cap = self
            .fetch
            .limits
            .max_file_bytes
            .min(self.fetch.limits.max_bytes - self.bytes);
        let written = std::io::copy(&mut (&mut from).take(cap + 1), &mut out).map_err(|e| {
            self.fetch
                .fail(format!("{name} in the archive cannot be read: {e}"))
        })?;
        if written > cap {
            return Err(if cap < self.fetch.limits.max_file_bytes {
                self.fetch.too_large()
            } else {
                self.fetch.file_too_large(name)
            });
        }
        self.bytes += written;
        Ok(())
    }
}

/// Unpacks the zip at `archive` into the root (only what is under `folder`,
/// lifted to the root, when one is given), then deletes it.
async fn unpack_zip(
    fetch: &Fetch,
    archive: PathBuf,
    folder: Option<PathBuf>,
) -> Result<(), CheckoutError> {
    fetch
        .blocking(move |fetch| {
            let limits = fetch.limits;
            let file = std::fs::File::open(&archive).map_err(|e| fetch.disk(e))?;
            let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
                .map_err(|e| fetch.fail(format!("the zip archive cannot be read: {e}")))?;
            std::fs::remove_file(&archive).map_err(|e| fetch.disk(e))?;
            let mut budget = Budget {
                fetch,
                files: 0,
                bytes: 0,
            };
            for i in 0..zip.len() {
                let mut entry = zip
                    .by_index(i)
                    .map_err(|e| fetch.fail(format!("the zip archive cannot be read: {e}")))?;
                let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
                let Some(inside) = entry.enclosed_name() else {
                    return Err(fetch.fail(format!(
                        "the zip archive holds {name:?}, which leads out of it"
                    )));
                };
                let relative = match &folder {
                    None => inside,
                    Some(f) => match inside.strip_prefix(f) {
                        Ok(rest) if !rest.as_os_str().is_empty() => rest.to_path_buf(),
                        _ => continue,
                    },
                };
                let relative = safe_path(&relative.to_string_lossy())
                    .map_err(|why| fetch.fail(format!("the zip archive holds {name:?}: {why}")))?;
                let target = fetch.root.join(&relative);
                if entry.is_dir() {
                    budget.entry()?;
                    std::fs::create_dir_all(&target).map_err(|e| fetch.disk(e))?;
                } else if entry.size() > limits.max_file_bytes {
                    return Err(fetch.file_too_large(&name));
                } else {
                    // A stored symlink comes out as a file holding its target, as upstream's extractall makes it.
                    budget.copy(&name, &mut entry, &target)?;
                }
            }
            if let Some(f) = folder
                && budget.files == 0
            {
                return Err(fetch.fail(format!("the archive has nothing under {}", f.display())));
            }
            Ok(())
        })
        .await
}

/// Unpacks the (possibly gzipped) tarball at `archive` into the root, then
/// deletes it. Symbolic links are made last, so nothing is written through
/// one; hard links and devices are left out.
async fn unpack_tar(fetch: &Fetch, archive: PathBuf) -> Result<(), CheckoutError> {
    fetch
        .blocking(move |fetch| {
            let limits = fetch.limits;
            let gzipped = {
                let mut magic = [0u8; 2];
                std::fs::File::open(&archive)
                    .and_then(|mut f| f.read_exact(&mut magic))
                    .is_ok_and(|()| magic == [0x1f, 0x8b])
            };
            let file =
                std::io::BufReader::new(std::fs::File::open(&archive).map_err(|e| fetch.disk(e))?);
            let reader: Box<dyn Read> = if gzipped {
                Box::new(flate2::read::GzDecoder::new(file))
            } else {
                Box::new(file)
            };
            let mut tar = tar::Archive::new(reader);
            let mut budget = Budget {
                fetch,
                files: 0,
                bytes: 0,
            };
            let mut links = Vec::new();
            let unreadable =
                |e: std::io::Error| fetch.fail(format!("the tarball cannot be read: {e}"));
            for entry in tar.entries().map_err(unreadable)? {
                let mut entry = entry.map_err(unreadable)?;
                let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
                let relative = safe_path(&name)
                    .map_err(|why| fetch.fail(format!("the tarball holds {name:?}: {why}")))?;
                let target = fetch.root.join(&relative);
                match entry.header().entry_type() {
                    tar::EntryType::Directory => {
                        budget.entry()?;
                        std::fs::create_dir_all(&target).map_err(|e| fetch.disk(e))?;
                    }
                    tar::EntryType::Regular | tar::EntryType::Continuous => {
                        if entry.size() > limits.max_file_bytes {
                            return Err(fetch.file_too_large(&name));
                        }
                        let executable = entry.header().mode().is_ok_and(|m| m & 0o111 != 0);
                        budget.copy(&name, &mut entry, &target)?;
                        if executable {
                            use std::os::unix::fs::PermissionsExt;
                            std::fs::set_permissions(
                                &target,
                                std::fs::Permissions::from_mode(0o755),
                            )
                            .map_err(|e| fetch.disk(e))?;
                        }
                    }
                    tar::EntryType::Symlink => {
                        budget.entry()?;
                        if let Some(to) = entry.link_name().map_err(unreadable)? {
                            links.push((to.into_owned(), target));
                        }
                    }
                    _ => {}
                }
            }
            for (to, at) in links {
                if let Some(parent) = at.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| fetch.disk(e))?;
                }
                std::os::unix::fs::symlink(&to, &at).map_err(|e| fetch.disk(e))?;
            }
            std::fs::remove_file(&archive).map_err(|e| fetch.disk(e))
        })
        .await
}

/// repo2docker's rule: when `root` holds exactly one entry and it is a
/// folder, that folder's contents take its place.
fn lift_single_folder(root: &Path) -> std::io::Result<()> {
    let entries: Vec<_> = std::fs::read_dir(root)?.collect::<Result<_, _>>()?;
    let [only] = entries.as_slice() else {
        return Ok(());
    };
    if !only.file_type()?.is_dir() {
        return Ok(());
    }
    // Renamed first: it may hold an entry of its own name.
    let moved = root.join(".bindery-lifting");
    std::fs::rename(only.path(), &moved)?;
    for child in std::fs::read_dir(&moved)? {
        let child = child?;
        std::fs::rename(child.path(), root.join(child.file_name()))?;
    }
    std::fs::remove_dir(&moved)
}

/// Commits the working tree to a repository beside it (`repo.git`), so the
/// tree has no `.git` for repo2docker to copy into the image.
async fn commit(fetch: &Fetch) -> Result<Checkout, CheckoutError> {
    let root = fetch.root.clone();
    let outcome = tokio::task::spawn_blocking(move || Checkout::commit_tree(&root))
        .await
        .map_err(|e| fetch.fail(format!("recording the content failed: {e}")))?;
    outcome.map_err(|e| fetch.disk(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_and_hold_no_git_metadata() {
        assert_eq!(
            safe_path("a/./b//c.txt").unwrap(),
            PathBuf::from("a/b/c.txt")
        );
        for bad in [
            "../x",
            "a/../../x",
            "",
            "/",
            ".git/config",
            "a/.GIT/hooks/x",
            "a\\b",
        ] {
            assert!(safe_path(bad).is_err(), "{bad}");
        }
        assert_eq!(
            safe_path("/etc/passwd").unwrap(),
            PathBuf::from("etc/passwd")
        );
    }

    #[test]
    fn a_single_folder_is_lifted_even_when_it_holds_its_own_name() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("pkg/pkg")).unwrap();
        std::fs::write(root.join("pkg/pkg/x"), "x").unwrap();
        std::fs::write(root.join("pkg/environment.yml"), "e").unwrap();
        lift_single_folder(root).unwrap();
        assert!(root.join("pkg/x").is_file() && root.join("environment.yml").is_file());
        // Two entries, or one file: left alone.
        lift_single_folder(root).unwrap();
        assert!(root.join("pkg/x").is_file());
        let one_file = tempfile::tempdir().unwrap();
        std::fs::write(one_file.path().join("only.txt"), "x").unwrap();
        lift_single_folder(one_file.path()).unwrap();
        assert!(one_file.path().join("only.txt").is_file());
    }
}
