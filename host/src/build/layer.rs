//! The daemonless layer build: the repository's content at the revision,
//! written as one OCI layer (under the plan's target directory, owned by its
//! uid, `.dockerignore` honoured), appended to the environment image's
//! manifest and config, and pushed with the registry client. No engine runs:
//! a content-only commit becomes a launchable image in the time it takes to
//! tar and upload its files.
//!
//! The environment image already carries some revision's content (the plan's
//! `base_ref`); files that revision had and this one lacks are whited out, so
//! the image holds exactly this revision's content.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use bindery_runtime::bindings::LayerPlan;
use flate2::Compression;
use flate2::write::GzEncoder;
use git2::{ObjectType, Oid, Repository, TreeWalkMode, TreeWalkResult};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::checkout::Checkout;
use super::dockerignore::IgnoreRules;
use crate::registry::{BlobSource, Registry, RegistryError};

/// Why a layer build did not produce an image.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The environment image, or the revision it carries, is gone: the
    /// strategy should plan again without it.
    #[error("{0}")]
    BaseGone(String),
    /// The registry failed.
    #[error("{0}")]
    Registry(#[from] RegistryError),
    /// Anything else, in words for the user.
    #[error("{0}")]
    Failed(String),
}

/// What went into the layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The gzipped tar on disk.
    pub path: PathBuf,
    /// `sha256:` of the gzipped bytes.
    pub digest: String,
    /// `sha256:` of the uncompressed tar (the config's `diff_id`).
    pub diff_id: String,
    /// Compressed size.
    pub size: u64,
    /// Files and links written.
    pub files: usize,
    /// Paths whited out (gone since the base revision).
    pub whiteouts: usize,
}

/// One entry of a revision's tree, as it goes into the layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File { executable: bool, blob: Oid },
    Link { blob: Oid },
}

/// `commit`'s tree, ignore files applied: path → kind, parents before children.
fn tree_entries(repo: &Repository, commit: Oid) -> Result<BTreeMap<String, Kind>, String> {
    let tree = repo
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(|e| e.message().to_string())?;
    let ignore_text = [".dockerignore", ".containerignore"]
        .iter()
        .find_map(|name| {
            let entry = tree.get_name(name)?;
            let blob = repo.find_blob(entry.id()).ok()?;
            Some(String::from_utf8_lossy(blob.content()).into_owned())
        });
    let rules = IgnoreRules::parse(ignore_text.as_deref().unwrap_or(""))
        .map_err(|e| format!("the repository's .dockerignore has a bad line: {e}"))?;
    let mut entries = BTreeMap::new();
    tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
        let Ok(name) = entry.name() else {
            return TreeWalkResult::Skip;
        };
        let path = format!("{dir}{name}");
        if rules.excludes(&path) {
            return TreeWalkResult::Skip;
        }
        let kind = match (entry.kind(), entry.filemode()) {
            (Some(ObjectType::Tree), _) => Kind::Dir,
            (Some(ObjectType::Blob), 0o120000) => Kind::Link { blob: entry.id() },
            (Some(ObjectType::Blob), mode) => Kind::File {
                executable: mode & 0o111 != 0,
                blob: entry.id(),
            },
            // Submodules (commits) are not fetched, as `docker build` would not have them either.
            _ => return TreeWalkResult::Skip,
        };
        entries.insert(path, kind);
        TreeWalkResult::Ok
    })
    .map_err(|e| e.message().to_string())?;
    Ok(entries)
}

/// Paths `base` has and `new` lacks, each at its highest such level (a
/// removed directory is one whiteout), or whose kind changed.
fn removed(base: &BTreeMap<String, Kind>, new: &BTreeMap<String, Kind>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (path, kind) in base {
        if out.iter().any(|gone| path.starts_with(&format!("{gone}/"))) {
            continue;
        }
        let changed_type = new
            .get(path)
            .is_some_and(|k| matches!(k, Kind::Dir) != matches!(kind, Kind::Dir));
        if !new.contains_key(path) || changed_type {
            out.push(path.clone());
        }
    }
    out
}

/// Hashes and counts what passes through.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    len: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn sha256(hash: Sha256) -> String {
    format!("sha256:{}", hex::encode(hash.finalize()))
}

/// The most paths a listing keeps (see [`listing`]): a record of more is
/// built in full when its next version comes.
const MAX_LISTING_PATHS: usize = 20_000;
/// The most bytes of paths a listing keeps.
const MAX_LISTING_BYTES: usize = 1 << 20;

/// `checkout`'s paths as a layer on it would see them (ignore files applied),
/// folders ending in `/`: what a layer for a later version of content that
/// has no git history whites out. Too many to keep is an error.
pub fn listing(checkout: &Checkout) -> Result<Vec<String>, String> {
    let entries = tree_entries(checkout.repo(), checkout.commit)?;
    let bytes: usize = entries.keys().map(|p| p.len() + 1).sum();
    if entries.len() > MAX_LISTING_PATHS || bytes > MAX_LISTING_BYTES {
        return Err(format!("{} paths are too many to remember", entries.len()));
    }
    Ok(entries
        .into_iter()
        .map(|(path, kind)| match kind {
            Kind::Dir => format!("{path}/"),
            _ => path,
        })
        .collect())
}

/// Writes the layer for `checkout`'s revision to `out`. Files of the base
/// revision this one lacks are whited out: the base is read from the
/// repository, or from `base_listing` (see [`listing`]) when it is not in it.
/// Blocking.
pub fn write_layer(
    checkout: &Checkout,
    plan: &LayerPlan,
    base_listing: Option<&[String]>,
    out: &Path,
) -> Result<Layer, LayerError> {
    let repo = checkout.repo();
    let new = tree_entries(repo, checkout.commit).map_err(LayerError::Failed)?;
    let gone = match &plan.base_ref {
        None => Vec::new(),
        Some(base) => match Oid::from_str(base)
            .ok()
            .filter(|oid| repo.find_commit(*oid).is_ok())
        {
            Some(oid) => {
                let mut gone = removed(&tree_entries(repo, oid).map_err(LayerError::Failed)?, &new);
                // A build of the base revision copied its git metadata too: it
                // describes that revision, not this one.
                gone.push(".git".into());
                gone
            }
            None => {
                let listed = base_listing.ok_or_else(|| {
                    LayerError::BaseGone(format!("the revision {base} the environment image carries is no longer in the repository"))
                })?;
                let base = listed
                    .iter()
                    .map(|p| match p.strip_suffix('/') {
                        Some(dir) => (dir.to_string(), Kind::Dir),
                        None => (
                            p.clone(),
                            Kind::File {
                                executable: false,
                                blob: Oid::ZERO_SHA1,
                            },
                        ),
                    })
                    .collect();
                removed(&base, &new)
            }
        },
    };
    let mtime = repo
        .find_commit(checkout.commit)
        .map_or(0, |c| c.time().seconds().max(0) as u64);
    let root = plan.target_dir.trim_matches('/');
    let disk = |e: std::io::Error| {
        LayerError::Failed(format!("Cannot write the layer in {}: {e}", out.display()))
    };
    let file = std::fs::File::create(out).map_err(disk)?;
    let compressed = Hashing {
        inner: std::io::BufWriter::new(file),
        hash: Sha256::new(),
        len: 0,
    };
    let gz = GzEncoder::new(compressed, Compression::fast());
    let mut tar = tar::Builder::new(Hashing {
        inner: gz,
        hash: Sha256::new(),
        len: 0,
    });
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(plan.uid.into());
        h.set_gid(plan.gid.into());
        h.set_mtime(mtime);
        h.set_size(size);
        h
    };
    // Every directory on the way in the layer: a layer's extraction creates
    // missing parents as root, and the top layer's directory metadata is the
    // one that counts. Ancestors as a base image has them; the target the
    // content's owner's, as repo2docker's home directory is.
    let mut dir = String::new();
    for (i, part) in root.split('/').filter(|p| !p.is_empty()).enumerate() {
        dir = if i == 0 {
            part.to_string()
        } else {
            format!("{dir}/{part}")
        };
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        if dir != root {
            h.set_uid(0);
            h.set_gid(0);
        }
        tar.append_data(&mut h, format!("{dir}/"), std::io::empty())
            .map_err(disk)?;
    }
    for path in &gone {
        let (dir, name) = path
            .rsplit_once('/')
            .map_or(("", path.as_str()), |(d, n)| (d, n));
        let whiteout = [root, dir, &format!(".wh.{name}")]
            .iter()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("/");
        let mut h = header(tar::EntryType::Regular, 0o644, 0);
        tar.append_data(&mut h, whiteout, std::io::empty())
            .map_err(disk)?;
    }
    let mut files = 0;
    for (path, kind) in &new {
        let full = format!("{root}/{path}");
        match kind {
            Kind::Dir => {
                let mut h = header(tar::EntryType::Directory, 0o755, 0);
                tar.append_data(&mut h, format!("{full}/"), std::io::empty())
                    .map_err(disk)?;
            }
            Kind::File { executable, blob } => {
                let blob = repo.find_blob(*blob).map_err(|e| {
                    LayerError::Failed(format!("cannot read {path}: {}", e.message()))
                })?;
                let mut h = header(
                    tar::EntryType::Regular,
                    if *executable { 0o755 } else { 0o644 },
                    blob.size() as u64,
                );
                tar.append_data(&mut h, &full, blob.content())
                    .map_err(disk)?;
                files += 1;
            }
            Kind::Link { blob } => {
                let blob = repo.find_blob(*blob).map_err(|e| {
                    LayerError::Failed(format!("cannot read {path}: {}", e.message()))
                })?;
                let target = String::from_utf8_lossy(blob.content()).into_owned();
                let mut h = header(tar::EntryType::Symlink, 0o777, 0);
                tar.append_link(&mut h, &full, target).map_err(disk)?;
                files += 1;
            }
        }
    }
    let uncompressed = tar.into_inner().map_err(disk)?;
    let diff_id = sha256(uncompressed.hash);
    let mut compressed = uncompressed.inner.finish().map_err(disk)?;
    compressed.flush().map_err(disk)?;
    compressed
        .inner
        .into_inner()
        .map_err(|e| disk(e.into_error()))?
        .sync_all()
        .map_err(disk)?;
    Ok(Layer {
        path: out.to_path_buf(),
        digest: sha256(compressed.hash),
        diff_id,
        size: compressed.len,
        files,
        whiteouts: gone.len(),
    })
}

/// The layer's media type in a manifest of `manifest_type`.
fn layer_media_type(manifest_type: &str) -> &'static str {
    if manifest_type.contains("docker") {
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    } else {
        "application/vnd.oci.image.layer.v1.tar+gzip"
    }
}

/// `config` with the layer appended to its rootfs and history.
fn extend_config(
    config: &mut Value,
    layer: &Layer,
    description: &str,
    resolved_ref: &str,
) -> Result<(), String> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let diff_ids = config
        .pointer_mut("/rootfs/diff_ids")
        .and_then(Value::as_array_mut)
        .ok_or("the image config has no rootfs.diff_ids")?;
    diff_ids.push(json!(layer.diff_id));
    let config = config
        .as_object_mut()
        .ok_or("the image config is not an object")?;
    config.insert("created".into(), json!(now));
    let history = config.entry("history").or_insert_with(|| json!([]));
    if let Some(history) = history.as_array_mut() {
        history.push(
            json!({ "created": now, "created_by": description, "comment": "bindery layer build" }),
        );
    }
    // repo2docker labels the revision it built; keep that true.
    if let Some(labels) = config
        .get_mut("config")
        .and_then(|c| c.get_mut("Labels"))
        .and_then(Value::as_object_mut)
        && labels.contains_key("repo2docker.ref")
    {
        labels.insert("repo2docker.ref".into(), json!(resolved_ref));
    }
    Ok(())
}

/// Appends `layer` to `plan.environment_image` and pushes the result as `image`; the manifest digest.
pub async fn push(
    registry: &Registry,
    plan: &LayerPlan,
    layer: &Layer,
    image: &str,
    description: &str,
    resolved_ref: &str,
) -> Result<String, LayerError> {
    let base = &plan.environment_image;
    let Some(stored) = registry.manifest(base).await? else {
        return Err(LayerError::BaseGone(format!(
            "the environment image {base} is no longer in the registry"
        )));
    };
    let bad = |what: &str| LayerError::Failed(format!("the environment image {base} has {what}"));
    let mut manifest: Value =
        serde_json::from_slice(&stored.body).map_err(|_| bad("a manifest that is not JSON"))?;
    let config_digest = manifest
        .pointer("/config/digest")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no config"))?
        .to_string();
    let mut config: Value = serde_json::from_slice(&registry.blob(base, &config_digest).await?)
        .map_err(|_| bad("a config that is not JSON"))?;
    extend_config(&mut config, layer, description, resolved_ref)
        .map_err(|e| bad(&e.replace("the image config has", "")))?;
    let config_bytes =
        serde_json::to_vec(&config).map_err(|e| LayerError::Failed(e.to_string()))?;
    let new_config_digest = crate::registry::digest(&config_bytes);
    let layers = manifest
        .get_mut("layers")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| bad("no layers"))?;
    let base_layers: Vec<String> = layers
        .iter()
        .filter_map(|l| l["digest"].as_str().map(String::from))
        .collect();
    layers.push(json!({ "mediaType": layer_media_type(&stored.media_type), "digest": layer.digest, "size": layer.size }));
    manifest["config"]["digest"] = json!(new_config_digest);
    manifest["config"]["size"] = json!(config_bytes.len());
    if manifest.get("mediaType").is_none() {
        manifest["mediaType"] = json!(stored.media_type);
    }

    registry.authorize_push(image).await?;
    for digest in &base_layers {
        registry
            .put_blob(image, Some(base), BlobSource::MountOnly, digest)
            .await?;
    }
    registry
        .put_blob(
            image,
            None,
            BlobSource::File(layer.path.clone()),
            &layer.digest,
        )
        .await?;
    registry
        .put_blob(
            image,
            None,
            BlobSource::Bytes(config_bytes),
            &new_config_digest,
        )
        .await?;
    let body = serde_json::to_vec(&manifest).map_err(|e| LayerError::Failed(e.to_string()))?;
    Ok(registry
        .put_manifest(image, body, &stored.media_type)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_paths_are_whited_out_at_their_highest_level() {
        let file = Kind::File {
            executable: false,
            blob: Oid::ZERO_SHA1,
        };
        let tree = |paths: &[(&str, Kind)]| {
            paths
                .iter()
                .map(|(p, k)| (p.to_string(), *k))
                .collect::<BTreeMap<_, _>>()
        };
        let base = tree(&[
            ("a.ipynb", file),
            ("data", Kind::Dir),
            ("data/x.csv", file),
            ("data/y.csv", file),
            ("keep", file),
            ("was_file", file),
        ]);
        let new = tree(&[
            ("keep", file),
            ("b.ipynb", file),
            ("was_file", Kind::Dir),
            ("was_file/z", file),
        ]);
        assert_eq!(removed(&base, &new), ["a.ipynb", "data", "was_file"]);
    }
}
